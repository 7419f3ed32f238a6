# client/gui/chat_view.py: the conversation pane: a header with the search box,
# the "load older" control, the read-only message text with one tag per kind,
# and the "new messages below" bar.
#
# Rules this module keeps:
# 1. Follow the bottom only when the view already is at the bottom: a reader
#    who scrolled up to read is never yanked down; a bar offers the jump.
# 2. Text goes in as few Tk calls as possible: append() inserts a whole batch
#    of lines with ONE `insert` carrying (text, tags) pairs.
# 3. Tag colours are raw Tk colours (they do not follow customtkinter's mode),
#    so apply_theme() re-applies them from theme.tag_colours() on every switch.
# 4. The widget is read-only for the user but not `state="disabled"` while
#    inserting (a disabled CTkTextbox drops inserts silently).

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import customtkinter as ctk

from . import theme
from .model import (
    Conversation,
    Line,
    continues,
    display_text,
    format_day,
    format_time,
    local_time,
)

#: Tag options that do not depend on the mode (colours come from theme.tag_colours).
_LAYOUT_TAGS: dict[str, dict[str, object]] = {
    "msg": {"lmargin1": 4, "lmargin2": 4, "rmargin": 12},
    "head": {"spacing1": 10},
    "body": {"spacing1": 1, "spacing3": 1},
    "sysline": {"spacing1": 6, "spacing3": 2},
    "day": {"justify": "center", "spacing1": 14, "spacing3": 6},
    "divider": {"justify": "center", "spacing1": 10, "spacing3": 4},
    "local": {"spacing1": 4, "spacing3": 2, "lmargin1": 4, "lmargin2": 4},
    "heading": {"spacing1": 8, "spacing3": 8, "lmargin1": 4},
}

_FONTS: dict[str, tuple[object, ...]] = {
    "nick": (theme.FONT_FAMILY, -theme.SIZE_BODY, "bold"),
    "ts": (theme.FONT_FAMILY, -11),
    "day": (theme.FONT_FAMILY, -12, "bold"),
    "divider": (theme.FONT_FAMILY, -12, "bold"),
    "sysline": (theme.FONT_FAMILY, -13, "italic"),
    "local": (theme.FONT_FAMILY, -13, "italic"),
    "heading": (theme.FONT_FAMILY, -theme.SIZE_TITLE, "bold"),
    "where": (theme.FONT_FAMILY, -12, "bold"),
}

_INDENT = "  "


