"""The left column: the brand and server, the rooms and
private conversations with their unread counts, and the user's own card
(status, light/dark switch, sign out).

Rows are created once per conversation and then only reconfigured when what
they show changes (a cached state per row), so a busy room costs the sidebar
nothing while its count does not move.
"""

from __future__ import annotations

import re
import tkinter.font
import warnings
from collections.abc import Callable, Sequence

import customtkinter as ctk

from parley_chat.protocol import EMOTE_PREFIX, is_emote

from . import emoji, richtext, theme
from .elide import ELLIPSIS, elide
from .model import Conversation, display_text

#: The key button's icon (the end-to-end key menu).
KEY_ICON = "\U0001f511"
#: The width of a row's preview line, in pixels (the sidebar is 240 wide).
PREVIEW_WIDTH = 178
#: The width of a row's name, in pixels, without and with its unread badge.
ROW_NAME_WIDTH = 186
ROW_NAME_WIDTH_BESIDE_BADGE = 156
#: The width of the nick on the user's card, left of its three icon buttons.
CARD_NAME_WIDTH = 52
_SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff]")


def preview_line(who: str, text: str, fits: Callable[[str], bool]) -> str:
    """The one-line hint of a conversation's latest message: "who: text", flat
    (whitespace runs become one space), cut with an ellipsis where *fits*
    says it is too wide. Direction controls are shown as codes and a
    right-to-left text is reordered on its own, so nothing in it can move the
    name before it; the cut is made in reading order, before reordering."""
    # Tk draws a skin tone apart from its emoji (a brown square) in a label,
    # which cannot hold the chat's emoji images: the hint goes without it.
    emote = bool(who) and is_emote(text)  # "/me waves": "* bob waves"
    if emote:
        text = text.removeprefix(EMOTE_PREFIX)
    flat = display_text(_SKIN_TONES.sub("", " ".join(text.split())))
    before, after = ("* ", " ") if emote else ("", ": ")
    head = f"{before}{display_text(who)}{after}" if who else ""
    if head and not fits(head + ELLIPSIS):
        # A name too long for the line: cut it too, so the hint still fits.
        head = before + elide(display_text(who), lambda t: fits(f"{before}{t}{after}{ELLIPSIS}"))
        head += after
    if not flat:
        return head.rstrip()
    flat = elide(flat, lambda t: fits(head + t))
    return head + richtext.visual(flat)


