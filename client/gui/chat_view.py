"""The conversation pane: a header with the search box,
the "load older" control, the read-only message text with one tag per kind,
and the "new messages below" bar.

Rules this module keeps:
1. Follow the bottom only when the view already is at the bottom: a reader
   who scrolled up to read is never yanked down; a bar offers the jump.
2. Text goes in as few Tk calls as possible: append() inserts a whole batch
   of lines with ONE `insert` carrying (text, tags) pairs.
3. Tag colours are raw Tk colours (they do not follow customtkinter's mode),
   so apply_theme() re-applies them from theme.tag_colours() on every switch.
4. The widget is read-only for the user but not `state="disabled"` while
   inserting (a disabled CTkTextbox drops inserts silently).
"""

from __future__ import annotations

import re
import time
import tkinter.font
import webbrowser
from collections.abc import Callable, Sequence

import customtkinter as ctk

from parley_chat.protocol.vocab import EMOTE_PREFIX, MessageKind, is_emote

from . import emoji, richtext, theme
from .model import (
    Conversation,
    Line,
    continues,
    display_text,
    format_day,
    format_time,
    local_time,
)

#: The mark after an end-to-end encrypted message (drawn as a colour emoji).
LOCK = "\U0001f512"
#: The words after a private message that was not end-to-end encrypted.
PLAIN_PRIVATE = "not end-to-end encrypted"

#: Left margin of message text, in pixels: wrapped lines keep it (lmargin2),
#: so a long message reads as one indented block, not typed spaces.
MARGIN = 16

#: Tag options that do not depend on the mode (colours come from theme.tag_colours).
_LAYOUT_TAGS: dict[str, dict[str, object]] = {
    "msg": {"lmargin1": MARGIN, "lmargin2": MARGIN, "rmargin": 12},
    "head": {"spacing1": 10},
    "body": {"spacing1": 1, "spacing3": 1},
    "rtl": {"justify": "right"},
    "sysline": {"spacing1": 6, "spacing3": 2, "lmargin1": MARGIN, "lmargin2": MARGIN + 14},
    "day": {"justify": "center", "spacing1": 14, "spacing3": 6},
    "divider": {"justify": "center", "spacing1": 10, "spacing3": 4},
    "local": {"spacing1": 4, "spacing3": 2, "lmargin1": MARGIN, "lmargin2": MARGIN},
    "heading": {"spacing1": 8, "spacing3": 8, "lmargin1": MARGIN},
}


def _fonts(size: int) -> dict[str, tuple[object, ...]]:
    """The tag fonts for body text of *size* pixels (font zoom changes it)."""
    small = max(8, size - 2)
    return {
        "nick": (theme.FONT_FAMILY, -size, "bold"),
        "hit": (theme.FONT_FAMILY, -size, "bold"),  # search hits: bold on their tint
        "ts": (theme.FONT_FAMILY, -max(8, size - 3)),
        "day": (theme.FONT_FAMILY, -small, "bold"),
        "divider": (theme.FONT_FAMILY, -small, "bold"),
        "sysline": (theme.FONT_FAMILY, -max(8, size - 1), "italic"),
        "local": (theme.FONT_FAMILY, -max(8, size - 1), "italic"),
        "heading": (theme.FONT_FAMILY, -(size + 2), "bold"),
        "where": (theme.FONT_FAMILY, -small, "bold"),
    }


#: A presence line: "alice joined #dev", "bob left #dev (timed out)".
_PRESENCE = re.compile(r"^(\S+) (joined|left) (\S+)(?: \((.*)\))?$")
#: Consecutive presence lines this close in time are one burst ...
BURST_SECONDS = 10 * 60
#: ... and a burst of at least this many lines is drawn as one summary line.
COLLAPSE_AT = 3


def presence_of(line: Line) -> tuple[str, str, str] | None:
    """(nick, "joined"|"left", room) when *line* is a join or leave notice."""
    if line.kind != "system" or line.where is not None:
        return None
    m = _PRESENCE.match(line.text)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def in_burst(prev: Line, line: Line) -> bool:
    """True when presence line *line* continues the burst that *prev* is in."""
    a, b = presence_of(prev), presence_of(line)
    return (
        a is not None
        and b is not None
        and a[2] == b[2]
        and 0 <= line.epoch - prev.epoch <= BURST_SECONDS
    )


def _names(nicks: list[str]) -> str:
    unique = list(dict.fromkeys(nicks))
    if len(unique) <= 4:
        return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]
    return f"{', '.join(unique[:3])} and {len(unique) - 3} others"


