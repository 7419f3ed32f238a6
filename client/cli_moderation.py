# client/cli_moderation.py: the terminal client's moderation commands and how it
# shows moderation events (issue 11).
#
# Commands act on the current room unless their first word is a #room:
#   /topic [TEXT]  /private  /public  /invite NICK  /kick NICK [REASON]
#   /ban NICK [DURATION] [REASON]  /unban NICK  /mute NICK [DURATION] [REASON]
#   /unmute NICK  /op NICK  /deop NICK  /delete ID [REASON]  /edit ID TEXT
#   /announce TEXT  /disconnect NICK [REASON]  /lock NICK [REASON]  /unlock NICK
#   /ids  (message ids in front of messages, for /delete and /edit)
# DURATION is minutes, or a number with m, h or d (30m, 2h, 7d).

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from parley_chat.protocol.vocab import Action

from .events import MessageDeleted, MessageEdited, ModerationDone, NoticeReceived, RoomInfoChanged

if TYPE_CHECKING:
    from .connection import ChatClient

HELP = """\
Moderation (owners, moderators and operators; in the current room unless a #ROOM comes first):
  /topic [TEXT]       set (or clear) the room's topic
  /private, /public   make the room invite-only, or open again (owner)
  /invite NICK        invite someone to a private room
  /kick NICK [WHY]    put someone out of the room
  /ban NICK [DUR] [WHY]   ban from the room (DUR: minutes, or 30m, 2h, 7d; none: until /unban)
  /unban NICK, /mute NICK [DUR] [WHY], /unmute NICK
  /op NICK, /deop NICK    grant or take back the moderator role (owner)
  /ids                show message ids (for /delete and /edit)
  /delete ID [WHY]    delete a message (your own, or any in a room you moderate)
  /edit ID TEXT       replace the text of your own message
  /announce TEXT, /disconnect NICK [WHY], /lock NICK [WHY], /unlock NICK   (operators)"""

_DURATION = re.compile(r"^(\d{1,7})([mhd]?)$")
_UNIT = {"": 1, "m": 1, "h": 60, "d": 1440}


def parse_duration(word: str) -> int | None:
    """Minutes for "30", "30m", "2h" or "7d"; None if *word* is not a duration."""
    m = _DURATION.match(word.lower())
    return int(m.group(1)) * _UNIT[m.group(2)] if m else None


class ModerationCommands:
    """The moderation slash commands of one terminal session."""

    def __init__(self, client: ChatClient, room: Callable[[], str], printer: Any) -> None:
        """*printer* has err(text) and a `show_ids` flag (cli._Printer)."""
        self.client = client
        self._room = room
        self._printer = printer
        self._err: Callable[[str], None] = printer.err

    def commands(self) -> dict[str, Callable[[str], bool]]:
        """Command name -> handler (returns True: keep going)."""
        table: dict[str, Callable[[str], bool]] = {
            Action.TOPIC: self._topic,
            Action.PRIVATE: partial(self._room_only, Action.PRIVATE),
            Action.PUBLIC: partial(self._room_only, Action.PUBLIC),
            Action.DELETE: self._delete,
            Action.EDIT: self._edit,
            Action.ANNOUNCE: self._announce,
            "ids": self._ids,
        }
        for action in (
            Action.INVITE,
            Action.UNBAN,
            Action.UNMUTE,
            Action.OP,
            Action.DEOP,
            Action.UNLOCK,
        ):
            table[action] = partial(self._on_nick, action, reason=False)
        for action in (Action.KICK, Action.DISCONNECT, Action.LOCK):
            table[action] = partial(self._on_nick, action, reason=True)
        for action in (Action.BAN, Action.MUTE):
            table[action] = partial(self._on_nick, action, timed=True)
        return table

    def _split_room(self, arg: str) -> tuple[str, str]:
        first, _, rest = arg.partition(" ")
        if first.startswith("#"):
            return first, rest.strip()
        return self._room(), arg

    def _topic(self, arg: str) -> bool:
        room, text = self._split_room(arg)
        self.client.moderate(Action.TOPIC, room=room, text=text)
        return True

    def _room_only(self, action: str, arg: str) -> bool:
        room, _ = self._split_room(arg)
        self.client.moderate(action, room=room)
        return True

    def _on_nick(self, action: str, arg: str, *, reason: bool = True, timed: bool = False) -> bool:
        server_wide = action in (Action.DISCONNECT, Action.LOCK, Action.UNLOCK)
        room, rest = (None, arg) if server_wide else self._split_room(arg)
        nick, _, tail = rest.partition(" ")
        if not nick:
            extra = " [DURATION]" if timed else ""
            where = "" if server_wide else "[#ROOM] "
            self._err(f"usage: /{action} {where}NICK{extra}{' [REASON]' if reason else ''}")
            return True
        tail = tail.strip()
        minutes = None
        if timed and tail:
            word, _, after = tail.partition(" ")
            minutes = parse_duration(word)
            if minutes is not None:
                tail = after.strip()
        self.client.moderate(
            action,
            room=room,
            nick=nick,
            reason=(tail or None) if (reason or timed) else None,
            minutes=minutes or None,
        )
        return True

    def _message_id(self, word: str, usage: str) -> int | None:
        try:
            value = int(word)
        except ValueError:
            value = 0
        if value < 1:
            self._err(f"usage: {usage} (ID is a message number: /ids shows them)")
            return None
        return value

    def _delete(self, arg: str) -> bool:
        word, _, reason = arg.partition(" ")
        message_id = self._message_id(word, "/delete ID [REASON]")
        if message_id is not None:
            self.client.delete_message(message_id, reason.strip() or None)
        return True

    def _edit(self, arg: str) -> bool:
        word, _, text = arg.partition(" ")
        message_id = self._message_id(word, "/edit ID TEXT")
        if message_id is None:
            return True
        if not text.strip():
            self._err("usage: /edit ID TEXT")
            return True
        self.client.edit_message(message_id, text)
        return True

    def _announce(self, arg: str) -> bool:
        if not arg.strip():
            self._err("usage: /announce TEXT")
            return True
        self.client.moderate(Action.ANNOUNCE, text=arg)
        return True

    def _ids(self, arg: str) -> bool:
        self._printer.show_ids = not self._printer.show_ids
        self._err(f"message ids {'shown' if self._printer.show_ids else 'hidden'}")
        return True


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
