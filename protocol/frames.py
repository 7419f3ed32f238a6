# protocol/frames.py: what can be said on the wire, as one frozen dataclass per
# frame type.
#
# Rules this module keeps:
# 1. A frame validates itself when it is built, so no handler ever sees a
#    half-valid frame. Building an invalid frame raises LocalProtocolError;
#    parse_*_frame() turns that into RemoteProtocolError, because there the
#    peer is at fault.
# 2. Client->server and server->client frames are parsed through separate
#    tables: a server never accepts a `welcome`, a client never a `send`.
# 3. Unknown extra keys are ignored (a newer peer may add optional fields);
#    missing or mistyped known keys are errors.
# 4. Python names that cannot be wire names (`with`, `from`) are mapped in WIRE_NAMES.

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .limits import (
    MAX_CLIENT_ID_CHARS,
    MAX_PAGE,
    MAX_TEXT_CHARS,
    has_forbidden_control,
    valid_nick,
    valid_room,
)

MESSAGE_KINDS = ("public", "private", "system")
BATCH_KINDS = ("replay", "history", "search")


def _fail(code: ErrorCode, message: str) -> typing.NoReturn:
    raise LocalProtocolError(code, message)


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of all frames. `TYPE` is the wire `type`; subclasses add `check()` rules."""

    TYPE: ClassVar[str] = ""
    #: Python attribute name -> wire key, for keys that are Python keywords.
    WIRE_NAMES: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        _check_types(self)
        self.check()

    def check(self) -> None:
        """Frame-specific rules beyond field types. Raise LocalProtocolError."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for this frame; None-valued optional fields are left out."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[self.WIRE_NAMES.get(f.name, f.name)] = value
        return out


# --- client -> server -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Frame):
    """Log in: {version, nick, password | token, register?, last_seen?, client?}.

    `register: true` creates the account when the nick is free (and registration
    is open), otherwise logs in. `token` is a resume token from an earlier
    `welcome`. `last_seen` is the id of the last message the client showed; the
    server replays what came after it.
    """

    TYPE: ClassVar[str] = "hello"
    version: int
    nick: str
    password: str | None = None
    token: str | None = None
    register: bool = False
    last_seen: int | None = None
    client: str | None = None

    def check(self) -> None:
        if not valid_nick(self.nick):
            _fail(ErrorCode.BAD_NICK, "a nick is 1 to 24 letters, digits, '_' or '-'")
        if (self.password is None) == (self.token is None):
            _fail(ErrorCode.BAD_FRAME, "hello needs exactly one of 'password' or 'token'")
        if self.password is not None and not 1 <= len(self.password) <= 1024:
            _fail(ErrorCode.BAD_FRAME, "a password is 1 to 1024 characters")
        if self.last_seen is not None and self.last_seen < 0:
            _fail(ErrorCode.BAD_FRAME, "'last_seen' must not be negative")