def segments(
    line: Line, prev: Line | None, prev_epoch: float = 0.0, now: float | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """The (text, tags) runs that draw *line* after *prev* in the text widget.

    *prev_epoch* is the time of the last dated line drawn (0 for none): a day
    heading goes before the first line of each local day. Consecutive messages
    of one sender share one header (nick and time). Every text and name goes
    through display_text, so direction controls cannot move the nick or time.
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
            out.append((f"{_INDENT}{text}\n", (line.kind, "local")))
        return out
    base: tuple[str, ...] = ("msg",)
    if line.own:
        base += ("own",)
    if line.mention:
        base += ("mention",)
    when = format_time(line.epoch) if line.epoch else ""
    if line.kind == "system":
        out.append((f"{_INDENT}\u2192 {text_of}", ("system", "sysline", *base)))
        out.append((f"   {when}\n", ("ts", "sysline", *base)))
        return out
    if prev is None or prev.kind == "divider" or not continues(prev, line):
        if where:
            out.append((f"{_INDENT}{where}  ", ("where", "head", *base)))
            out.append((sender, (line.kind, "nick", "head", *base)))
        else:
            out.append((f"{_INDENT}{sender}", (line.kind, "nick", "head", *base)))
        out.append((f"   {when}\n", ("ts", "head", *base)))
    for text in text_of.split("\n"):
        out.append((f"{_INDENT}{text}\n", (line.kind, "body", *base)))
    return out


class ChatView(ctk.CTkFrame):
    """The open conversation. Callbacks: *on_load_older* (no arguments) asks for a
    history page; *on_search* (words) runs a search."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_load_older: Callable[[], None],
        on_search: Callable[[str], None],
        mode: str = "light",
    ) -> None:
        super().__init__(master, corner_radius=0, fg_color=theme.pair("chat_bg"))
        self._on_load_older = on_load_older
        self._on_search = on_search
        self._last: Line | None = None  # the last line drawn, for grouping
        self._last_epoch = 0.0  # the time of the last dated line drawn, for day headings
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
        self.search_entry = ctk.CTkEntry(
            header,
            width=240,
            height=32,
            corner_radius=16,
            border_width=1,
            border_color=theme.pair("border"),
            fg_color=theme.pair("side_bg"),
            placeholder_text="Search messages",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
        )
        self.search_entry.grid(row=0, column=2, sticky="e")
        self.search_entry.bind("<Return>", self._search)

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
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
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
        self._tk_text.bind("<<Cut>>", lambda _e: "break")
        self._tk_text.configure(insertwidth=0, takefocus=False)
        for tag, opts in _LAYOUT_TAGS.items():
            self._tk_text.tag_configure(tag, **opts)  # type: ignore[arg-type]
        for tag, font in _FONTS.items():
            self._tk_text.tag_configure(tag, font=font)

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
        self.text.bind("<MouseWheel>", lambda _e: self.after_idle(self._update_jump))
        self.text.bind("<Button-4>", lambda _e: self.after_idle(self._update_jump))
        self.text.bind("<Button-5>", lambda _e: self.after_idle(self._update_jump))
        self._jump_visible = False
        self.apply_theme(mode)

    # --- content ----------------------------------------------------------------------

    def show(self, conv: Conversation, subtitle: str = "") -> None:
        """Draw conversation *conv* from scratch and scroll to its newest line."""
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
        follow = self.at_bottom()
        args = self._runs(lines, time.time())
        self._tk_text.insert("end", *args)  # type: ignore[arg-type]
        if follow:
            self._tk_text.see("end")
        else:
            self._show_jump(True)

    def rerender(self, conv: Conversation, anchor_id: int | None = None) -> None:
        """Redraw *conv* keeping the reader's place: at the bottom if they were there,
        else with the message *anchor_id* (or the same fraction) at the top."""
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

    def _render(self, lines: Sequence[Line], anchor_id: int | None = None) -> str | None:
        self._tk_text.delete("1.0", "end")
        self._show_jump(False)
        self._last, self._last_epoch = None, 0.0
        now = time.time()
        split = len(lines)
        if anchor_id is not None:
            split = next((i for i, ln in enumerate(lines) if ln.id == anchor_id), len(lines))
        anchor_index: str | None = None
        # What comes before the anchor goes in first, so we learn where it starts.
        for part, is_tail in ((lines[:split], False), (lines[split:], True)):
            if is_tail and split < len(lines):
                anchor_index = self._tk_text.index("end-1c")
            args = self._runs(part, now)
            if args:
                self._tk_text.insert("end", *args)  # type: ignore[arg-type]
        return anchor_index

    def _runs(self, lines: Sequence[Line], now: float) -> list[object]:
        """The insert arguments (text, tags, text, tags, ...) drawing *lines* after
        what is already shown."""
        args: list[object] = []
        prev, prev_epoch = self._last, self._last_epoch
        for line in lines:
            for text, tags in segments(line, prev, prev_epoch, now):
                args.append(text)
                args.append(tags)
            prev = line
            prev_epoch = line.epoch or prev_epoch
        self._last, self._last_epoch = prev, prev_epoch
        return args

    def content(self) -> str:
        """All the text shown (for tests and copying)."""
        return self._tk_text.get("1.0", "end-1c")

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
            self._tk_text.tag_configure(tag, **opts)  # type: ignore[arg-type]
        # Later tags win: kind colours over the row tints, mentions over own rows.
        for tag in ("own", "mention", *theme.KINDS, "ts", "day", "where", "divider", "heading"):
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

    def _select_all(self, _event: object = None) -> str:
        self._tk_text.tag_add("sel", "1.0", "end-1c")
        return "break"

    @staticmethod
    def _readonly_key(event: object) -> str | None:
        keysym = getattr(event, "keysym", "")
        state = int(getattr(event, "state", 0))
        if state & 0x4 and keysym.lower() in ("c", "a"):  # Ctrl+C, Ctrl+A
            return None
        if keysym in ("Up", "Down", "Prior", "Next", "Home", "End", "Left", "Right"):
            return None
        return "break"
