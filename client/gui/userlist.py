"""The right column: who is online in the open room.
A double-click on a name opens a private conversation with that user.

Rows are kept per nick and only added, removed or re-ordered when the list
changes, so presence traffic in a busy room stays cheap.
"""

from __future__ import annotations

import tkinter.font
from collections.abc import Callable, Mapping, Sequence

import customtkinter as ctk

from parley_chat.protocol.vocab import Role

from . import theme
from .elide import elide
from .sidebar import make_avatar

#: The width of a name in the list, in pixels: the list is 220 wide, and the
#: avatar, the online dot and the scroll bar take the rest.
NAME_WIDTH = 118
#: The fewest characters of a nick kept before a role mark is shortened to its star.
MIN_NICK = 6
#: The width of the list's header ("ONLINE IN #ROOM — 12"), in pixels, and its type size.
HEADER_WIDTH = 184
HEADER_SIZE = 11


class _UserRow:
    """One user: an avatar, the nick (with "(you)" and a role mark, which a long
    nick is cut to make room for) and the online dot."""

    def __init__(
        self, master: ctk.CTkBaseClass, nick: str, me: bool, font: tkinter.font.Font
    ) -> None:
        self.nick, self.me, self._font = nick, me, font
        #: The role mark shown after the nick ("\u2605 owner"), or "".
        self.mark = ""
        self.frame = ctk.CTkFrame(master, fg_color="transparent", corner_radius=6, height=34)
        self.frame.grid_columnconfigure(1, weight=1)
        self.avatar = make_avatar(self.frame, nick, 26)
        self.avatar.grid(row=0, column=0, padx=(8, 10), pady=3)
        self.label = ctk.CTkLabel(
            self.frame,
            text=self._fitted(),
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            text_color=theme.pair("text"),
        )
        self.label.grid(row=0, column=1, sticky="ew")
        self.dot = ctk.CTkFrame(
            self.frame, width=8, height=8, corner_radius=4, fg_color=theme.pair("system")
        )
        self.dot.grid(row=0, column=2, padx=(4, 10))

    def set_mark(self, mark: str) -> None:
        """Show *mark* (a role, "" for none) after the nick."""
        if mark != self.mark:
            self.mark = mark
            self.label.configure(text=self._fitted())

    def _fitted(self) -> str:
        def fits(text: str) -> bool:
            return self._font.measure(text) <= NAME_WIDTH

        you = "  (you)" if self.me else ""
        shown = elide(self.nick, fits, suffix=you + (f"  {self.mark}" if self.mark else ""))
        if self.mark and not shown.startswith(self.nick[:MIN_NICK]):
            # The role's name left too little of the nick: its star alone.
            shown = elide(self.nick, fits, suffix=f"{you}  {self.mark.split(' ', 1)[0]}")
        return shown


class UserList(ctk.CTkFrame):
    """Online users of one room. *on_open* (nick) is called on a double-click."""

    def __init__(self, master: ctk.CTkBaseClass, *, on_open: Callable[[str], None]) -> None:
        super().__init__(master, corner_radius=0, width=220, fg_color=theme.pair("side_bg"))
        self._on_open = on_open
        self.grid_propagate(False)
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(1, weight=1)
        # The header's font, and the same one to measure it in (elide).
        self._header_font = tkinter.font.Font(
            self, family=theme.FONT_FAMILY, size=-HEADER_SIZE, weight="bold"
        )
        self.header = ctk.CTkLabel(
            self,
            text="ONLINE",
            anchor="w",
            font=(theme.FONT_FAMILY, HEADER_SIZE, "bold"),
            text_color=theme.pair("muted"),
        )
        self.header.grid(row=0, column=0, sticky="ew", padx=18, pady=(20, 4))
        self.scroll = ctk.CTkScrollableFrame(
            self,
            fg_color="transparent",
            corner_radius=0,
            scrollbar_button_color=theme.pair("side_bg"),
            scrollbar_button_hover_color=theme.pair("border"),
        )
        self.scroll.grid(row=1, column=0, sticky="nsew", padx=(6, 0))
        self.scroll.grid_columnconfigure(0, weight=1)
        self.hint = ctk.CTkLabel(
            self,
            text="Double-click a name to\nmessage them privately",
            justify="left",
            anchor="w",
            font=(theme.FONT_FAMILY, 11),
            text_color=theme.pair("muted"),
        )
        self.hint.grid(row=2, column=0, sticky="ew", padx=18, pady=(4, 14))
        self.rows: dict[str, _UserRow] = {}
        self._font = tkinter.font.Font(self, family=theme.FONT_FAMILY, size=-theme.SIZE_BODY)
        self._shown: tuple[str, ...] | None = None
        self._room = ""
        self._offline = False

    def show(self, room: str, online: Sequence[str], me: str, offline: bool = False) -> None:
        """List *online* (already sorted by the server) as the users of *room*;
        *offline*: this user is not connected, so nobody is known to be online."""
        online = () if offline else tuple(online)
        if room == self._room and online == self._shown and offline == self._offline:
            return
        self._room, self._shown, self._offline = room, online, offline
        if offline:
            self.header.configure(text="OFFLINE")
        else:
            font = self._header_font
            self.header.configure(
                text=elide(
                    f"ONLINE IN {room.upper()}",
                    lambda t: font.measure(t) <= HEADER_WIDTH,
                    suffix=f" \u2014 {len(online)}",
                )
            )
        for nick in list(self.rows):
            if nick not in online:
                self.rows.pop(nick).frame.destroy()
        for i, nick in enumerate(online):
            row = self.rows.get(nick)
            if row is None:
                row = self.rows[nick] = _UserRow(
                    self.scroll, nick, me=nick.lower() == me.lower(), font=self._font
                )
                for widget in (row.frame, row.label, row.avatar):
                    widget.bind("<Double-Button-1>", lambda _e, n=nick: self._on_open(n))
            row.frame.grid(row=i, column=0, sticky="ew", pady=1)

    def set_roles(self, roles: Mapping[str, Role]) -> None:
        """Mark the listed users who hold a role here: fold(nick) -> operator, owner or moderator."""
        from .moderation import ROLE_MARKS

        if roles == getattr(self, "_roles", None) and not self._rows_changed():
            return
        self._roles = dict(roles)
        self._marked = tuple(self.rows)
        for nick, row in self.rows.items():
            role = roles.get(nick.lower())
            row.set_mark(ROLE_MARKS[role] if role is not None else "")

    def _rows_changed(self) -> bool:
        return tuple(self.rows) != getattr(self, "_marked", ())

    def role_of(self, nick: str) -> str | None:
        """The role mark shown beside *nick* (tests), or None."""
        row = self.rows.get(nick)
        if row is None or not row.mark:
            return None
        return row.mark.split(" ", 1)[1]  # "\u2605 owner" -> "owner"

    def nicks(self) -> tuple[str, ...]:
        """The nicks listed, in order."""
        return self._shown or ()