def burst_summary(lines: Sequence[Line]) -> str:
    """One sentence for a burst of joins and leaves: "alice, bob and carol joined #dev · dave left"."""
    joined = [p[0] for ln in lines if (p := presence_of(ln)) and p[1] == "joined"]
    left = [p[0] for ln in lines if (p := presence_of(ln)) and p[1] == "left"]
    room = next(p[2] for ln in lines if (p := presence_of(ln)))
    parts = []
    if joined:
        parts.append(f"{_names(joined)} joined {room}")
    if left:
        parts.append(f"{_names(left)} left" + ("" if joined else f" {room}"))
    return " \u00b7 ".join(parts)


#: Cuts one paragraph (logical order) into the display lines that fit the view.
Wrapper = Callable[[str], list[str]]


def _text_runs(
    text: str, tags: tuple[str, ...], hits: tuple[str, ...] = (), wrap: Wrapper | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """One paragraph of message text as (text, tags) runs: links carry "link" and
    "href=<url>", emoji "emoji", search hits "hit"; right-to-left paragraphs "rtl".

    A paragraph holding right-to-left text is cut by *wrap* (when given) into
    display lines first, each reordered on its own and ended by a newline
    tagged "softbreak", so its lines read from the top down (richtext.wrap);
    all its runs carry "bidi" (the view cuts them again when its width changes)."""
    rtl = richtext.is_rtl(text)
    if rtl:
        tags = (*tags, "rtl")
    lines = [text]
    if wrap is not None and richtext.has_rtl(text):
        lines = wrap(text)
        tags = (*tags, "bidi")  # cut by us: a resize must cut it again
    out: list[tuple[str, tuple[str, ...]]] = []
    for i, part in enumerate(lines):
        if i:
            out.append(("\n", (*tags, "softbreak")))
        for run in richtext.runs(part, hits, rtl if len(lines) > 1 else None):
            if run.kind == "link":
                out.append((run.text, (*tags, "link", f"href={run.url}")))
            elif run.kind in ("emoji", "hit"):
                out.append((run.text, (*tags, run.kind)))
            else:
                out.append((run.text, tags))
    return out


def segments(
    line: Line,
    prev: Line | None,
    prev_epoch: float = 0.0,
    now: float | None = None,
    wrap: Wrapper | None = None,
) -> list[tuple[str, tuple[str, ...]]]:
    """The (text, tags) runs that draw *line* after *prev* in the text widget.

    *prev_epoch* is the time of the last dated line drawn (0 for none): a day
    heading goes before the first line of each local day. Consecutive messages
    of one sender share one header (nick and time). Every text and name goes
    through display_text, and message text is reordered (right-to-left) one
    paragraph at a time in runs of its own, so nothing in a message can move
    the nick or the time. *wrap* cuts paragraphs with right-to-left text into
    display lines (_text_runs).
    """
    now = time.time() if now is None else now
    text_of = display_text(line.text)
    sender = display_text(line.sender or "")
    where = display_text(line.where or "")
    out: list[tuple[str, tuple[str, ...]]] = []
    if line.epoch and (
        not prev_epoch or local_time(prev_epoch).date() != local_time(line.epoch).date()
    ):
        out.append((f"{format_day(line.epoch, now)}\n", ("day",)))
        prev = None
    if line.kind == "divider":
        rule = "\u2500" * 12
        out.append((f"{rule}  {text_of}  {rule}\n", ("divider",)))
        return out
    if line.kind == "heading":
        out.append((f"{text_of}\n", ("heading",)))
        return out
    if line.kind in ("notice", "error"):
        for text in text_of.split("\n"):
            out.append((f"{text}\n", (line.kind, "local")))
        return out
    base: tuple[str, ...] = ("msg",)
    if line.where is not None and line.id is not None:
        base += ("result", f"goto-{line.id}")
    if line.own:
        base += ("own",)
    if line.mention:
        base += ("mention",)
    if line.secure:
        base += ("secure",)
    elif line.kind == MessageKind.PRIVATE:
        base += ("insecure",)
    when = format_time(line.epoch) if line.epoch else ""
    if line.kind == "system":
        out.append(("\u2192 ", ("system", "sysline", *base)))
        out.extend(_text_runs(text_of, ("system", "sysline", *base), wrap=wrap))
        out.append((f"   {when}\n", ("ts", "sysline", *base)))
        return out
    if prev is None or prev.kind == "divider" or not continues(prev, line):
        if where:
            out.append((f"{where}  ", ("where", "head", *base)))
        out.append((sender, (line.kind, "nick", "head", *base)))
        out.append((f"   {when}\n", ("ts", "head", *base)))
    if line.sender and is_emote(line.text):  # "/me waves" reads "* bob waves"
        text_of = f"* {sender} {display_text(line.text.removeprefix(EMOTE_PREFIX))}"
    for text in text_of.split("\n"):
        out.extend(_text_runs(text, ("body", f"{line.kind}-body", *base), line.hits, wrap))
        out.append(("\n", ("body", *base)))
    # Before the last newline, closing the message's last line: "(edited)", then
    # the padlock of an end-to-end encrypted message, or the plain words for a
    # private message that was not (the peer had no keys).
    tail: list[tuple[str, tuple[str, ...]]] = []
    if line.edited:
        tail.append((" (edited)", ("ts", "edited", *base)))
    if line.secure:
        tail.append((" ", ("body", *base)))
        tail.append((LOCK, ("ts", "lock", "emoji", *base)))
        if line.unreadable:
            tail.append((f" ({display_text(line.unreadable)})", ("ts", "unreadable", *base)))
    elif line.kind == MessageKind.PRIVATE:
        tail.append((f" ({PLAIN_PRIVATE})", ("ts", "plain", *base)))
    out[len(out) - 1 : len(out) - 1] = tail
    return out


def _marked(
    line: Line, runs: list[tuple[str, tuple[str, ...]]]
) -> list[tuple[str, tuple[str, ...]]]:
    """*runs* of a message with its id as a tag ("m-<id>"), by which the message
    context menu (moderation: edit, delete) finds what was clicked."""
    if line.id is None:
        return runs
    mark = f"m-{line.id}"
    return [(text, (*tags, mark)) if "msg" in tags else (text, tags) for text, tags in runs]


def burst_segments(lines: Sequence[Line]) -> list[tuple[str, tuple[str, ...]]]:
    """One summary line for a collapsed burst of joins and leaves (COLLAPSE_AT or more)."""
    first, last = format_time(lines[0].epoch), format_time(lines[-1].epoch)
    span = first if first == last else f"{first}\u2013{last}"
    tags = ("system", "sysline", "msg", "burst")
    return [
        ("\u2192 ", tags),
        (display_text(burst_summary(lines)), tags),
        (f"   {span}\n", ("ts", "sysline", "msg", "burst")),
    ]


def open_in_browser(url: str) -> None:
    """Open *url* in the system's web browser (off the Tk thread: it may block)."""
    import threading

    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()


class ChatView(ctk.CTkFrame):
    """The open conversation. Callbacks: *on_load_older* (no arguments) asks for a
    history page; *on_search* (words) runs a search."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_load_older: Callable[[], None],
        on_search: Callable[[str], None],
        on_toggle_mute: Callable[[], None] | None = None,
        on_open_link: Callable[[str], None] | None = None,
        on_open_result: Callable[[int], None] | None = None,
        on_type: Callable[[str], None] | None = None,
        mode: str = "light",
        font_size: int = theme.SIZE_BODY,
    ) -> None:
        super().__init__(master, corner_radius=0, fg_color=theme.pair("chat_bg"))
        self._on_load_older = on_load_older
        self._on_search = on_search
        self._on_open_link = on_open_link or open_in_browser
        self._on_open_result = on_open_result or (lambda _id: None)
        self._on_type = on_type or (lambda _char: None)
        self._last: Line | None = None  # the last line drawn, for grouping
        self._last_epoch = 0.0  # the time of the last dated line drawn, for day headings
        # The joins and leaves drawn last (a burst that later lines may extend),
        # and what was drawn before them.
        self._tail: list[Line] = []
        self._before_tail: tuple[Line | None, float] = (None, 0.0)
        self._hrefs: dict[str, str] = {}  # url -> its tag
        self._urls: dict[str, str] = {}  # tag -> url
        self.font_size = font_size
        self.emoji = emoji.EmojiImages(self)
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(2, weight=1)

        # header: conversation title, subtitle, search box
        header = ctk.CTkFrame(self, corner_radius=0, fg_color="transparent", height=56)
        header.grid(row=0, column=0, sticky="ew", padx=20, pady=(12, 6))
        header.grid_columnconfigure(1, weight=1)
        self.title_label = ctk.CTkLabel(
            header,
            text="",
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_TITLE + 2, "bold"),
            text_color=theme.pair("text"),
        )
        self.title_label.grid(row=0, column=0, sticky="w")
        self.subtitle_label = ctk.CTkLabel(
            header,
            text="",
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("muted"),
        )
        self.subtitle_label.grid(row=0, column=1, sticky="w", padx=(12, 0))
        self.mute_button = ctk.CTkButton(
            header,
            text="Mute",
            width=64,
            height=32,
            corner_radius=8,
            fg_color="transparent",
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("muted"),
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            command=on_toggle_mute or (lambda: None),
        )
        self.mute_button.grid(row=0, column=2, sticky="e", padx=(0, 6))
        self.search_entry = ctk.CTkEntry(
            header,
            width=200,
            height=32,
            corner_radius=16,
            border_width=1,
            border_color=theme.pair("border"),
            fg_color=theme.pair("side_bg"),
            placeholder_text="Search messages",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
        )
        self.search_entry.grid(row=0, column=3, sticky="e")
        self.search_entry.bind("<Return>", self._search)
        self.search_entry.bind("<Escape>", lambda _e: self.clear_search())

        sep = ctk.CTkFrame(self, height=1, corner_radius=0, fg_color=theme.pair("border"))
        sep.grid(row=1, column=0, sticky="new")

        # the text, with the "load older" control above it
        body = ctk.CTkFrame(self, corner_radius=0, fg_color="transparent")
        body.grid(row=2, column=0, sticky="nsew")
        body.grid_columnconfigure(0, weight=1)
        body.grid_rowconfigure(1, weight=1)
        self.older_button = ctk.CTkButton(
            body,
            text="Load older messages",
            height=26,
            corner_radius=13,
            fg_color=theme.pair("side_bg"),
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("muted"),
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            command=self._load_older,
        )
        self.older_button.grid(row=0, column=0, pady=(8, 0))
        self.text = ctk.CTkTextbox(
            body,
            corner_radius=0,
            border_width=0,
            border_spacing=10,
            fg_color=theme.pair("chat_bg"),
            text_color=theme.pair("text"),
            font=(theme.FONT_FAMILY, font_size),
            wrap="word",
            spacing1=1,
            spacing3=1,
            cursor="arrow",
        )
        self.text.grid(row=1, column=0, sticky="nsew", padx=(10, 4))
        self._tk_text = self.text._textbox  # the real tkinter.Text (fonts on tags need it)
        # Read-only for the user, without state="disabled" (rule 4): swallow
        # keys that edit, keep selection and copying.
        self._tk_text.bind("<Key>", self._readonly_key)
        self._tk_text.bind("<Control-a>", self._select_all)
        self._tk_text.bind("<<Paste>>", lambda _e: "break")
        self._tk_text.bind("<<Copy>>", self._copy)
        self._tk_text.bind("<<Cut>>", lambda _e: "break")
        self._tk_text.configure(insertwidth=0, takefocus=False)
        for tag, opts in _LAYOUT_TAGS.items():
            self._tk_text.tag_configure(tag, **opts)
        for tag, font in _fonts(font_size).items():
            self._tk_text.tag_configure(tag, font=font)
        self._tk_text.tag_bind("link", "<Button-1>", self._click_link)
        #: Moderation: called with (message id, x_root, y_root) on a right-click on a message.
        self.on_message_menu: Callable[[int, int, int], None] | None = None
        self._tk_text.tag_bind("msg", "<Button-3>", self._message_menu)
        self._tk_text.tag_bind("result", "<Button-1>", self._click_result)
        self._tk_text.tag_bind(
            "result", "<Enter>", lambda _e: self._tk_text.configure(cursor="hand2")
        )
        self._tk_text.tag_bind(
            "result", "<Leave>", lambda _e: self._tk_text.configure(cursor="arrow")
        )
        self._tk_text.tag_bind(
            "link", "<Enter>", lambda _e: self._tk_text.configure(cursor="hand2")
        )
        self._tk_text.tag_bind(
            "link", "<Leave>", lambda _e: self._tk_text.configure(cursor="arrow")
        )

        self.jump_button = ctk.CTkButton(
            body,
            text="New messages below  \u2193",
            height=28,
            corner_radius=14,
            fg_color=theme.pair("accent"),
            hover_color=theme.pair("accent_hover"),
            text_color="#ffffff",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
            command=self.scroll_to_bottom,
        )
        self._tk_text.bind("<Configure>", lambda _e: self._update_jump(), add=True)
        # Paragraphs with right-to-left text are wrapped by us (_wrapper): a new
        # width redraws them.
        self._conv: Conversation | None = None  # the conversation drawn
        self._wrap_width = 0  # the width the drawn text was wrapped for (0: none)
        self._rewrap_id: str | None = None
        self._measure_fonts: dict[int, tkinter.font.Font] = {}
        self._tk_text.bind("<Configure>", self._on_resize, add=True)
        self.text.bind("<MouseWheel>", lambda _e: self.after_idle(self._update_jump))
        self.text.bind("<Button-4>", lambda _e: self.after_idle(self._update_jump))
        self.text.bind("<Button-5>", lambda _e: self.after_idle(self._update_jump))
        self._jump_visible = False
        self.apply_theme(mode)

    # --- content ----------------------------------------------------------------------

    def show(self, conv: Conversation, subtitle: str = "") -> None:
        """Draw conversation *conv* from scratch and scroll to its newest line."""
        self._conv = conv
        self.set_header(conv, subtitle)
        self._render(conv.lines)
        self.scroll_to_bottom()

    def set_header(self, conv: Conversation, subtitle: str = "") -> None:
        """Update the title, subtitle and the "load older" control for *conv*."""
        if conv.kind == "room":
            title = f"#\u2009{conv.name.lstrip('#')}"
        elif conv.kind == "dm":
            title = f"@\u2009{conv.name}"
        else:
            title = conv.name
        if self.title_label.cget("text") != title:
            self.title_label.configure(text=title)
        if self.subtitle_label.cget("text") != subtitle:
            self.subtitle_label.configure(text=subtitle)
        self.set_older_state(conv)

    def header_text(self) -> str:
        """The header's subtitle as shown (tests)."""
        return str(self.subtitle_label.cget("text"))

    def set_older_state(self, conv: Conversation) -> None:
        """Show, disable or hide the "load older" control as *conv* allows."""
        if conv.kind == "search":
            self.older_button.grid_remove()
            return
        self.older_button.grid()
        if conv.loading:
            self.older_button.configure(text="Loading\u2026", state="disabled")
        elif conv.has_more:
            self.older_button.configure(text="Load older messages", state="normal")
        else:
            self.older_button.configure(text="Beginning of the conversation", state="disabled")

    def append(self, lines: Sequence[Line]) -> None:
        """Add *lines* at the end with one insert; follow them only if at the bottom."""
        if not lines:
            return
        # Follow when at the bottom, and always to the user's own new message.
        follow = self.at_bottom() or any(ln.own for ln in lines)
        lines = list(lines)
        if self._tail and presence_of(lines[0]) and in_burst(self._tail[-1], lines[0]):
            # The burst drawn last goes on: draw it again with the new lines.
            first = self._tk_text.tag_ranges("tail")
            if first:
                self._tk_text.delete(first[0], first[-1])
            self._last, self._last_epoch = self._before_tail
            lines = [*self._tail, *lines]
        self._insert(self._runs(lines, time.time()))
        if follow:
            self._tk_text.see("end")
        else:
            self._show_jump(True)

    def rerender(self, conv: Conversation, anchor_id: int | None = None) -> None:
        """Redraw *conv* keeping the reader's place: at the bottom if they were there,
        else with the message *anchor_id* (or the same fraction) at the top."""
        self._conv = conv
        follow = self.at_bottom()
        first = self._tk_text.yview()[0]
        anchor_index = self._render(conv.lines, anchor_id)
        self.set_older_state(conv)
        if anchor_index is not None:
            self._tk_text.yview(anchor_index)
        elif follow:
            self._tk_text.see("end")
        else:
            self._tk_text.yview_moveto(first)

    def _render(
        self, lines: Sequence[Line], anchor_id: int | None = None, mark: bool = False
    ) -> str | None:
        self._tk_text.delete("1.0", "end")
        self._tk_text.tag_remove("target", "1.0", "end")
        # The per-message tags of what was drawn before (they would pile up).
        stale = [t for t in self._tk_text.tag_names() if str(t).startswith("m-")]
        if stale:
            self._tk_text.tag_delete(*stale)
        self._show_jump(False)
        self._last, self._last_epoch = None, 0.0
        self._tail = []
        now = time.time()
        split = len(lines)
        if anchor_id is not None:
            split = next((i for i, ln in enumerate(lines) if ln.id == anchor_id), len(lines))
        anchor_index: str | None = None
        # What comes before the anchor goes in first, so we learn where it starts.
        self._insert(self._runs(lines[:split], now))
        if split < len(lines):
            anchor_index = self._tk_text.index("end-1c")
        if mark and split < len(lines):
            self._insert(self._runs(lines[split : split + 1], now))
            # The message itself, not the day heading that may go before it.
            first = self._tk_text.tag_nextrange("msg", anchor_index)
            self._tk_text.tag_add("target", first[0] if first else anchor_index, "end-1c")
            self._insert(self._runs(lines[split + 1 :], now))
        else:
            self._insert(self._runs(lines[split:], now))
        return anchor_index

    def _runs(self, lines: Sequence[Line], now: float) -> list[tuple[str, tuple[str, ...]]]:
        """The (text, tags) runs drawing *lines* after what is already shown.
        Bursts of joins and leaves are collapsed; the last burst carries the
        tag "tail", so append() can redraw it when the burst goes on."""
        out: list[tuple[str, tuple[str, ...]]] = []
        prev, prev_epoch = self._last, self._last_epoch
        wrap = self._wrapper()
        burst: list[Line] = []
        before: tuple[Line | None, float] = (prev, prev_epoch)

        def flush(tail: bool) -> None:
            if not burst:
                return
            if len(burst) >= COLLAPSE_AT:
                drawn = segments(burst[0], before[0], before[1], now)
                day = [run for run in drawn if run[1] == ("day",)]
                runs = day + burst_segments(burst)
            else:
                runs = []
                p, pe = before
                for ln in burst:
                    runs += _marked(ln, segments(ln, p, pe, now, wrap))
                    p, pe = ln, ln.epoch or pe
            extra = ("tail",) if tail else ()
            out.extend((text, (*tags, *extra)) for text, tags in runs)

        for line in lines:
            if presence_of(line) and (not burst or in_burst(burst[-1], line)):
                if not burst:
                    before = (prev, prev_epoch)
                burst.append(line)
            else:
                flush(False)
                burst = []
                if presence_of(line):
                    before = (prev, prev_epoch)
                    burst.append(line)
                else:
                    out.extend(_marked(line, segments(line, prev, prev_epoch, now, wrap)))
            prev = line
            prev_epoch = line.epoch or prev_epoch
        self._tk_text.tag_remove("tail", "1.0", "end")
        flush(True)
        if burst:
            self._tail, self._before_tail = list(burst), before
        elif lines:
            self._tail = []
        self._last, self._last_epoch = prev, prev_epoch
        return out

    def _text_width(self) -> int:
        """The pixels a line of message text may take (0 before the view is laid out)."""
        t = self._tk_text
        width = t.winfo_width()
        if width <= 1:
            return 0
        inner = 2 * (int(t.cget("padx")) + int(t.cget("borderwidth")))
        inner += 2 * int(t.cget("highlightthickness"))
        # The message margins (tag "msg"), and a little slack: bold hits and the
        # images' padding are a few pixels wider than the measure says.
        return max(40, width - inner - MARGIN - 12 - 8)

    def _wrapper(self) -> Wrapper | None:
        """Cuts a paragraph into display lines of the view's width (None before
        the view has one: Tk's own wrapping then, until the first resize)."""
        width = self._text_width()
        self._wrap_width = width
        if not width:
            return None
        font = self._measure_fonts.get(self.font_size)
        if font is None:
            font = tkinter.font.Font(self, family=theme.FONT_FAMILY, size=-self.font_size)
            self._measure_fonts[self.font_size] = font
        emoji_width = round(self.font_size * 1.25) + 2

        def fits(text: str) -> bool:
            plain = richtext.EMOJI.sub("", text)
            emoji_count = len(richtext.EMOJI.findall(text))
            return font.measure(richtext.shaped(plain)) + emoji_count * emoji_width <= width

        return lambda text: richtext.wrap(text, fits)

    def _on_resize(self, _event: object = None) -> None:
        if self._text_width() == self._wrap_width or not self._tk_text.tag_ranges("bidi"):
            return
        if self._rewrap_id is not None:
            self.after_cancel(self._rewrap_id)
        self._rewrap_id = self.after(100, self._rewrap)

    def _rewrap(self) -> None:
        self._rewrap_id = None
        if self._conv is not None and self._text_width() != self._wrap_width:
            self.rerender(self._conv)

    def _insert(self, runs: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Insert *runs* at the end: text in as few calls as possible, each emoji
        as an image (when a colour emoji font is there), links with their tag."""
        args: list[object] = []
        height = round(self.font_size * 1.25)
        for text, tags in runs:
            if "emoji" in tags:
                image = self.emoji.image(text, height)
                if image is not None:
                    if args:
                        self._tk_text.insert("end", *args)
                        args = []
                    self._tk_text.image_create("end", image=image, align="center", padx=1)
                    for tag in tags:
                        self._tk_text.tag_add(tag, "end-2c")
                    continue
            tags = tuple(self._href_tag(t) if t.startswith("href=") else t for t in tags)
            args.append(text)
            args.append(tags)
        if args:
            self._tk_text.insert("end", *args)

    def _href_tag(self, tag: str) -> str:
        url = tag[len("href=") :]
        name = self._hrefs.get(url)
        if name is None:
            name = self._hrefs[url] = f"href-{len(self._hrefs)}"
            self._urls[name] = url
        return name

    def _click_link(self, event: object) -> str:
        index = self._tk_text.index(f"@{getattr(event, 'x', 0)},{getattr(event, 'y', 0)}")
        for tag in self._tk_text.tag_names(index):
            url = self._urls.get(str(tag))
            if url:
                self._on_open_link(url)
                break
        return "break"

    def _message_menu(self, event: object) -> str | None:
        index = self._tk_text.index(f"@{getattr(event, 'x', 0)},{getattr(event, 'y', 0)}")
        for tag in self._tk_text.tag_names(index):
            name = str(tag)
            if name.startswith("m-") and name[2:].isdigit() and self.on_message_menu:
                x, y = getattr(event, "x_root", 0), getattr(event, "y_root", 0)
                self.on_message_menu(int(name[2:]), x, y)
                return "break"
        return None

    def message_ids(self) -> list[int]:
        """The ids of the messages drawn, in order (tests; the context menu's targets)."""
        ids = []
        for tag in self._tk_text.tag_names():
            name = str(tag)
            if name.startswith("m-") and name[2:].isdigit() and self._tk_text.tag_ranges(tag):
                ids.append(int(name[2:]))
        return sorted(ids)

    def _click_result(self, event: object) -> str | None:
        index = self._tk_text.index(f"@{getattr(event, 'x', 0)},{getattr(event, 'y', 0)}")
        names = [str(t) for t in self._tk_text.tag_names(index)]
        if "link" in names:
            return None  # a link inside a result opens the link
        for tag in names:
            if tag.startswith("goto-"):
                self._on_open_result(int(tag[5:]))
                return "break"
        return None

    def click_result(self, message_id: int) -> bool:
        """Click the search result of message *message_id* (tests); False if not shown."""
        ranges = self._tk_text.tag_ranges(f"goto-{message_id}")
        if not ranges:
            return False
        self._tk_text.see(ranges[0])
        self.update_idletasks()
        box = self._tk_text.bbox(ranges[0])
        if box is None:
            return False
        self._click_at(box[0] + 1, box[1] + 1)
        return True

    def jump_to(self, conv: Conversation, message_id: int) -> None:
        """Draw *conv* with message *message_id* in view, a third of the way down,
        and marked (a search result opened in its conversation)."""
        self._conv = conv
        self.set_header(conv)
        self._render(conv.lines, message_id, mark=True)
        ranges = self._tk_text.tag_ranges("target")
        if ranges:
            self._tk_text.see("end")
            self._tk_text.update_idletasks()
            self._tk_text.yview(ranges[0])
            self._tk_text.yview_scroll(-4, "units")
            self._show_jump(not self.at_bottom())
        else:
            self.scroll_to_bottom()

    def target_text(self) -> str:
        """The text of the message marked by jump_to() ("" when none)."""
        ranges = self._tk_text.tag_ranges("target")
        return self._tk_text.get(ranges[0], ranges[-1]) if ranges else ""

    def links(self) -> dict[str, str]:
        """Link text shown -> its url (for tests)."""
        out = {}
        for name, url in self._urls.items():
            ranges = self._tk_text.tag_ranges(name)
            for i in range(0, len(ranges), 2):
                out[self._tk_text.get(ranges[i], ranges[i + 1])] = url
        return out

    def open_link_at_text(self, needle: str) -> bool:
        """Click the link whose text starts with *needle* (tests); False if none."""
        index = self._tk_text.search(needle, "1.0", stopindex="end")
        if not index:
            return False
        self._tk_text.see(index)
        self.update_idletasks()
        box = self._tk_text.bbox(index)
        if box is None:
            return False
        self._click_at(box[0] + 1, box[1] + 1)
        return True

    def _click_at(self, x: int, y: int) -> None:
        # Tag bindings follow the "current" mark, which the pointer's motion sets.
        self._tk_text.event_generate("<Enter>", x=x, y=y)
        self._tk_text.event_generate("<Motion>", x=x, y=y)
        self._tk_text.event_generate("<ButtonPress-1>", x=x, y=y)
        self._tk_text.event_generate("<ButtonRelease-1>", x=x, y=y)

    def image_count(self) -> int:
        """How many images (emoji) the text shows."""
        return len(self._tk_text.image_names())

    def set_font_size(self, size: int) -> None:
        """Draw the conversation's text at *size* pixels (font zoom)."""
        self.font_size = size
        self.text.configure(font=(theme.FONT_FAMILY, size))
        for tag, font in _fonts(size).items():
            self._tk_text.tag_configure(tag, font=font)

    def content(self) -> str:
        """All the text shown (for tests and copying)."""
        return self._tk_text.get("1.0", "end-1c")

    def tagged_count(self, tag: str) -> int:
        """How many separate runs carry *tag* (e.g. "lock": the padlocks shown)."""
        return len(self._tk_text.tag_ranges(tag)) // 2

    def tags_at_text(self, needle: str) -> tuple[str, ...]:
        """The tags at the first occurrence of *needle* (empty when absent)."""
        index = self._tk_text.search(needle, "1.0", stopindex="end")
        return tuple(self._tk_text.tag_names(index)) if index else ()

    def colour_at_text(self, needle: str) -> str | None:
        """The foreground colour the tags give *needle*'s first character."""
        index = self._tk_text.search(needle, "1.0", stopindex="end")
        if not index:
            return None
        colour = None
        # tag_names lists tags lowest priority first: the last colour wins.
        for tag in self._tk_text.tag_names(index):
            value = self._tk_text.tag_cget(tag, "foreground")
            if value:
                colour = str(value)
        return colour

    def nick_colour(self, nick: str) -> str | None:
        """The colour of the last header naming *nick* (the kind's colour)."""
        ranges = self._tk_text.tag_ranges("nick")
        for i in range(len(ranges) - 2, -1, -2):
            if self._tk_text.get(ranges[i], ranges[i + 1]) == nick:
                return self._colour_at(str(ranges[i]))
        return None

    def _colour_at(self, index: str) -> str | None:
        colour = None
        for tag in self._tk_text.tag_names(index):
            value = self._tk_text.tag_cget(tag, "foreground")
            if value:
                colour = str(value)
        return colour

    # --- scrolling --------------------------------------------------------------------

    def at_bottom(self) -> bool:
        """True when the last line is in view (new lines will then be followed)."""
        if self._tk_text.yview()[1] >= 0.999:
            return True
        return self._tk_text.dlineinfo("end-1c") is not None

    def scroll_to_bottom(self) -> None:
        """Show the newest line and hide the jump bar."""
        self._tk_text.see("end")
        self._show_jump(False)

    def _update_jump(self) -> None:
        if self._jump_visible and self.at_bottom():
            self._show_jump(False)

    def _show_jump(self, visible: bool) -> None:
        if visible == self._jump_visible:
            return
        self._jump_visible = visible
        if visible:
            self.jump_button.grid(row=2, column=0, pady=(4, 8))
        else:
            self.jump_button.grid_remove()

    # --- appearance -------------------------------------------------------------------

    def apply_theme(self, mode: str) -> None:
        """(Re)apply the tag colours of *mode* ("light" or "dark")."""
        for tag, opts in theme.tag_colours(mode).items():
            self._tk_text.tag_configure(tag, **opts)
        # Later tags win: kind colours over the row tints, mentions over own rows.
        for tag in (
            "own",
            "mention",
            "body",
            *theme.KINDS,
            "target",
            "link",
            "hit",
            "ts",
            "day",
            "where",
            "divider",
            "heading",
        ):
            self._tk_text.tag_raise(tag)
        p = theme.palette(mode)
        self._tk_text.configure(selectbackground=p.selected_bg, selectforeground=p.text)

    # --- callbacks --------------------------------------------------------------------

    def _load_older(self) -> None:
        self._on_load_older()

    def _search(self, _event: object = None) -> str:
        words = self.search_entry.get().strip()
        if words:
            self._on_search(words)
        return "break"

    def focus_search(self) -> None:
        """Ctrl+F: focus the search box with its old words selected, so typing
        replaces them instead of adding to them."""
        entry = self.search_entry._entry
        entry.focus_set()
        if self.search_entry.get():
            entry.select_range(0, "end")
            entry.icursor("end")

    def clear_search(self) -> None:
        """Empty the search box (sign-out; Escape in the box)."""
        self.search_entry.delete(0, "end")
        if self.focus_get() is not self.search_entry._entry:
            # Put the placeholder back (customtkinter shows it on focus-out only).
            self.search_entry._activate_placeholder()

    def set_muted(self, muted: bool | None) -> None:
        """Show the mute switch as on/off; None hides it (search results)."""
        if muted is None:
            self.mute_button.grid_remove()
            return
        self.mute_button.grid()
        self.mute_button.configure(text="Unmute" if muted else "Mute")

    def selected_text(self) -> str:
        """The selected text, emoji images given back as their characters."""
        try:
            parts = self._tk_text.dump("sel.first", "sel.last", text=True, image=True)
        except Exception:  # no selection
            return ""
        out = []
        for kind, value, _index in parts:
            if kind == "text":
                out.append(value)
            elif kind == "image":
                out.append(self.emoji.clusters.get(str(value), ""))
        return "".join(out)

    def _copy(self, _event: object = None) -> str:
        text = self.selected_text()
        if text:
            self.clipboard_clear()
            self.clipboard_append(text)
        return "break"

    def _select_all(self, _event: object = None) -> str:
        self._tk_text.tag_add("sel", "1.0", "end-1c")
        return "break"

    def _readonly_key(self, event: object) -> str | None:
        keysym = getattr(event, "keysym", "")
        state = int(getattr(event, "state", 0))
        if state & 0x4 and keysym.lower() in ("c", "a"):  # Ctrl+C, Ctrl+A
            return None
        if state & 0xC:  # other Ctrl/Alt shortcuts belong to the window
            return None
        if keysym in ("Up", "Down", "Prior", "Next", "Home", "End", "Left", "Right"):
            return None
        char = getattr(event, "char", "")
        if char and char.isprintable():
            self._on_type(char)  # typing while reading goes to the input
        return "break"
