"""What can be said on the wire, as one frozen dataclass per
frame type.

Rules this module keeps:
1. A frame validates itself when it is built, so no handler ever sees a
   half-valid frame. Building an invalid frame raises LocalProtocolError;
   parse_*_frame() turns that into RemoteProtocolError, because there the
   peer is at fault.
2. Client->server and server->client frames are parsed through separate
   tables: a server never accepts a `welcome`, a client never a `send`.
3. Unknown extra keys are dropped (a newer peer may add optional fields):
   they never reach a handler and are never echoed. Missing or mistyped
   known keys are errors.
4. Python names that cannot be wire names (`with`, `from`) are mapped in WIRE_NAMES.
5. Every field is bounded: each str field has a length in CHARS, each int
   field a range in RANGES, each list field a count in ITEMS (a test checks
   that none is missing). So whatever a peer sends, a frame that exists is
   small, and echoing it or storing it cannot fail or overflow.
6. Checks run in this order: field types, then the frame's own check()
   (which gives the specific codes: bad-nick, bad-room, bad-text,
   text-too-long), then the generic bounds (bad-frame).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypeVar, Union

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .limits import (
    MAX_CLIENT_ID_CHARS,
    MAX_CLIENT_NAME_CHARS,
    MAX_CONVERSATIONS_LISTED,
    MAX_ENVELOPE_CHARS,
    MAX_ERROR_CODE_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ID,
    MAX_LINK_BOX_CHARS,
    MAX_ONLINE_LISTED,
    MAX_PAGE,
    MAX_PASSWORD_CHARS,
    MAX_PING_TOKEN_CHARS,
    MAX_PREVIEW_CHARS,
    MAX_REASON_CHARS,
    MAX_RESUME_TOKEN_CHARS,
    MAX_ROOMS_LISTED,
    MAX_SEARCH_CHARS,
    MAX_SERVER_NAME_CHARS,
    MAX_TAG_CHARS,
    MAX_TARGET_CHARS,
    MAX_TEXT_CHARS,
    MAX_VERSION,
    TS_CHARS,
    has_control,
    has_forbidden_control,
    has_surrogate,
    valid_nick,
    valid_room,
)
from .timefmt import valid_ts
from .vocab import BatchKind, BatchState, ConversationKind, LinkOp, MessageKind

_Word = TypeVar("_Word", bound=StrEnum)


def _words(vocab: type[StrEnum]) -> tuple[str, ...]:
    """A vocabulary's wire strings, as error messages list them."""
    return tuple(member.value for member in vocab)


_CONVERSATION_KINDS = frozenset(_words(ConversationKind))
# What a word outside its vocabulary is told (built once: frames are built often).
_BAD_MESSAGE_KIND = f"message 'kind' is one of {_words(MessageKind)}"
_BAD_BATCH_STATE = "batch 'state' is 'open' or 'close'"
_BAD_BATCH_KIND = f"batch 'kind' is one of {_words(BatchKind)}"
_BAD_LINK_OP = f"link 'op' is one of {_words(LinkOp)}"

# Shorthands for the bounds tables below: (fewest, most) characters or values.
# Nicks and rooms are checked by their patterns in check() (with the codes
# bad-nick and bad-room); their lengths here repeat the patterns' for the table.
_NICK = (1, 24)
_ROOM = (2, 33)
_TAG = (0, MAX_TAG_CHARS)
_PING_TOKEN = (0, MAX_PING_TOKEN_CHARS)
_CLIENT_ID = (1, MAX_CLIENT_ID_CHARS)
_TS = (TS_CHARS, TS_CHARS)
_ID = (0, MAX_ID)
_TEXT = (0, MAX_TEXT_CHARS)
_ENVELOPE = (1, MAX_ENVELOPE_CHARS)
_KEY = (44, 44)  # base64 of a 32-byte key (or MAC)
_SIG = (88, 88)  # base64 of a 64-byte Ed25519 signature

#: How much of a peer's value an error message quotes. Error frames must stay
#: small whatever the peer sent (a 60 KB "room name" is quoted as 40 characters).
_SHOW_CHARS = 40


#: Most frames per second a `welcome` may announce (a sanity bound, not a setting).
_MAX_FLOOD_RATE = 1e9


def _fail(code: ErrorCode, message: str) -> typing.NoReturn:
    raise LocalProtocolError(code, message)


def _word(frame: Frame, name: str, vocab: type[_Word], problem: str) -> None:
    """Turn field *name* of *frame* (a string, as parsed) into its member of *vocab*.

    A word outside the vocabulary fails with bad-frame and *problem*. Frames
    are frozen, so the member is set as __post_init__ sets derived fields.
    """
    value = getattr(frame, name)
    if type(value) is vocab:
        return
    try:
        member = vocab(value)
    except ValueError:
        _fail(ErrorCode.BAD_FRAME, problem)
    object.__setattr__(frame, name, member)


