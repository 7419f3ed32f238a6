"""The frames of moderation (issue 11): roles, room
settings, kick/ban/mute, deleting and editing messages, operator actions.

Kept apart from frames.py (which it extends) so the moderation contract reads
in one place; the frames follow frames.py's rules (self-validating, bounded,
unknown keys dropped) and are registered in its CLIENT_FRAMES and
SERVER_FRAMES tables when this module is imported (protocol/__init__ does).

Client -> server: one `moderate` frame whose `action` names what to do; the
fields each action needs are checked here (ACTION_FIELDS), so the server's
handler never sees an incomplete request.

Server -> client: `moderated` (a request succeeded), `roominfo` (a room's
topic, privacy and roles), `deleted` and `edited` (a message changed),
`notice` (words for one user or everyone: an operator's broadcast, an
invitation, why they were kicked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import ErrorCode
from .frames import (
    _CLIENT_ID,
    _ID,
    _NICK,
    _ROOM,
    _TAG,
    _TS,
    CLIENT_FRAMES,
    SERVER_FRAMES,
    Frame,
    _check_nick,
    _check_room,
    _check_ts,
    _fail,
    _word,
    _words,
    check_text,
)
from .limits import (
    MAX_MODERATED_CHARS,
    MAX_REASON_CHARS,
    MAX_ROLES_LISTED,
    MAX_SANCTION_MINUTES,
    MAX_TEXT_CHARS,
    MAX_TOPIC_CHARS,
    fold,
    has_forbidden_control,
)
from .vocab import Action, NoticeKind, Role

#: What each action needs: "room", "nick", "id" (a message id), "text".
#: `reason` is optional for all; `minutes` only for ban and mute.
ACTION_FIELDS: dict[Action, frozenset[str]] = {
    # room settings (owner, moderator or operator; privacy: owner or operator)
    Action.TOPIC: frozenset({"room"}),  # no text: the topic is cleared
    Action.PRIVATE: frozenset({"room"}),
    Action.PUBLIC: frozenset({"room"}),
    Action.INVITE: frozenset({"room", "nick"}),
    # actions on a member of a room
    Action.KICK: frozenset({"room", "nick"}),
    Action.BAN: frozenset({"room", "nick"}),
    Action.UNBAN: frozenset({"room", "nick"}),
    Action.MUTE: frozenset({"room", "nick"}),
    Action.UNMUTE: frozenset({"room", "nick"}),
    # room moderators (owner or operator)
    Action.OP: frozenset({"room", "nick"}),
    Action.DEOP: frozenset({"room", "nick"}),
    # messages (the author, or a moderator of the message's room)
    Action.DELETE: frozenset({"id"}),
    Action.EDIT: frozenset({"id", "text"}),
    # server-wide (operators only)
    Action.DISCONNECT: frozenset({"nick"}),
    Action.LOCK: frozenset({"nick"}),
    Action.UNLOCK: frozenset({"nick"}),
    Action.ANNOUNCE: frozenset({"text"}),
}
_NOT_AN_ACTION = f"moderate 'action' is one of {', '.join(_words(Action))}"


def action_named(name: str) -> Action:
    """The Action *name* spells (a command's word); LocalProtocolError if there is none."""
    try:
        return Action(name)
    except ValueError:
        _fail(ErrorCode.BAD_FRAME, _NOT_AN_ACTION)


#: Actions that take `minutes` (a timed sanction; absent: until lifted).
TIMED_ACTIONS = frozenset({Action.BAN, Action.MUTE})


@dataclass(frozen=True, slots=True)
class Moderate(Frame):
    """A moderation request: {action, room?, nick?, id?, text?, reason?, minutes?, ref?}.

    `ref` (client-chosen) comes back in the `moderated` answer or the `error`.
    `id` is a message id (delete, edit); `text` a topic, an edit's new text or
    an announcement; `minutes` makes a ban or mute timed.
    """

    TYPE: ClassVar[str] = "moderate"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "action": (1, 16),
        "room": _ROOM,
        "nick": _NICK,
        "text": (0, MAX_TEXT_CHARS),
        "reason": (0, MAX_REASON_CHARS),
        "ref": _CLIENT_ID,
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "id": (1, _ID[1]),
        "minutes": (1, MAX_SANCTION_MINUTES),
    }
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"text"})
    action: Action
    room: str | None = None
    nick: str | None = None
    id: int | None = None
    text: str | None = None
    reason: str | None = None
    minutes: int | None = None
    ref: str | None = None

    def check(self) -> None:
        _word(self, "action", Action, _NOT_AN_ACTION)
        needs = ACTION_FIELDS[self.action]
        for name in ("room", "nick", "id", "text"):
            given = getattr(self, name) is not None
            if name in needs and not given and not (self.action is Action.TOPIC and name == "text"):
                _fail(ErrorCode.BAD_FRAME, f"moderate {self.action!r} needs {name!r}")
        if self.room is not None:
            _check_room(self.room)
        if self.nick is not None:
            _check_nick(self.nick)
        if self.minutes is not None and self.action not in TIMED_ACTIONS:
            _fail(ErrorCode.BAD_FRAME, "only ban and mute take 'minutes'")
        if self.reason is not None and len(self.reason) > MAX_REASON_CHARS:
            # Typed by a person: said in words, not as the generic "'reason' of 'moderate'".
            _fail(ErrorCode.BAD_FRAME, f"a reason is at most {MAX_REASON_CHARS} characters")
        if self.text is not None:
            if self.action is Action.TOPIC:
                if len(self.text) > MAX_TOPIC_CHARS:
                    _fail(ErrorCode.BAD_TEXT, f"a topic is at most {MAX_TOPIC_CHARS} characters")
                if "\n" in self.text or has_forbidden_control(self.text):
                    _fail(ErrorCode.BAD_TEXT, "a topic is one line without control characters")
            elif self.action in (Action.EDIT, Action.ANNOUNCE):
                check_text(self.text)