def make_avatar(master: ctk.CTkBaseClass, nick: str, size: int = 28) -> ctk.CTkLabel:
    """A round avatar with *nick*'s initial on its own colour."""
    return ctk.CTkLabel(
        master,
        text=(nick[:1] or "?").upper(),
        width=size,
        height=size,
        corner_radius=size // 2,
        fg_color=theme.avatar_colour(nick),
        text_color="#ffffff",
        font=(theme.FONT_FAMILY, max(11, size // 2), "bold"),
    )


class _RowFonts:
    """The fonts a row's texts are measured in (elide), made once for all rows:
    the preview's, and the name's in each weight."""

    def __init__(self, master: ctk.CTkBaseClass) -> None:
        self.preview = tkinter.font.Font(master, family=theme.FONT_FAMILY, size=-theme.SIZE_SMALL)
        self.name = {
            weight: tkinter.font.Font(
                master, family=theme.FONT_FAMILY, size=-theme.SIZE_BODY, weight=weight
            )
            for weight in ("normal", "bold")
        }


class _Row:
    """One conversation row: a button with the name, an unread badge, and a
    line previewing the latest message (when there is one)."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        key: str,
        on_select: Callable[[str], None],
        fonts: _RowFonts,
    ) -> None:
        self.frame = ctk.CTkFrame(master, fg_color="transparent", corner_radius=6, height=34)
        self.frame.grid_columnconfigure(0, weight=1)
        self.preview = ctk.CTkLabel(
            self.frame,
            text="",
            anchor="w",
            height=14,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("muted"),
        )
        self.preview.bind("<Button-1>", lambda _e: on_select(key))
        self._fonts = fonts
        self.preview_text = ""
        self.button = ctk.CTkButton(
            self.frame,
            text="",
            anchor="w",
            height=32,
            corner_radius=6,
            fg_color="transparent",
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("muted"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            command=lambda: on_select(key),
        )
        self.button.grid(row=0, column=0, columnspan=2, sticky="ew")
        self.badge = ctk.CTkLabel(
            self.frame,
            text="",
            width=22,
            height=18,
            corner_radius=9,
            fg_color=theme.pair("badge_bg"),
            text_color=theme.pair("badge_text"),
            font=(theme.FONT_FAMILY, 11, "bold"),
        )
        self.state: tuple[object, ...] | None = None

    def show(
        self,
        label: str,
        unread: int,
        selected: bool,
        loud: bool = True,
        preview: tuple[str, str] = ("", ""),
    ) -> None:
        """*loud*: the unread messages mention the user or are private (a red
        badge); otherwise the count is quiet (grey) and the name is not bold.
        *preview*: (who, text) of the latest message ("" text: no preview line)."""
        state = (label, unread, selected, loud, preview)
        if state == self.state:
            return
        self.state = state
        strong = selected or (unread > 0 and loud)
        who, text = preview
        shown = ""
        if text.strip():
            shown = preview_line(
                who, text, lambda t: self._fonts.preview.measure(t) <= PREVIEW_WIDTH
            )
        if shown != self.preview_text:
            self.preview_text = shown
            if shown:
                self.preview.configure(text=shown)
                self.preview.grid(row=1, column=0, columnspan=2, sticky="ew", padx=(12, 8))
            else:
                self.preview.grid_remove()
        self.frame.configure(fg_color=theme.pair("selected_bg") if selected else "transparent")
        self.preview.configure(
            text_color=theme.pair("text") if strong and unread else theme.pair("muted")
        )
        weight = "bold" if strong else "normal"
        width = ROW_NAME_WIDTH_BESIDE_BADGE if unread > 0 else ROW_NAME_WIDTH
        font = self._fonts.name[weight]
        self.button.configure(
            text=elide(label, lambda t: font.measure(t) <= width),
            fg_color="transparent",
            text_color=theme.pair("text") if strong else theme.pair("muted"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY, weight),
        )
        if unread > 0:
            self.badge.configure(
                text=str(unread) if unread < 100 else "99+",
                fg_color=theme.pair("badge_bg" if loud else "quiet_bg"),
                text_color=theme.pair("badge_text" if loud else "quiet_text"),
            )
            self.badge.grid(row=0, column=1, padx=(0, 8))
            self.badge.lift()
        else:
            self.badge.grid_remove()


class Sidebar(ctk.CTkFrame):
    """Rooms and private conversations. Callbacks: *on_select* (conversation key),
    *on_new_room*, *on_toggle_theme*, *on_sign_out*, *on_keys* (the end-to-end
    key menu; no arguments)."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_select: Callable[[str], None],
        on_new_room: Callable[[], None],
        on_toggle_theme: Callable[[], None],
        on_sign_out: Callable[[], None],
        on_keys: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(master, corner_radius=0, width=240, fg_color=theme.pair("side_bg"))
        self._on_select = on_select
        self.grid_propagate(False)
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(1, weight=1)

        brand = ctk.CTkFrame(self, fg_color="transparent")
        brand.grid(row=0, column=0, sticky="ew", padx=16, pady=(16, 8))
        logo = ctk.CTkLabel(
            brand,
            text="p",
            width=34,
            height=34,
            corner_radius=9,
            fg_color=theme.pair("accent"),
            text_color="#ffffff",
            font=(theme.FONT_FAMILY, 20, "bold"),
        )
        logo.grid(row=0, column=0, rowspan=2, padx=(0, 10))
        ctk.CTkLabel(
            brand,
            text="parley",
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_TITLE + 1, "bold"),
            text_color=theme.pair("text"),
            height=18,
        ).grid(row=0, column=1, sticky="w")
        self.server_label = ctk.CTkLabel(
            brand,
            text="",
            anchor="w",
            height=16,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("muted"),
        )
        self.server_label.grid(row=1, column=1, sticky="w")

        self.scroll = ctk.CTkScrollableFrame(
            self,
            fg_color="transparent",
            corner_radius=0,
            scrollbar_button_color=theme.pair("side_bg"),
            scrollbar_button_hover_color=theme.pair("border"),
        )
        self.scroll.grid(row=1, column=0, sticky="nsew", padx=(8, 0))
        self.scroll.grid_columnconfigure(0, weight=1)
        self._rooms_header = self._section("ROOMS", on_new_room)
        self._dms_header = self._section("DIRECT MESSAGES", None)
        self._search_header = self._section("SEARCH", None)
        self._rows: dict[str, _Row] = {}
        self._row_fonts = _RowFonts(self)
        self._order: list[str] | None = None

        # the user's card
        card = ctk.CTkFrame(self, fg_color=theme.pair("rail_bg"), corner_radius=0, height=60)
        card.grid(row=2, column=0, sticky="ew")
        card.grid_columnconfigure(1, weight=1)
        self._card = card
        self.avatar: ctk.CTkLabel | None = None
        self._nick: str | None = None
        self._card_font = tkinter.font.Font(
            card, family=theme.FONT_FAMILY, size=-theme.SIZE_BODY, weight="bold"
        )
        self.nick_label = ctk.CTkLabel(
            card,
            text="",
            anchor="w",
            height=18,
            font=(theme.FONT_FAMILY, theme.SIZE_BODY, "bold"),
            text_color=theme.pair("text"),
        )
        self.nick_label.grid(row=0, column=1, sticky="sw", pady=(10, 0))
        self.presence_label = ctk.CTkLabel(
            card,
            text="",
            anchor="w",
            height=16,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("muted"),
        )
        self.presence_label.grid(row=1, column=1, sticky="nw", pady=(0, 10))
        icon = {
            "width": 32,
            "height": 32,
            "corner_radius": 8,
            "fg_color": "transparent",
            "hover_color": theme.pair("hover_bg"),
            "text_color": theme.pair("muted"),
            "font": (theme.FONT_FAMILY, 16),
        }
        # The end-to-end keys: unlock, export, import (a menu; client/gui/e2e.py).
        # A key emoji drawn as an image (no UI font has a key or lock glyph);
        # the word without a colour emoji font.
        key = emoji.bitmap(KEY_ICON, 18)
        on_keys = on_keys or (lambda: None)
        if key is not None:
            from PIL import ImageTk

            # A PhotoImage of this window's own interpreter (a CTkImage would be
            # made in the first window's, and several windows share a process
            # in tests). Kept here: Tk drops an image nobody references.
            # customtkinter warns that such an image is not scaled for HighDPI: it
            # is drawn at the size the chat text uses, which is what is wanted here.
            self._key_image = ImageTk.PhotoImage(key, master=card)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "CTkButton Warning", UserWarning)
                self.keys_button = ctk.CTkButton(
                    card, text="", image=self._key_image, command=on_keys, **icon
                )
        else:
            words = {**icon, "width": 40, "font": (theme.FONT_FAMILY, theme.SIZE_SMALL)}
            self.keys_button = ctk.CTkButton(card, text="Keys", command=on_keys, **words)
        self.keys_button.grid(row=0, column=2, rowspan=2, padx=(0, 2))
        self.theme_button = ctk.CTkButton(card, text="\u263e", command=on_toggle_theme, **icon)
        self.theme_button.grid(row=0, column=3, rowspan=2, padx=(0, 2))
        self.sign_out_button = ctk.CTkButton(card, text="\u21e5", command=on_sign_out, **icon)
        self.sign_out_button.grid(row=0, column=4, rowspan=2, padx=(0, 10))

    def _section(self, title: str, on_add: Callable[[], None] | None) -> ctk.CTkFrame:
        frame = ctk.CTkFrame(self.scroll, fg_color="transparent", height=28)
        frame.grid_columnconfigure(0, weight=1)
        ctk.CTkLabel(
            frame,
            text=title,
            anchor="w",
            height=24,
            font=(theme.FONT_FAMILY, 11, "bold"),
            text_color=theme.pair("muted"),
        ).grid(row=0, column=0, sticky="w", padx=(10, 0))
        if on_add is not None:
            ctk.CTkButton(
                frame,
                text="+",
                width=24,
                height=24,
                corner_radius=6,
                fg_color="transparent",
                hover_color=theme.pair("hover_bg"),
                text_color=theme.pair("muted"),
                font=(theme.FONT_FAMILY, 16),
                command=on_add,
            ).grid(row=0, column=1, padx=(0, 6))
        return frame

    def set_user(self, nick: str, server: str | None, status: str) -> None:
        """Show who is logged in where (None keeps the server shown), and the
        connection state in words."""
        if self.avatar is None or self._nick != nick:
            if self.avatar is not None:
                self.avatar.destroy()
            self._nick = nick
            self.avatar = make_avatar(self._card, nick or "?", 34)
            self.avatar.grid(row=0, column=0, rowspan=2, padx=(14, 10), pady=10)
            font = self._card_font
            self.nick_label.configure(
                text=elide(nick, lambda t: font.measure(t) <= CARD_NAME_WIDTH)
            )
        if server is not None and self.server_label.cget("text") != server:
            self.server_label.configure(text=server)
        if self.presence_label.cget("text") != status:
            self.presence_label.configure(text=status)

    def set_theme_icon(self, mode: str) -> None:
        """The switch shows the mode it switches to: a moon in light mode, a sun in dark."""
        self.theme_button.configure(text="\u263e" if mode == "light" else "\u2600")

    def update_conversations(
        self,
        rooms: Sequence[Conversation],
        dms: Sequence[Conversation],
        search: Conversation | None,
        current: str,
        muted: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Show these conversations, *current* selected, each with its unread count
        (red for mentions and private messages unless *muted*, grey otherwise)."""
        keys = [c.key for c in rooms] + [c.key for c in dms] + ([search.key] if search else [])
        for key in list(self._rows):
            if key not in keys:
                self._rows.pop(key).frame.destroy()
        for conv in [*rooms, *dms, *([search] if search else [])]:
            row = self._rows.get(conv.key)
            if row is None:
                row = self._rows[conv.key] = _Row(
                    self.scroll, conv.key, self._on_select, self._row_fonts
                )
            loud = conv.mentioned and conv.key not in muted
            label = self.label_of(conv) + ("  \u00b7 muted" if conv.key in muted else "")
            row.show(
                label, conv.unread, conv.key == current, loud, (conv.preview_from, conv.preview)
            )
        order = ["rooms", *(c.key for c in rooms), "dms", *(c.key for c in dms)]
        if search is not None:
            order += ["search", search.key]
        if order == self._order:
            return
        self._order = order
        for i, key in enumerate(order):
            if key == "rooms":
                widget = self._rooms_header
            elif key == "dms":
                widget = self._dms_header
                if not dms:
                    widget.grid_remove()
                    continue
            elif key == "search":
                widget = self._search_header
            else:
                widget = self._rows[key].frame
            widget.grid(
                row=i, column=0, sticky="ew", pady=(10 if key in ("dms", "search") else 1, 1)
            )
        if search is None:
            self._search_header.grid_remove()

    @staticmethod
    def label_of(conv: Conversation) -> str:
        """The text of a conversation's row."""
        if conv.kind == "room":
            return f"#  {conv.name.lstrip('#')}"
        if conv.kind == "dm":
            return f"@  {conv.name}"
        return "\u2315  Results"

    def row_button(self, key: str) -> ctk.CTkButton:
        """The button of conversation *key* (tests click it)."""
        return self._rows[key].button

    def badge_text(self, key: str) -> str:
        """The unread badge of conversation *key* ("" when hidden or not listed)."""
        row = self._rows.get(key)
        if row is None:
            return ""
        unread = int(row.state[1]) if row.state else 0  # type: ignore[call-overload]
        return str(row.badge.cget("text")) if unread > 0 else ""

    def preview_of(self, key: str) -> str:
        """The preview line shown under conversation *key* ("" when none)."""
        row = self._rows.get(key)
        return row.preview_text if row is not None else ""

    def badge_is_loud(self, key: str) -> bool:
        """True when conversation *key*'s badge is red (mentions, private messages)."""
        row = self._rows.get(key)
        return bool(row is not None and row.state and row.state[1] and row.state[3])