def _show(value: Any) -> str:
    """A short repr of a peer's value for an error message (repr escapes controls and surrogates)."""
    text = repr(value[: _SHOW_CHARS + 1] if isinstance(value, str | list) else value)
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "..."


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of all frames. `TYPE` is the wire `type`; subclasses add `check()` rules."""

    TYPE: ClassVar[str] = ""
    #: Python attribute name -> wire key, for keys that are Python keywords.
    WIRE_NAMES: ClassVar[dict[str, str]] = {}
    #: str field -> (fewest, most) characters; for a list[str] field, per item.
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {}
    #: int field -> (lowest, highest) value.
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {}
    #: list field -> most items.
    ITEMS: ClassVar[dict[str, int]] = {}
    #: str fields exempt from the no-control-characters rule of one-line
    #: fields: prose with its own rule (message text allows newline and tab)
    #: and secrets nobody sees (a password is hashed, never shown or logged).
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        specs = _specs(type(self))
        _check_types(self, specs)
        self.check()
        _check_bounds(self, specs)

    def check(self) -> None:
        """Frame-specific rules beyond field types. Raise LocalProtocolError."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for this frame; None-valued optional fields are left out."""
        out: dict[str, Any] = {"type": self.TYPE}
        for spec in _specs(type(self)):
            value = getattr(self, spec.name)
            if value is not None:
                out[spec.wire] = value
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
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "nick": _NICK,
        "password": (1, MAX_PASSWORD_CHARS),
        "token": (1, MAX_RESUME_TOKEN_CHARS),
        "client": (0, MAX_CLIENT_NAME_CHARS),
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"version": (0, MAX_VERSION), "last_seen": _ID}
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"password"})
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


def check_text(text: str) -> None:
    """Refuse (LocalProtocolError: bad-text, text-too-long) a message text no
    `send` could carry; a client sealing an end-to-end encrypted text, which the
    server cannot read, keeps the same rule with it."""
    if not text.strip():
        _fail(ErrorCode.BAD_TEXT, "message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        _fail(ErrorCode.TEXT_TOO_LONG, f"message text is over {MAX_TEXT_CHARS} characters")
    if has_forbidden_control(text):
        _fail(
            ErrorCode.BAD_TEXT,
            "message text contains control characters (only newline and tab are allowed)",
        )
    if has_surrogate(text):
        # Built here, not parsed: text read with surrogateescape (undecodable
        # bytes) would otherwise fail only when encoded, on the I/O thread.
        _fail(ErrorCode.BAD_TEXT, "message text is not valid Unicode (a lone surrogate)")


def _check_room(room: str) -> None:
    if not valid_room(room):
        _fail(
            ErrorCode.BAD_ROOM,
            f"bad room name {_show(room)}: '#' then 1 to 32 letters, digits, '_' or '-'",
        )


def _check_nick(nick: str) -> None:
    if not valid_nick(nick):
        _fail(ErrorCode.BAD_NICK, f"bad nick {_show(nick)}: 1 to 24 letters, digits, '_' or '-'")


def _check_target(room: str | None, to: str | None) -> None:
    if (room is None) == (to is None):
        _fail(ErrorCode.BAD_FRAME, "give exactly one of 'room' or 'to'")
    if room is not None:
        _check_room(room)
    if to is not None:
        _check_nick(to)


@dataclass(frozen=True, slots=True)
class Send(Frame):
    """Post a message: {id, room | to, text, e2e?}. `id` is the client's, unique per user.

    `e2e` is an end-to-end encrypted private message's envelope (docs/security.md):
    then `to` is required and `text` is empty.
    """

    TYPE: ClassVar[str] = "send"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "id": _CLIENT_ID,
        "text": (0, MAX_TEXT_CHARS),
        "room": _ROOM,
        "to": _NICK,
        "e2e": _ENVELOPE,
    }
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"text"})
    id: str
    text: str
    room: str | None = None
    to: str | None = None
    e2e: str | None = None

    def check(self) -> None:
        _check_target(self.room, self.to)
        if self.e2e is None:
            check_text(self.text)
        else:
            _check_envelope(self.e2e, self.to, self.text)


def _check_envelope(e2e: str, to: str | None, text: str) -> None:
    if to is None:
        _fail(ErrorCode.BAD_FRAME, "an end-to-end encrypted message goes 'to' a nick, not a room")
    if text:
        _fail(ErrorCode.BAD_FRAME, "an end-to-end encrypted message has an empty 'text'")
    if not _ENVELOPE_TEXT.fullmatch(e2e):
        _fail(ErrorCode.BAD_FRAME, "an 'e2e' envelope is printable ASCII JSON")