@dataclass(frozen=True, slots=True)
class Moderated(Frame):
    """A `moderate` request succeeded: {action, message, ref?}. `message` says what was done.

    `action` echoes the request's (an Action); it stays a plain string here so
    that a client reading a newer server's answer never refuses it.
    """

    TYPE: ClassVar[str] = "moderated"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "action": (1, 16),
        "message": (0, MAX_MODERATED_CHARS),
        "ref": _CLIENT_ID,
    }
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"message"})
    action: str
    message: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class RoomInfo(Frame):
    """A room's settings and roles: {room, topic?, private, owner?, moderators, operators, tag?}.

    Sent at login for each of the user's rooms, on join, to the members when
    any of it changes, and after the `presence` list in answer to `who`.
    `operators` are the server operators among the room's members.
    """

    TYPE: ClassVar[str] = "roominfo"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "room": _ROOM,
        "topic": (0, MAX_TOPIC_CHARS),
        "owner": _NICK,
        "moderators": _NICK,
        "operators": _NICK,
        "tag": _TAG,
    }
    ITEMS: ClassVar[dict[str, int]] = {
        "moderators": MAX_ROLES_LISTED,
        "operators": MAX_ROLES_LISTED,
    }
    room: str
    private: bool = False
    topic: str | None = None
    owner: str | None = None
    moderators: list[str] | None = None
    operators: list[str] | None = None
    tag: str | None = None

    def check(self) -> None:
        _check_room(self.room)
        for nick in (self.owner, *(self.moderators or ()), *(self.operators or ())):
            if nick is not None:
                _check_nick(nick)

    def role_of(self, nick: str) -> Role | None:
        """The strongest role *nick* holds in this room (see Role), or None."""
        me = fold(nick)
        if any(fold(n) == me for n in self.operators or ()):
            return Role.OPERATOR
        if self.owner is not None and fold(self.owner) == me:
            return Role.OWNER
        if any(fold(n) == me for n in self.moderators or ()):
            return Role.MODERATOR
        return None


@dataclass(frozen=True, slots=True)
class Deleted(Frame):
    """A message was deleted: {id, room?, by?}. Clients remove it wherever it is shown."""

    TYPE: ClassVar[str] = "deleted"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"room": _ROOM, "by": _NICK}
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"id": (1, _ID[1])}
    id: int
    room: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Edited(Frame):
    """A message was edited by its author: {id, text, edited, room?}. `edited` is when (UTC).

    Messages in replay, history and search carry the same `edited` time.
    """

    TYPE: ClassVar[str] = "edited"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "text": (0, MAX_TEXT_CHARS),
        "edited": _TS,
        "room": _ROOM,
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"id": (1, _ID[1])}
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"text"})
    id: int
    text: str
    edited: str
    room: str | None = None

    def check(self) -> None:
        _check_ts(self.edited)


@dataclass(frozen=True, slots=True)
class Notice(Frame):
    """Words from the server or an operator: {text, ts, from?, room?, kind}.

    `kind` is one of NoticeKind: "announce" (an operator's broadcast to everyone
    online), "invite" (the user was invited to `room`), "kick" or "ban" (the user
    was put out of `room`; `text` says why), "unban", "mute" or "unmute" (in
    `room`). It stays a plain string on the wire side, so that a client shows a
    newer server's notice of a kind it does not know instead of refusing it.
    """

    TYPE: ClassVar[str] = "notice"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"from_": "from"}
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "text": (0, MAX_TEXT_CHARS),
        "ts": _TS,
        "from_": _NICK,
        "room": _ROOM,
        "kind": (1, 16),
    }
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"text"})
    text: str
    ts: str
    kind: str = NoticeKind.ANNOUNCE
    from_: str | None = None
    room: str | None = None

    def check(self) -> None:
        _check_ts(self.ts)


for _client in (Moderate,):
    CLIENT_FRAMES[_client.TYPE] = _client
for _server in (Moderated, RoomInfo, Deleted, Edited, Notice):
    SERVER_FRAMES[_server.TYPE] = _server
