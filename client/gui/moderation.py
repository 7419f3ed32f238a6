"""Moderation in the desktop client (issue 11).

- The slash commands (/topic, /invite, /kick, /ban, /unban, /mute, /unmute,
  /op, /deop, /private, /public, /delete, /edit, /announce, /disconnect,
  /lock, /unlock): parse() turns one into a ModerationCommand (pure, like
  commands.py, which calls it for the names it does not know).
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

from parley_chat.protocol import fold, valid_nick, valid_room
from parley_chat.protocol.vocab import Action, NoticeKind, Role

from ..cli_moderation import parse_duration
from ..events import MessageDeleted, MessageEdited, ModerationDone, NoticeReceived, RoomInfoChanged

if TYPE_CHECKING:
    from .app import App


@dataclass(frozen=True, slots=True)
class ModerationCommand:
    """A moderation request typed in the composer: `action` and the `moderate` fields.

    `room` None means the open room (the app fills it in)."""

    action: Action
    room: str | None = None
    nick: str | None = None
    message_id: int | None = None
    text: str | None = None
    reason: str | None = None
    minutes: int | None = None
    needs_room: bool = True


#: Usage and description, for /help (after commands.COMMANDS).
HELP: tuple[tuple[str, str], ...] = (
    ("/topic [text]", "set (or clear) the open room's topic"),
    ("/private, /public", "make the room invite-only, or open again (owner)"),
    ("/invite nick", "invite someone to the open (private) room"),
    ("/kick nick [why]", "put someone out of the room"),
    ("/ban nick [30m|2h|7d] [why]", "ban from the room (no duration: until /unban)"),
    ("/unban nick", "lift a ban"),
    ("/mute nick [duration] [why]", "stop someone posting in the room"),
    ("/unmute nick", "let them post again"),
    ("/op nick, /deop nick", "grant or take back the moderator role (owner)"),
    ("/delete id, /edit id text", "or right-click a message"),
    ("/announce text", "a notice to everyone online (operators)"),
    ("/disconnect, /lock, /unlock nick", "server-wide (operators)"),
)

_ON_NICK = {
    Action.INVITE,
    Action.KICK,
    Action.BAN,
    Action.UNBAN,
    Action.MUTE,
    Action.UNMUTE,
    Action.OP,
    Action.DEOP,
}
_SERVER_NICK = {Action.DISCONNECT, Action.LOCK, Action.UNLOCK}
_NO_ROOM = {Action.DELETE, Action.EDIT, Action.ANNOUNCE, *_SERVER_NICK}
_TIMED = (Action.BAN, Action.MUTE)
#: Every moderation action is a command of the same name.
NAMES = frozenset(Action)


class Invalid(Exception):
    """A moderation command that could not be understood (the message says how to use it)."""


def parse(name: str, rest: str) -> ModerationCommand | None:
    """The request of command /*name* with arguments *rest*; None if *name* is not a
    moderation command. Raises Invalid with its usage when the arguments are wrong."""
    if name not in NAMES:
        return None
    action = Action(name)
    room = None
    first, _, after = rest.partition(" ")
    if first.startswith("#") and action not in _NO_ROOM:
        if not valid_room(first):
            raise Invalid(f"{first!r} is not a room name")
        room, rest = first, after.strip()
    if action is Action.TOPIC:
        return ModerationCommand(action, room=room, text=rest)
    if action in (Action.PRIVATE, Action.PUBLIC):
        if rest:
            raise Invalid(f"/{name} takes no arguments but a #room")
        return ModerationCommand(action, room=room)
    if action in (Action.DELETE, Action.EDIT):
        word, _, text = rest.partition(" ")
        usage = "/delete id [reason]" if action is Action.DELETE else "/edit id text"
        if not word.isdigit() or int(word) < 1 or (action is Action.EDIT and not text.strip()):
            raise Invalid(f"usage: {usage} (or right-click the message)")
        if action is Action.DELETE:
            return ModerationCommand(
                action, message_id=int(word), reason=text.strip() or None, needs_room=False
            )
        return ModerationCommand(action, message_id=int(word), text=text, needs_room=False)
    if action is Action.ANNOUNCE:
        if not rest.strip():
            raise Invalid("usage: /announce text")
        return ModerationCommand(action, text=rest.strip(), needs_room=False)
    nick, _, tail = rest.partition(" ")
    if not nick or not valid_nick(nick):
        extra = " [duration]" if action in _TIMED else ""
        raise Invalid(
            f"usage: /{name} nick{extra}" + (" [reason]" if action is not Action.UNLOCK else "")
        )
    tail = tail.strip()
    minutes = None
    if action in _TIMED and tail:
        word, _, after = tail.partition(" ")
        minutes = parse_duration(word)
        if minutes is not None:
            tail = after.strip()
    return ModerationCommand(
        action,
        room=room,
        nick=nick,
        reason=tail or None,
        minutes=minutes or None,
        needs_room=action not in _SERVER_NICK,
    )


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