#: What an envelope may hold: printable ASCII (JSON with base64 values).
_ENVELOPE_TEXT = re.compile(r"[\x20-\x7e]+")
_B64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_CODE_TEXT = re.compile(r"[A-Z2-9]{4}")


def _check_b64(value: str | None, name: str) -> None:
    if value is not None and (len(value) % 4 or not _B64_TEXT.fullmatch(value)):
        _fail(ErrorCode.BAD_FRAME, f"'{name}' is base64")


@dataclass(frozen=True, slots=True)
class _RoomFrame(Frame):
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"room": _ROOM}

    def check(self) -> None:
        _check_room(self.room)  # type: ignore[attr-defined]


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
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"room": _ROOM, "tag": _TAG}
    room: str | None = None
    tag: str | None = None

    def check(self) -> None:
        if self.room is not None:
            _check_room(self.room)


@dataclass(frozen=True, slots=True)
class ListRooms(Frame):
    """Ask for the list of rooms with member counts: {tag?}. Answered by `rooms`."""

    TYPE: ClassVar[str] = "rooms"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"tag": _TAG}
    tag: str | None = None


#: `before` is a message id (ids start at 1); `limit` a page size.
_PAGE_RANGES = {"before": (1, MAX_ID), "limit": (1, MAX_PAGE)}


@dataclass(frozen=True, slots=True)
class History(Frame):
    """Page back: {room | with, before? | around?, limit?, tag?}. Answered by a `history` batch.

    `around` (a message id) asks for up to `limit` messages centred on that id
    instead of the page before `before`: a search hit opened in its conversation.
    """

    TYPE: ClassVar[str] = "history"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"with_": "with"}
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"room": _ROOM, "with_": _NICK, "tag": _TAG}
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {**_PAGE_RANGES, "around": (1, MAX_ID)}
    room: str | None = None
    with_: str | None = None
    before: int | None = None
    limit: int = 50
    tag: str | None = None
    around: int | None = None

    def check(self) -> None:
        _check_target(self.room, self.with_)
        if self.before is not None and self.around is not None:
            _fail(ErrorCode.BAD_FRAME, "history takes 'before' or 'around', not both")


@dataclass(frozen=True, slots=True)
class ListConversations(Frame):
    """Ask for the user's conversations again: {tag?}. Answered by `conversations`."""

    TYPE: ClassVar[str] = "conversations"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"tag": _TAG}
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Read(Frame):
    """A read marker: {room | with, id}. Both directions.

    Client -> server: the user has read the conversation up to message `id`;
    the server moves its marker forward (never back). Server -> client: the
    marker moved on another of the user's connections (a second device).
    """

    TYPE: ClassVar[str] = "read"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"with_": "with"}
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"room": _ROOM, "with_": _NICK}
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"id": (1, MAX_ID)}
    id: int
    room: str | None = None
    with_: str | None = None

    def check(self) -> None:
        _check_target(self.room, self.with_)


@dataclass(frozen=True, slots=True)
class Search(Frame):
    """Search visible messages: {words, before?, limit?, tag?}. Newest first, in a `search` batch."""

    TYPE: ClassVar[str] = "search"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"words": (1, MAX_SEARCH_CHARS), "tag": _TAG}
    RANGES: ClassVar[dict[str, tuple[int, int]]] = _PAGE_RANGES
    words: str
    before: int | None = None
    limit: int = 50
    tag: str | None = None

    def check(self) -> None:
        # Typed by a person: said in words, before the generic bounds say it in field names.
        if not self.words.strip() or len(self.words) > MAX_SEARCH_CHARS:
            _fail(ErrorCode.BAD_FRAME, f"search words are 1 to {MAX_SEARCH_CHARS} characters")


@dataclass(frozen=True, slots=True)
class Ping(Frame):
    """Liveness check, either direction: {token?}. Answered by `pong` with the same token."""

    TYPE: ClassVar[str] = "ping"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"token": _PING_TOKEN}
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Pong(Frame):
    """Answer to `ping`: {token?}."""

    TYPE: ClassVar[str] = "pong"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"token": _PING_TOKEN}
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Bye(Frame):
    """Graceful exit: {reason?}. The server ends the session and stores the reason."""

    TYPE: ClassVar[str] = "bye"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"reason": (0, MAX_REASON_CHARS)}
    reason: str | None = None


