"""Moderation in the desktop client (issue 11).

- The slash commands are parsed by client/commands.py (the table both
  clients share); the app performs them.
- RoomRoles: each room's topic and roles from `roominfo`, for the header (the
  topic under the room's name) and the user list (a role beside each name).
- The message context menu: a right-click on a message offers Edit (your
  own) and Delete (your own, or any in a room you moderate).
- on_event(): what the moderation events do to the model and the view.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from parley_chat.protocol import fold
from parley_chat.protocol.vocab import Action, NoticeKind, Role

from ..events import MessageDeleted, MessageEdited, ModerationDone, NoticeReceived, RoomInfoChanged

if TYPE_CHECKING:
    from .app import App


@dataclass
class RoomRoles:
    """Each room's latest `roominfo`, by fold(room)."""

    rooms: dict[str, RoomInfoChanged] = field(default_factory=dict)

    def topic(self, room: str) -> str | None:
        """The room's topic, or None."""
        info = self.rooms.get(fold(room))
        return info.topic if info else None

    def roles(self, room: str) -> dict[str, Role]:
        """fold(nick) -> role for the room's owner, moderators and operators."""
        info = self.rooms.get(fold(room))
        if info is None:
            return {}
        out = {fold(n): Role.MODERATOR for n in info.moderators}
        if info.owner:
            out[fold(info.owner)] = Role.OWNER
        out.update({fold(n): Role.OPERATOR for n in info.operators})
        return out

    def may_moderate(self, room: str, me: str) -> bool:
        """Whether *me* holds a role in *room* (owner, moderator, operator)."""
        return fold(me) in self.roles(room)


#: What the user list shows beside a name with a role.
ROLE_MARKS = {
    Role.OPERATOR: "\u2605 operator",
    Role.OWNER: "\u2605 owner",
    Role.MODERATOR: "\u2606 mod",
}


def on_event(app: App, event: object) -> bool:
    """Apply one moderation event to *app*; False if *event* is not one."""
    if isinstance(event, RoomInfoChanged):
        app.room_roles.rooms[fold(event.room)] = event
        app.mark_moderation_dirty()
        return True
    if isinstance(event, MessageDeleted):
        if app.model.remove_message(event.id):
            app.mark_view_dirty()
        return True
    if isinstance(event, MessageEdited):
        if app.model.edit_message(event.id, event.text):
            app.mark_view_dirty()
        return True
    if isinstance(event, NoticeReceived):
        who = f"{event.sender}: " if event.sender and event.kind == NoticeKind.ANNOUNCE else ""
        app.note(f"{who}{event.text}", "notice")
        return True
    if isinstance(event, ModerationDone):
        app.note(event.message, "notice")
        return True
    return False


def message_menu(
    app: App,
    message_id: int,
    own: bool,
    room: str | None,
    x: int,
    y: int,
    ask_text: Callable[[str], str | None] | None = None,
) -> tk.Menu | None:
    """Pop up the context menu of message *message_id* at (x, y); None when it offers nothing.

    Edit is for your own messages; Delete for your own, or any in a room where
    you hold a role (the server decides in the end, and says why if not)."""
    may_delete = own or (room is not None and app.room_roles.may_moderate(room, app.model.me))
    if not (own or may_delete):
        return None
    menu = tk.Menu(app, tearoff=False)
    if own:
        menu.add_command(
            label="Edit message\u2026", command=lambda: _edit(app, message_id, ask_text)
        )
    if may_delete:
        menu.add_command(
            label="Delete message",
            command=lambda: app.moderate_request(Action.DELETE, message_id=message_id),
        )
    try:
        menu.tk_popup(x, y)
    finally:
        menu.grab_release()
    return menu


def _edit(app: App, message_id: int, ask_text: Callable[[str], str | None] | None) -> None:
    current = app.model.message_text(message_id) or ""
    ask = ask_text or (lambda old: _ask(app, old))
    text = ask(current)
    if text is not None and text.strip() and text != current:
        app.moderate_request(Action.EDIT, message_id=message_id, text=text)


def _ask(app: Any, old: str) -> str | None:
    import customtkinter as ctk

    dialog = ctk.CTkInputDialog(text=f"Edit your message:\n{old[:200]}", title="Edit message")
    return dialog.get_input()