def _check_text(text: str) -> None:
    if not text.strip():
        _fail(ErrorCode.BAD_TEXT, "message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        _fail(ErrorCode.TEXT_TOO_LONG, f"message text is over {MAX_TEXT_CHARS} characters")
    if has_forbidden_control(text):
        _fail(
            ErrorCode.BAD_TEXT,
            "message text contains control characters (only newline and tab are allowed)",
        )


def _check_target(room: str | None, to: str | None) -> None:
    if (room is None) == (to is None):
        _fail(ErrorCode.BAD_FRAME, "give exactly one of 'room' or 'to'")
    if room is not None and not valid_room(room):
        _fail(
            ErrorCode.BAD_ROOM,
            f"bad room name {room!r}: '#' then 1 to 32 letters, digits, '_' or '-'",
        )
    if to is not None and not valid_nick(to):
        _fail(ErrorCode.BAD_NICK, f"bad nick {to!r}: 1 to 24 letters, digits, '_' or '-'")


@dataclass(frozen=True, slots=True)
class Send(Frame):
    """Post a message: {id, room | to, text}. `id` is the client's, unique per user."""

    TYPE: ClassVar[str] = "send"
    id: str
    text: str
    room: str | None = None
    to: str | None = None

    def check(self) -> None:
        if not 1 <= len(self.id) <= MAX_CLIENT_ID_CHARS:
            _fail(ErrorCode.BAD_FRAME, f"'id' is 1 to {MAX_CLIENT_ID_CHARS} characters")
        _check_target(self.room, self.to)
        _check_text(self.text)


@dataclass(frozen=True, slots=True)
class _RoomFrame(Frame):
    def check(self) -> None:
        room = self.room  # type: ignore[attr-defined]
        if not valid_room(room):
            _fail(
                ErrorCode.BAD_ROOM,
                f"bad room name {room!r}: '#' then 1 to 32 letters, digits, '_' or '-'",
            )


@dataclass(frozen=True, slots=True)
class Join(_RoomFrame):
    """Join (and create, if new) a room: {room}."""

    TYPE: ClassVar[str] = "join"
    room: str


@dataclass(frozen=True, slots=True)
class Leave(_RoomFrame):
    """Leave a room: {room}. The default room cannot be left."""

    TYPE: ClassVar[str] = "leave"
    room: str


@dataclass(frozen=True, slots=True)
class Who(Frame):
    """Ask who is online in a room (default: the default room): {room?, tag?}."""

    TYPE: ClassVar[str] = "who"
    room: str | None = None
    tag: str | None = None

    def check(self) -> None:
        if self.room is not None and not valid_room(self.room):
            _fail(ErrorCode.BAD_ROOM, f"bad room name {self.room!r}")


@dataclass(frozen=True, slots=True)
class ListRooms(Frame):
    """Ask for the list of rooms with member counts: {tag?}. Answered by `rooms`."""

    TYPE: ClassVar[str] = "rooms"
    tag: str | None = None


def _check_page(before: int | None, limit: int) -> None:
    if before is not None and before < 1:
        _fail(ErrorCode.BAD_FRAME, "'before' must be a positive message id")
    if not 1 <= limit <= MAX_PAGE:
        _fail(ErrorCode.BAD_FRAME, f"'limit' is 1 to {MAX_PAGE}")


@dataclass(frozen=True, slots=True)
class History(Frame):
    """Page back: {room | with, before?, limit?, tag?}. Answered by a `history` batch."""

    TYPE: ClassVar[str] = "history"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"with_": "with"}
    room: str | None = None
    with_: str | None = None
    before: int | None = None
    limit: int = 50
    tag: str | None = None

    def check(self) -> None:
        _check_target(self.room, self.with_)
        _check_page(self.before, self.limit)


@dataclass(frozen=True, slots=True)
class Search(Frame):
    """Search visible messages: {words, before?, limit?, tag?}. Newest first, in a `search` batch."""

    TYPE: ClassVar[str] = "search"
    words: str
    before: int | None = None
    limit: int = 50
    tag: str | None = None

    def check(self) -> None:
        if not self.words.strip() or len(self.words) > 200:
            _fail(ErrorCode.BAD_FRAME, "search 'words' are 1 to 200 characters")
        _check_page(self.before, self.limit)


@dataclass(frozen=True, slots=True)
class Ping(Frame):
    """Liveness check, either direction: {token?}. Answered by `pong` with the same token."""

    TYPE: ClassVar[str] = "ping"
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Pong(Frame):
    """Answer to `ping`: {token?}."""

    TYPE: ClassVar[str] = "pong"
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Bye(Frame):
    """Graceful exit: {reason?}. The server ends the session and stores the reason."""

    TYPE: ClassVar[str] = "bye"
    reason: str | None = None


# --- server -> client -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Frame):
    """Login accepted: {version, nick, token, rooms, server, created, session, max_text}.

    `nick` is the account's spelling; `token` a fresh resume token; `created`
    says the account was just registered.
    """

    TYPE: ClassVar[str] = "welcome"
    version: int
    nick: str
    token: str
    rooms: list[str]
    server: str
    created: bool = False
    session: int | None = None
    max_text: int | None = None


@dataclass(frozen=True, slots=True)
class Message(Frame):
    """A stored message: {id, ts, kind, from?, room | to, text, ref?}.

    `id` is the database's, strictly increasing; `ts` the server's UTC time
    (ISO 8601, milliseconds, `Z`). System notices have no `from`. `ref` is the
    sender's client id, present only on copies that go to the sender's own
    connections.
    """

    TYPE: ClassVar[str] = "message"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"from_": "from"}
    id: int
    ts: str
    kind: str
    text: str
    from_: str | None = None
    room: str | None = None
    to: str | None = None
    ref: str | None = None

    def check(self) -> None:
        if self.kind not in MESSAGE_KINDS:
            _fail(ErrorCode.BAD_FRAME, f"message 'kind' is one of {MESSAGE_KINDS}")
        if (self.room is None) == (self.to is None):
            _fail(ErrorCode.BAD_FRAME, "a message has exactly one of 'room' or 'to'")