# --- server -> client -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Frame):
    """Login accepted: {version, nick, token, rooms, server, created, session, max_text, flood?}.

    `nick` is the account's spelling; `token` a fresh resume token; `created`
    says the account was just registered. `flood` is the server's pace for this
    connection, {rate: frames per second, burst: frames at once}: a script
    that keeps to it is never delayed or disconnected.
    """

    TYPE: ClassVar[str] = "welcome"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "nick": _NICK,
        "token": (1, MAX_RESUME_TOKEN_CHARS),
        "rooms": _ROOM,
        "server": (0, MAX_SERVER_NAME_CHARS),
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "version": (0, MAX_VERSION),
        "session": _ID,
        "max_text": (1, MAX_TEXT_CHARS),
    }
    ITEMS: ClassVar[dict[str, int]] = {"rooms": MAX_ROOMS_LISTED}
    version: int
    nick: str
    token: str
    rooms: list[str]
    server: str
    created: bool = False
    session: int | None = None
    max_text: int | None = None
    flood: dict[str, Any] | None = None

    def check(self) -> None:
        _check_nick(self.nick)
        for room in self.rooms:
            _check_room(room)
        if self.flood is not None:
            # Rebuilt so that only {rate, burst} survives (as RoomList entries are).
            rate, burst = self.flood.get("rate"), self.flood.get("burst")
            if not (
                isinstance(rate, int | float)
                and not isinstance(rate, bool)
                and 0 < rate <= _MAX_FLOOD_RATE
                and type(burst) is int
                and 1 <= burst <= MAX_ID
            ):
                _fail(ErrorCode.BAD_FRAME, "welcome 'flood' is {rate: > 0, burst: >= 1}")
            object.__setattr__(self, "flood", {"rate": float(rate), "burst": burst})


@dataclass(frozen=True, slots=True)
class Message(Frame):
    """A stored message: {id, ts, kind, from?, room | to, text, ref?, e2e?}.

    `e2e` is the envelope of an end-to-end encrypted private message (then
    `text` is empty); only its two parties' keys open it.

    `id` is the database's, strictly increasing; `ts` the server's UTC time
    (ISO 8601, milliseconds, `Z`). System notices have no `from`. `ref` is the
    sender's client id, present only on copies that go to the sender's own
    connections. `edited` (moderation) is when its author last edited it.
    """

    TYPE: ClassVar[str] = "message"
    WIRE_NAMES: ClassVar[dict[str, str]] = {"from_": "from"}
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "ts": _TS,
        "kind": (0, 16),
        "text": _TEXT,
        "from_": _NICK,
        "room": _ROOM,
        "to": _NICK,
        "ref": _CLIENT_ID,
        "edited": _TS,
        "e2e": _ENVELOPE,
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"id": _ID}
    # What a message says is shown to people, and the clients neutralise
    # control characters where they show it (the terminal client turns an
    # escape into visible text, and its tests send such messages on purpose),
    # so the protocol keeps to structure here: types, lengths, ids, the
    # timestamp, and where the message goes.
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"text", "from_"})
    id: int
    ts: str
    kind: MessageKind
    text: str
    from_: str | None = None
    room: str | None = None
    to: str | None = None
    ref: str | None = None
    #: When the author last edited it (UTC, as `ts`); absent: never edited.
    edited: str | None = None
    e2e: str | None = None

    def check(self) -> None:
        _word(self, "kind", MessageKind, _BAD_MESSAGE_KIND)
        _check_ts(self.ts)
        if self.edited is not None:
            _check_ts(self.edited)
        _check_target(self.room, self.to)
        if len(self.text) > MAX_TEXT_CHARS:
            _fail(ErrorCode.TEXT_TOO_LONG, f"message text is over {MAX_TEXT_CHARS} characters")
        if self.e2e is not None:
            _check_envelope(self.e2e, self.to, self.text)


@dataclass(frozen=True, slots=True)
class Ack(Frame):
    """A `send` was committed: {ref, id, ts, duplicate?}. `duplicate` marks a resend."""

    TYPE: ClassVar[str] = "ack"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"ref": _CLIENT_ID, "ts": _TS}
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"id": _ID}
    ref: str
    id: int
    ts: str
    duplicate: bool = False

    def check(self) -> None:
        _check_ts(self.ts)


@dataclass(frozen=True, slots=True)
class Batch(Frame):
    """Brackets many `message` frames: {state: open|close, kind, tag?, target?, gap?, more?, count?}.

    On `open` of a replay, `gap: true` says older missed messages were left out
    (page back with `history`). On `close`, `more: true` says older history exists.
    """

    TYPE: ClassVar[str] = "batch"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "state": (0, 16),
        "kind": (0, 16),
        "tag": _TAG,
        "target": (0, MAX_TARGET_CHARS),
    }
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {"count": _ID}
    state: BatchState
    kind: BatchKind
    tag: str | None = None
    target: str | None = None
    gap: bool = False
    more: bool = False
    count: int | None = None

    def check(self) -> None:
        _word(self, "state", BatchState, _BAD_BATCH_STATE)
        _word(self, "kind", BatchKind, _BAD_BATCH_KIND)


