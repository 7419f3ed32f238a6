"""The right column: who is online in the open room.
A double-click on a name opens a private conversation with that user.

Rows are kept per nick and only added, removed or re-ordered when the list
changes, so presence traffic in a busy room stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import customtkinter as ctk

from parley_chat.protocol.vocab import Role

from . import theme
from .sidebar import make_avatar


class _UserRow:
    def __init__(self, master: ctk.CTkBaseClass, nick: str, me: bool) -> None:
        self.frame = ctk.CTkFrame(master, fg_color="transparent", corner_radius=6, height=34)
        self.frame.grid_columnconfigure(1, weight=1)
        self.avatar = make_avatar(self.frame, nick, 26)
        self.avatar.grid(row=0, column=0, padx=(8, 10), pady=3)
        self.label = ctk.CTkLabel(
            self.frame,
            text=f"{nick}  (you)" if me else nick,
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            text_color=theme.pair("text"),
        )
        self.label.grid(row=0, column=1, sticky="ew")
        self.dot = ctk.CTkFrame(
            self.frame, width=8, height=8, corner_radius=4, fg_color=theme.pair("system")
        )
        self.dot.grid(row=0, column=2, padx=(4, 10))


class UserList(ctk.CTkFrame):
    """Online users of one room. *on_open* (nick) is called on a double-click."""

    def __init__(self, master: ctk.CTkBaseClass, *, on_open: Callable[[str], None]) -> None:
        super().__init__(master, corner_radius=0, width=220, fg_color=theme.pair("side_bg"))
        self._on_open = on_open
        self.grid_propagate(False)
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(1, weight=1)
        self.header = ctk.CTkLabel(
            self,
            text="ONLINE",
            anchor="w",
            font=(theme.FONT_FAMILY, 11, "bold"),
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
            self.header.configure(text=f"ONLINE IN {room.upper()} \u2014 {len(online)}")
        for nick in list(self.rows):
            if nick not in online:
                self.rows.pop(nick).frame.destroy()
        for i, nick in enumerate(online):
            row = self.rows.get(nick)
            if row is None:
                row = self.rows[nick] = _UserRow(self.scroll, nick, me=nick.lower() == me.lower())
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
            base = row.label.cget("text").split("  \u2605")[0].split("  \u2606")[0]
            role = roles.get(nick.lower())
            mark = ROLE_MARKS[role] if role is not None else ""
            text = f"{base}  {mark}" if mark else base
            if row.label.cget("text") != text:
                row.label.configure(text=text)

    def _rows_changed(self) -> bool:
        return tuple(self.rows) != getattr(self, "_marked", ())

    def role_of(self, nick: str) -> str | None:
        """The role mark shown beside *nick* (tests), or None."""
        row = self.rows.get(nick)
        if row is None:
            return None
        text = row.label.cget("text")
        for mark in ("\u2605", "\u2606"):
            if mark in text:
                return text.split(mark, 1)[1].strip()
        return None

    def nicks(self) -> tuple[str, ...]:
        """The nicks listed, in order."""
        return self._shown or ()
