"""The room browser: every room on the server with
its member count, a Join (or Open) button per room, and a field to create a
new one. A small window of its own over the chat; it knows nothing of the
network (the app asks for the list and passes it in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import customtkinter as ctk

from . import theme


class RoomBrowser(ctk.CTkToplevel):
    """Lists rooms. *on_join* (room) joins or opens one; *on_refresh* asks again."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_join: Callable[[str], None],
        on_refresh: Callable[[], None],
    ) -> None:
        super().__init__(master, fg_color=theme.pair("chat_bg"))
        self.title("Rooms")
        self.geometry("420x460")
        self.minsize(360, 300)
        self._on_join = on_join
        self.transient(master)
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(1, weight=1)
        head = ctk.CTkFrame(self, fg_color="transparent")
        head.grid(row=0, column=0, sticky="ew", padx=16, pady=(14, 6))
        head.grid_columnconfigure(0, weight=1)
        ctk.CTkLabel(
            head,
            text="Rooms on this server",
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_TITLE, "bold"),
            text_color=theme.pair("text"),
        ).grid(row=0, column=0, sticky="w")
        ctk.CTkButton(
            head,
            text="Refresh",
            width=72,
            height=28,
            corner_radius=8,
            fg_color=theme.pair("side_bg"),
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("text"),
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            command=on_refresh,
        ).grid(row=0, column=1)
        self.list = ctk.CTkScrollableFrame(self, fg_color=theme.pair("side_bg"), corner_radius=10)
        self.list.grid(row=1, column=0, sticky="nsew", padx=16, pady=6)
        self.list.grid_columnconfigure(0, weight=1)
        self.status = ctk.CTkLabel(
            self.list,
            text="Loading\u2026",
            anchor="w",
            text_color=theme.pair("muted"),
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
        )
        self.status.grid(row=0, column=0, sticky="w", padx=10, pady=8)
        new = ctk.CTkFrame(self, fg_color="transparent")
        new.grid(row=2, column=0, sticky="ew", padx=16, pady=(6, 16))
        new.grid_columnconfigure(0, weight=1)
        self.new_entry = ctk.CTkEntry(
            new,
            height=32,
            placeholder_text="#new-room",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
        )
        self.new_entry.grid(row=0, column=0, sticky="ew", padx=(0, 8))
        self.new_entry.bind("<Return>", lambda _e: self._create())
        ctk.CTkButton(
            new,
            text="Create and join",
            width=120,
            height=32,
            corner_radius=8,
            fg_color=theme.pair("accent"),
            hover_color=theme.pair("accent_hover"),
            text_color="#ffffff",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
            command=self._create,
        ).grid(row=0, column=1)
        self.buttons: dict[str, ctk.CTkButton] = {}
        self._rows: list[ctk.CTkFrame] = []
        self.rooms: tuple[tuple[str, int, bool], ...] = ()
        self.bind("<Escape>", lambda _e: self.destroy())

    def show(self, rooms: Sequence[tuple[str, int, bool]]) -> None:
        """List *rooms*: (name, member count, whether the user is a member)."""
        for row in self._rows:
            row.destroy()
        self._rows, self.buttons = [], {}
        self.rooms = tuple(rooms)
        if not rooms:
            self.status.configure(text="No rooms yet: create one below.")
            self.status.grid()
            return
        self.status.grid_remove()
        ordered = sorted(rooms, key=lambda r: (-r[1], r[0].lower()))
        for i, (name, members, joined) in enumerate(ordered, start=1):
            row = ctk.CTkFrame(self.list, fg_color="transparent")
            row.grid(row=i, column=0, sticky="ew", padx=4, pady=2)
            row.grid_columnconfigure(0, weight=1)
            ctk.CTkLabel(
                row,
                text=name,
                anchor="w",
                font=(theme.FONT_FAMILY, theme.SIZE_BODY, "bold"),
                text_color=theme.pair("text"),
            ).grid(row=0, column=0, sticky="w", padx=(8, 0))
            count = f"{members} member" + ("" if members == 1 else "s")
            ctk.CTkLabel(
                row,
                text=count,
                anchor="e",
                font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
                text_color=theme.pair("muted"),
            ).grid(row=0, column=1, padx=8)
            button = ctk.CTkButton(
                row,
                text="Open" if joined else "Join",
                width=64,
                height=26,
                corner_radius=7,
                fg_color=theme.pair("side_bg") if joined else theme.pair("accent"),
                hover_color=theme.pair("hover_bg") if joined else theme.pair("accent_hover"),
                text_color=theme.pair("text") if joined else "#ffffff",
                font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
                command=lambda n=name: self._join(n),
            )
            button.grid(row=0, column=2, padx=(0, 6))
            self.buttons[name] = button
            self._rows.append(row)

    def _join(self, room: str) -> None:
        self._on_join(room)
        self.destroy()

    def _create(self) -> None:
        name = self.new_entry.get().strip()
        if name:
            self._join(name if name.startswith("#") else f"#{name}")