@dataclass(frozen=True, slots=True)
class Presence(Frame):
    """Who is online in a room: {room, online? (+ more?) | joined? | left?, tag?}.

    `joined` / `left` alone are deltas sent to a room's members; `online` is the
    full list, sent at login and in answer to `who`, paged with `more: true` on
    every page but the last.
    """

    TYPE: ClassVar[str] = "presence"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "room": _ROOM,
        "online": _NICK,
        "joined": _NICK,
        "left": _NICK,
        "tag": _TAG,
    }
    ITEMS: ClassVar[dict[str, int]] = {"online": MAX_ONLINE_LISTED}
    room: str
    online: list[str] | None = None
    joined: str | None = None
    left: str | None = None
    tag: str | None = None
    #: True: the `online` list continues in the next `presence` frame (big rooms are paged).
    more: bool | None = None

    def check(self) -> None:
        _check_room(self.room)
        for nick in (*(self.online or ()), self.joined, self.left):
            if nick is not None:
                _check_nick(nick)


@dataclass(frozen=True, slots=True)
class RoomList(Frame):
    """The rooms: {rooms: [{name, members, joined}], tag?}."""

    TYPE: ClassVar[str] = "rooms"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"tag": _TAG}
    ITEMS: ClassVar[dict[str, int]] = {"rooms": MAX_ROOMS_LISTED}
    rooms: list[dict[str, Any]]
    tag: str | None = None
    #: True: the list continues in the next `rooms` frame (many rooms are paged).
    more: bool | None = None

    def check(self) -> None:
        # Each entry is exactly {name, members, joined}: checked here because a
        # dict's values have no field types, and rebuilt so that unknown keys
        # are dropped as they are at the top level (and nothing nested survives).
        entries = []
        for entry in self.rooms:
            name, members, joined = (entry.get(k) for k in ("name", "members", "joined"))
            if not (
                isinstance(name, str)
                and valid_room(name)
                and type(members) is int
                and 0 <= members <= MAX_ID
                and isinstance(joined, bool)
            ):
                _fail(
                    ErrorCode.BAD_FRAME,
                    "each of 'rooms' is {name: room, members: count, joined: true|false}",
                )
            entries.append({"name": name, "members": members, "joined": joined})
        object.__setattr__(self, "rooms", entries)


@dataclass(frozen=True, slots=True)
class Conversations(Frame):
    """The user's conversations: {items: [{kind, name, last, unread, read, cut?}], tag?, more?}.

    Sent once after `welcome` and in answer to a client `conversations`. `kind`
    is "room" (every room the user is a member of) or "private" (every peer the
    user exchanged a private message with); `name` the room or the peer's nick;
    `last` the latest message visible to the user (as in `message`, without
    `type`) or null, its text cut to MAX_PREVIEW_CHARS (then `cut: true`);
    `unread` how many messages from others came after `read`, the user's read
    marker (a message id, 0 for none). The list is paged: `more: true` on every
    frame but the last.
    """

    TYPE: ClassVar[str] = "conversations"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"tag": _TAG}
    ITEMS: ClassVar[dict[str, int]] = {"items": MAX_CONVERSATIONS_LISTED}
    items: list[dict[str, Any]]
    tag: str | None = None
    more: bool | None = None

    def check(self) -> None:
        # Each entry is checked and rebuilt (as RoomList's are): unknown keys
        # dropped, the `last` message validated as a `message` frame is.
        entries = []
        for entry in self.items:
            if not isinstance(entry, dict):
                _fail(ErrorCode.BAD_FRAME, "each of 'items' is an object")
            kind, name, cut = entry.get("kind"), entry.get("name"), entry.get("cut", False)
            unread, read, last = entry.get("unread"), entry.get("read"), entry.get("last")
            if not (
                isinstance(kind, str)
                and kind in _CONVERSATION_KINDS
                and isinstance(name, str)
                and (valid_room(name) if kind == ConversationKind.ROOM else valid_nick(name))
                and type(unread) is int
                and 0 <= unread <= MAX_ID
                and type(read) is int
                and 0 <= read <= MAX_ID
                and (last is None or isinstance(last, dict))
                and isinstance(cut, bool)
            ):
                _fail(
                    ErrorCode.BAD_FRAME,
                    "each of 'items' is {kind: room|private, name, last: message|null, "
                    "unread: count, read: id, cut?: bool}",
                )
            if last is not None:
                try:
                    last = message_wire(_from_wire({**last, "type": "message"}, _MESSAGE_ONLY))
                except RemoteProtocolError as exc:
                    _fail(exc.code, f"conversation {_show(name)}: {exc.message}")
                if len(last["text"]) > MAX_PREVIEW_CHARS:
                    _fail(
                        ErrorCode.BAD_FRAME,
                        f"a conversation's 'last' text is at most {MAX_PREVIEW_CHARS} characters",
                    )
            item = {
                "kind": ConversationKind(kind),
                "name": name,
                "last": last,
                "unread": unread,
                "read": read,
            }
            if cut:
                item["cut"] = True
            entries.append(item)
        object.__setattr__(self, "items", entries)