@dataclass(frozen=True, slots=True)
class Ack(Frame):
    """A `send` was committed: {ref, id, ts, duplicate?}. `duplicate` marks a resend."""

    TYPE: ClassVar[str] = "ack"
    ref: str
    id: int
    ts: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Batch(Frame):
    """Brackets many `message` frames: {state: open|close, kind, tag?, target?, gap?, more?, count?}.

    On `open` of a replay, `gap: true` says older missed messages were left out
    (page back with `history`). On `close`, `more: true` says older history exists.
    """

    TYPE: ClassVar[str] = "batch"
    state: str
    kind: str
    tag: str | None = None
    target: str | None = None
    gap: bool = False
    more: bool = False
    count: int | None = None

    def check(self) -> None:
        if self.state not in ("open", "close"):
            _fail(ErrorCode.BAD_FRAME, "batch 'state' is 'open' or 'close'")
        if self.kind not in BATCH_KINDS:
            _fail(ErrorCode.BAD_FRAME, f"batch 'kind' is one of {BATCH_KINDS}")


@dataclass(frozen=True, slots=True)
class Presence(Frame):
    """Who is online in a room: {room, online? (+ more?) | joined? | left?, tag?}.

    `joined` / `left` alone are deltas sent to a room's members; `online` is the
    full list, sent at login and in answer to `who`, paged with `more: true` on
    every page but the last.
    """

    TYPE: ClassVar[str] = "presence"
    room: str
    online: list[str] | None = None
    joined: str | None = None
    left: str | None = None
    tag: str | None = None
    #: True: the `online` list continues in the next `presence` frame (big rooms are paged).
    more: bool | None = None


@dataclass(frozen=True, slots=True)
class RoomList(Frame):
    """The rooms: {rooms: [{name, members, joined}], tag?}."""

    TYPE: ClassVar[str] = "rooms"
    rooms: list[dict[str, Any]]
    tag: str | None = None
    #: True: the list continues in the next `rooms` frame (many rooms are paged).
    more: bool | None = None


@dataclass(frozen=True, slots=True)
class Error(Frame):
    """A request failed: {code, message, ref?}. `ref` is the client id of the `send` it refers to."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    ref: str | None = None


CLIENT_FRAMES: dict[str, type[Frame]] = {
    c.TYPE: c for c in (Hello, Send, Join, Leave, Who, ListRooms, History, Search, Ping, Pong, Bye)
}
SERVER_FRAMES: dict[str, type[Frame]] = {
    c.TYPE: c for c in (Welcome, Message, Ack, Batch, Presence, RoomList, Error, Ping, Pong)
}


# --- generic field checking -------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is int:
        # JSON true/false must not pass as 1/0.
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "null")


def _check_types(frame: Frame) -> None:
    hints = _hints(type(frame))
    for f in dataclasses.fields(frame):
        value = getattr(frame, f.name)
        if not _matches(value, hints[f.name]):
            wire = frame.WIRE_NAMES.get(f.name, f.name)
            _fail(
                ErrorCode.BAD_FRAME,
                f"field {wire!r} of {frame.TYPE!r} must be {_type_name(hints[f.name])}",
            )


def _from_wire(obj: dict[str, Any], table: dict[str, type[Frame]]) -> Frame:
    ref = obj.get("id") if isinstance(obj.get("id"), str) else None
    kind = obj.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RemoteProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind!r}", ref)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        wire = cls.WIRE_NAMES.get(f.name, f.name)
        if wire in obj:
            kwargs[f.name] = obj[wire]
        elif f.default is dataclasses.MISSING:
            raise RemoteProtocolError(
                ErrorCode.BAD_FRAME, f"{kind!r} frame is missing field {wire!r}", ref
            )
    try:
        return cls(**kwargs)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(exc.code, exc.message, ref) from exc


def parse_client_frame(obj: Any) -> Frame:
    """Build a client->server frame from a decoded JSON value. Raises RemoteProtocolError."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(ErrorCode.BAD_JSON, "a frame is a JSON object")
    return _from_wire(obj, CLIENT_FRAMES)


def parse_server_frame(obj: Any) -> Frame:
    """Build a server->client frame from a decoded JSON value. Raises RemoteProtocolError."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(ErrorCode.BAD_JSON, "a frame is a JSON object")
    return _from_wire(obj, SERVER_FRAMES)
