"""The terminal client's moderation: running the moderation commands, describing the events.

The commands themselves (/topic, /private, /public, /invite, /kick, /ban,
/unban, /mute, /unmute, /op, /deop, /ids, /delete, /edit, /announce,
/disconnect, /lock, /unlock) are parsed by client/commands.py, like every
other slash command of both clients; this module performs the parsed ones
for a terminal session (a moderation request acts on the current room unless
a #room came first) and words the moderation events as status lines (issue 11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .commands import Client, Moderate, ToggleIds, help_text, parse_duration
from .events import MessageDeleted, MessageEdited, ModerationDone, NoticeReceived, RoomInfoChanged

if TYPE_CHECKING:
    from .connection import ChatClient

__all__ = ["HELP", "ModerationCommands", "describe", "parse_duration"]

#: The moderation part of the terminal's /help.
HELP = (
    "Moderation (owners, moderators and operators; in the current room unless a #ROOM "
    "comes first):\n" + help_text(Client.TERMINAL, "moderation")
)


class ModerationCommands:
    """Performs the moderation commands of one terminal session."""

    def __init__(self, client: ChatClient, room: Callable[[], str], printer: Any) -> None:
        """*room* gives the current room; *printer* has err(text) and a `show_ids` flag
        (cli._Printer)."""
        self.client = client
        self._room = room
        self._printer = printer

    def run(self, command: Moderate | ToggleIds) -> None:
        """Send the moderation request (ModerationDone or ErrorReply answers it), or toggle /ids."""
        if isinstance(command, ToggleIds):
            self._printer.show_ids = not self._printer.show_ids
            self._printer.err(f"message ids {'shown' if self._printer.show_ids else 'hidden'}")
            return
        room = (command.room or self._room()) if command.needs_room else None
        self.client.moderate(
            command.action,
            room=room,
            nick=command.nick,
            message_id=command.message_id,
            text=command.text,
            reason=command.reason,
            minutes=command.minutes,
        )


def describe(event: object) -> str | None:
    """The status line for a moderation event (stderr), or None if it is not one."""
    if isinstance(event, RoomInfoChanged):
        parts = []
        if event.owner:
            parts.append(f"owner {event.owner}")
        if event.moderators:
            parts.append(f"moderators {', '.join(event.moderators)}")
        if event.operators:
            parts.append(f"operators {', '.join(event.operators)}")
        roles = f"; {'; '.join(parts)}" if parts else ""
        private = " (private)" if event.private else ""
        topic = f"topic: {event.topic}" if event.topic else "no topic"
        return f"{event.room}{private} {topic}{roles}"
    if isinstance(event, MessageDeleted):
        by = f" by {event.by}" if event.by else ""
        return f"(message {event.id} was deleted{by})"
    if isinstance(event, MessageEdited):
        where = f"{event.room} " if event.room else ""
        return f"{where}message {event.id} edited: {event.text}"
    if isinstance(event, NoticeReceived):
        who = f" from {event.sender}" if event.sender else ""
        return f"notice{who}: {event.text}"
    if isinstance(event, ModerationDone):
        return f"ok: {event.message}"
    return None