_MESSAGE_ONLY: dict[str, type[Frame]] = {"message": Message}


def message_wire(frame: Frame) -> dict[str, Any]:
    """A `message` frame as the object a `conversations` entry holds (no `type`)."""
    out = frame.to_wire()
    del out["type"]
    return out


@dataclass(frozen=True, slots=True)
class Error(Frame):
    """A request failed: {code, message, ref?}. `ref` is the client id of the `send` it refers to."""

    TYPE: ClassVar[str] = "error"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "code": (1, MAX_ERROR_CODE_CHARS),
        "message": (0, MAX_ERROR_MESSAGE_CHARS),
        "ref": _CLIENT_ID,
    }
    CONTROLS_OK: ClassVar[frozenset[str]] = frozenset({"message"})
    code: str
    message: str
    ref: str | None = None

    def check(self) -> None:
        # Prose for people, often built from an exception's text: cleaned and
        # cut instead of refused, so that reporting an error can never fail.
        message = self.message
        if len(message) > MAX_ERROR_MESSAGE_CHARS:
            message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
        if has_forbidden_control(message) or has_surrogate(message):
            message = _UNSHOWABLE.sub("\ufffd", message)
        object.__setattr__(self, "message", message)


# --- end-to-end encryption: the key directory and device linking (docs/security.md) ---


@dataclass(frozen=True, slots=True)
class KeysPut(Frame):
    """Publish this account's public keys: {sign, box, sig, replace?} (base64).

    Refused with `keys-exist` when other keys are already published, unless
    `replace` is true (the user reset their keys: their peers will be warned).
    """

    TYPE: ClassVar[str] = "keys_put"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"sign": _KEY, "box": _KEY, "sig": _SIG}
    sign: str
    box: str
    sig: str
    replace: bool = False

    def check(self) -> None:
        for name in ("sign", "box", "sig"):
            _check_b64(getattr(self, name), name)


@dataclass(frozen=True, slots=True)
class KeysGet(Frame):
    """Ask for a user's published public keys: {nick, tag?}; a `keys` frame answers."""

    TYPE: ClassVar[str] = "keys_get"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {"nick": _NICK, "tag": _TAG}
    nick: str
    tag: str | None = None

    def check(self) -> None:
        _check_nick(self.nick)


@dataclass(frozen=True, slots=True)
class Keys(Frame):
    """A user's public keys: {nick, sign?, box?, sig?, tag?, no_account?}; none of the
    three: no keys. `no_account: true` says there is no such account at all (the
    nick is free or deleted), so a client can say that instead of "no keys"."""

    TYPE: ClassVar[str] = "keys"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "nick": _NICK,
        "sign": _KEY,
        "box": _KEY,
        "sig": _SIG,
        "tag": _TAG,
    }
    nick: str
    sign: str | None = None
    box: str | None = None
    sig: str | None = None
    tag: str | None = None
    no_account: bool | None = None

    def check(self) -> None:
        _check_nick(self.nick)
        if len({self.sign is None, self.box is None, self.sig is None}) != 1:
            _fail(ErrorCode.BAD_FRAME, "keys has all of 'sign', 'box', 'sig' or none")
        if self.no_account and self.sign is not None:
            _fail(ErrorCode.BAD_FRAME, "keys with 'no_account' has no keys")
        for name in ("sign", "box", "sig"):
            _check_b64(getattr(self, name), name)


@dataclass(frozen=True, slots=True)
class Link(Frame):
    """Device linking, relayed between two connections of one account: {op, code, pub?, mac?, box?}.

    op `offer` (new device: its one-time key and the code's MAC over it), `fetch`
    (old device: the offer for a code), `answer` (old device: the account keys
    sealed to the new device's key). The server answers a fetch with the offer
    and forwards an answer to the offering connection; it never sees the code's
    secret part, so it can neither read the keys nor forge either side.
    """

    TYPE: ClassVar[str] = "link"
    CHARS: ClassVar[dict[str, tuple[int, int]]] = {
        "op": (1, 8),
        "code": (4, 4),
        "pub": _KEY,
        "mac": _KEY,
        "box": (1, MAX_LINK_BOX_CHARS),
    }
    op: LinkOp
    code: str
    pub: str | None = None
    mac: str | None = None
    box: str | None = None

    def check(self) -> None:
        _word(self, "op", LinkOp, _BAD_LINK_OP)
        if not _CODE_TEXT.fullmatch(self.code):
            _fail(ErrorCode.BAD_FRAME, "a link 'code' is 4 capital letters or digits")
        need = _LINK_NEEDS[self.op]
        for name in ("pub", "mac", "box"):
            value = getattr(self, name)
            if (value is not None) != (name in need):
                _fail(ErrorCode.BAD_FRAME, f"link {self.op} needs exactly {need or 'no keys'}")
            _check_b64(value, name)


#: The keys each link step carries (and no others).
_LINK_NEEDS: dict[LinkOp, tuple[str, ...]] = {
    LinkOp.OFFER: ("pub", "mac"),
    LinkOp.FETCH: (),
    LinkOp.ANSWER: ("pub", "mac", "box"),
}

CLIENT_FRAMES: dict[str, type[Frame]] = {
    c.TYPE: c
    for c in (
        Hello,
        Send,
        Join,
        Leave,
        Who,
        ListRooms,
        History,
        Search,
        ListConversations,
        Read,
        Ping,
        Pong,
        Bye,
        KeysPut,
        KeysGet,
        Link,
    )
}
SERVER_FRAMES: dict[str, type[Frame]] = {
    c.TYPE: c
    for c in (
        Welcome,
        Message,
        Ack,
        Batch,
        Presence,
        RoomList,
        Conversations,
        Read,
        Error,
        Ping,
        Pong,
        Keys,
        Link,
    )
}


# --- generic field checking -------------------------------------------------
#
# Each frame class is described once (its fields, their types compiled to
# small predicates, their bounds) and the description is cached: frames are
# built thousands of times a second, so the per-frame work is a loop over a
# tuple, not a walk through dataclasses and typing.


@dataclass(frozen=True, slots=True)
class _Spec:
    """One field of a frame class, with everything the checks need."""

    name: str
    wire: str
    matches: typing.Callable[[Any], bool]
    type_name: str
    chars: tuple[int, int] | None
    range: tuple[int, int] | None
    items: int | None
    controls_ok: bool
    required: bool


_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _compile(hint: Any) -> typing.Callable[[Any], bool]:
    """A predicate for "this JSON value has type *hint*"."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if len(args) == 2 and type(None) in args:  # the common `X | None`
            (inner,) = (_compile(a) for a in args if a is not type(None))
            return lambda v: v is None or inner(v)
        alternatives = tuple(_compile(a) for a in args)
        return lambda v: any(m(v) for m in alternatives)
    if hint is type(None):
        return lambda v: v is None
    if origin is list:
        item = _compile(typing.get_args(hint)[0])
        return lambda v: isinstance(v, list) and all(item(x) for x in v)
    if origin is dict:
        return lambda v: isinstance(v, dict)
    if hint is Any:
        return lambda v: True
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        # A vocabulary field arrives as a string; the frame's check() turns it
        # into its member (or fails with a message naming the words).
        return lambda v: isinstance(v, str)
    if hint is int:
        # JSON true/false must not pass as 1/0.
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    return lambda v: isinstance(v, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return "str"
    if isinstance(hint, type):  # str(int) would say "<class 'int'>"
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "null")


def _specs(cls: type[Frame]) -> tuple[_Spec, ...]:
    specs = _SPECS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = tuple(
            _Spec(
                name=f.name,
                wire=cls.WIRE_NAMES.get(f.name, f.name),
                matches=_compile(hints[f.name]),
                type_name=_type_name(hints[f.name]),
                chars=cls.CHARS.get(f.name),
                range=cls.RANGES.get(f.name),
                items=cls.ITEMS.get(f.name),
                controls_ok=f.name in cls.CONTROLS_OK,
                required=f.default is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
        _SPECS[cls] = specs
    return specs


def _check_types(frame: Frame, specs: tuple[_Spec, ...]) -> None:
    for spec in specs:
        if not spec.matches(getattr(frame, spec.name)):
            _fail(
                ErrorCode.BAD_FRAME,
                f"field {spec.wire!r} of {frame.TYPE!r} must be {spec.type_name}",
            )


def _check_bounds(frame: Frame, specs: tuple[_Spec, ...]) -> None:
    for spec in specs:
        value = getattr(frame, spec.name)
        if value is None or isinstance(value, bool):
            continue
        where = f"{spec.wire!r} of {frame.TYPE!r}"
        if spec.range is not None:
            lo, hi = spec.range
            if not lo <= value <= hi:
                _fail(ErrorCode.BAD_FRAME, f"{where} must be {lo} to {hi}")
        if spec.items is not None and len(value) > spec.items:
            _fail(ErrorCode.BAD_FRAME, f"{where} has more than {spec.items} items")
        if spec.chars is not None:
            lo, hi = spec.chars
            for text in value if isinstance(value, list) else (value,):
                if not lo <= len(text) <= hi:
                    _fail(ErrorCode.BAD_FRAME, f"{where} is {lo} to {hi} characters")
                if not spec.controls_ok and has_control(text):
                    _fail(ErrorCode.BAD_FRAME, f"{where} must not contain control characters")
                if has_surrogate(text):
                    _fail(ErrorCode.BAD_FRAME, f"{where} is not valid Unicode (a lone surrogate)")


def _check_ts(ts: str) -> None:
    if not valid_ts(ts):
        _fail(ErrorCode.BAD_FRAME, f"bad timestamp {_show(ts)}: YYYY-MM-DDTHH:MM:SS.mmmZ")


#: What Error.message cannot carry and gets replaced: controls other than
#: newline and tab (the text rule), and lone surrogates (not encodable).
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


# --- parsing ------------------------------------------------------------------


def _valid_ref(value: Any) -> str | None:
    """*value* if it can be echoed as an error's `ref` (a well-formed client id), else None."""
    if (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_CLIENT_ID_CHARS
        and not has_control(value)
        and not has_surrogate(value)
    ):
        return value
    return None


def _has_surrogate_anywhere(value: Any) -> bool:
    """True if any string in *value* (keys included, at any depth) holds a lone surrogate."""
    # Iterative, not recursive: json accepts nesting close to the recursion
    # limit, and this walk must not be the thing that overflows.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _refuse_surrogates(obj: dict[str, Any], table: dict[str, type[Frame]]) -> None:
    """Refuse a frame with a lone surrogate in any string, known field or not.

    Message text gets `bad-text` (as other unshowable text does); anything
    else `bad-frame`. Unknown fields are checked too, although they are
    dropped: a line that is not valid Unicode is refused whole.
    """
    kind = obj.get("type")
    has_text = isinstance(kind, str) and table.get(kind) in (Send, Message)
    for key, value in obj.items():
        if _has_surrogate_anywhere(key) or _has_surrogate_anywhere(value):
            code = ErrorCode.BAD_TEXT if has_text and key == "text" else ErrorCode.BAD_FRAME
            where = "message text" if code is ErrorCode.BAD_TEXT else f"field {_show(key)}"
            raise RemoteProtocolError(
                code,
                f"{where} contains a lone UTF-16 surrogate (not a Unicode character)",
                _valid_ref(obj.get("id")),
            )


def _from_wire(obj: dict[str, Any], table: dict[str, type[Frame]]) -> Frame:
    ref = _valid_ref(obj.get("id"))
    kind = obj.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RemoteProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {_show(kind)}", ref)
    kwargs: dict[str, Any] = {}
    for spec in _specs(cls):
        if spec.wire in obj:
            kwargs[spec.name] = obj[spec.wire]
        elif spec.required:
            raise RemoteProtocolError(
                ErrorCode.BAD_FRAME,
                f"{kind!r} frame is missing field {spec.wire!r}",
                ref,
                frame_type=cls.TYPE,
            )
    try:
        return cls(**kwargs)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(exc.code, exc.message, ref, frame_type=cls.TYPE) from exc


def parse_frame(obj: Any, table: dict[str, type[Frame]], *, scan_surrogates: bool = True) -> Frame:
    """Build a frame of *table* from a decoded JSON value. Raises RemoteProtocolError.

    The codec passes scan_surrogates=False when the raw line shows that no
    string in it can hold a surrogate, which spares the walk over the value.
    """
    if not isinstance(obj, dict):
        raise RemoteProtocolError(ErrorCode.BAD_JSON, "a frame is a JSON object")
    if scan_surrogates:
        _refuse_surrogates(obj, table)
    return _from_wire(obj, table)


def parse_client_frame(obj: Any) -> Frame:
    """Build a client->server frame from a decoded JSON value. Raises RemoteProtocolError."""
    return parse_frame(obj, CLIENT_FRAMES)


def parse_server_frame(obj: Any) -> Frame:
    """Build a server->client frame from a decoded JSON value. Raises RemoteProtocolError."""
    return parse_frame(obj, SERVER_FRAMES)
