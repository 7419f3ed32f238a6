# Tests for the bounds on every field (protocol/limits.py, frames.py rule 5):
# numbers in range, strings capped and free of control characters, lists
# capped, peer values quoted briefly, and every frame type small enough to
# send whatever its fields hold. No sockets.

import dataclasses
import typing

import pytest

from parley_chat.protocol import (
    CLIENT_FRAMES,
    MAX_CLIENT_ID_CHARS,
    MAX_CLIENT_NAME_CHARS,
    MAX_CONVERSATIONS_LISTED,
    MAX_ENVELOPE_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ID,
    MAX_LINE_BYTES,
    MAX_ONLINE_LISTED,
    MAX_PAGE,
    MAX_PASSWORD_CHARS,
    MAX_PING_TOKEN_CHARS,
    MAX_PREVIEW_CHARS,
    MAX_REASON_CHARS,
    MAX_RESUME_TOKEN_CHARS,
    MAX_ROOMS_LISTED,
    MAX_SEARCH_CHARS,
    MAX_TAG_CHARS,
    MAX_TEXT_CHARS,
    MAX_VERSION,
    SERVER_FRAMES,
    Ack,
    Batch,
    Conversations,
    Error,
    ErrorCode,
    Frame,
    Hello,
    History,
    Keys,
    KeysPut,
    Link,
    LocalProtocolError,
    Message,
    Read,
    RemoteProtocolError,
    RoomList,
    Send,
    Welcome,
    decode_client_line,
    encode,
    parse_client_frame,
    parse_server_frame,
)
from parley_chat.protocol.moderation import Edited, Moderate, Notice

TS = "2026-11-24T09:30:00.123Z"
HELLO = {"type": "hello", "version": 1, "nick": "al", "password": "pw"}
SEND = {"type": "send", "id": "c1", "room": "#a", "text": "hi"}
MESSAGE = {"type": "message", "id": 1, "ts": TS, "kind": "public", "room": "#a", "text": "hi"}


def _code(obj: dict, parse=parse_client_frame) -> ErrorCode | None:
    """The error code parsing *obj* gives, or None if it is accepted."""
    try:
        parse(obj)
    except RemoteProtocolError as exc:
        return exc.code
    return None


# --- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "field", "good", "bad"),
    [
        ({"type": "history", "room": "#a"}, "before", [1, MAX_ID], [0, -1, MAX_ID + 1, 2**64]),
        ({"type": "search", "words": "w"}, "before", [1, MAX_ID], [0, -5, MAX_ID + 1]),
        ({"type": "history", "room": "#a"}, "limit", [1, MAX_PAGE], [0, -1, MAX_PAGE + 1, 10**18]),
        ({"type": "search", "words": "w"}, "limit", [1, MAX_PAGE], [0, MAX_PAGE + 1]),
        (HELLO, "last_seen", [0, MAX_ID], [-1, MAX_ID + 1, -(2**63)]),
        (HELLO, "version", [0, 1, 99, MAX_VERSION], [-1, MAX_VERSION + 1, 10**18]),
    ],
)
def test_client_numbers_are_range_checked(base, field, good, bad):
    for value in good:
        assert _code({**base, field: value}) is None, value
    for value in bad:
        assert _code({**base, field: value}) == ErrorCode.BAD_FRAME, value


@pytest.mark.parametrize(
    ("base", "field", "bad"),
    [
        (MESSAGE, "id", [-1, MAX_ID + 1]),
        ({"type": "ack", "ref": "c1", "id": 1, "ts": TS}, "id", [-1, MAX_ID + 1]),
        ({"type": "batch", "state": "close", "kind": "replay"}, "count", [-1, MAX_ID + 1]),
        (
            {
                "type": "welcome",
                "version": 1,
                "nick": "al",
                "token": "t",
                "rooms": [],
                "server": "s",
            },
            "max_text",
            [0, MAX_TEXT_CHARS + 1],
        ),
        (
            {
                "type": "welcome",
                "version": 1,
                "nick": "al",
                "token": "t",
                "rooms": [],
                "server": "s",
            },
            "session",
            [-1, MAX_ID + 1],
        ),
    ],
)
def test_server_numbers_are_range_checked(base, field, bad):
    assert _code(base, parse_server_frame) is None
    for value in bad:
        assert _code({**base, field: value}, parse_server_frame) == ErrorCode.BAD_FRAME, value


@pytest.mark.parametrize("value", [5.0, 1.5, 1e3, -0.0])
def test_floats_are_not_accepted_where_ints_are_expected(value):
    assert _code({"type": "history", "room": "#a", "limit": value}) == ErrorCode.BAD_FRAME
    assert _code({"type": "history", "room": "#a", "before": value}) == ErrorCode.BAD_FRAME
    assert _code({**HELLO, "version": value}) == ErrorCode.BAD_FRAME
    assert _code({**HELLO, "last_seen": value}) == ErrorCode.BAD_FRAME


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_not_ints(value):
    assert _code({"type": "history", "room": "#a", "limit": value}) == ErrorCode.BAD_FRAME
    assert _code({"type": "history", "room": "#a", "before": value}) == ErrorCode.BAD_FRAME
    assert _code({**HELLO, "version": value}) == ErrorCode.BAD_FRAME
    assert _code({**HELLO, "last_seen": value}) == ErrorCode.BAD_FRAME
    assert _code({**MESSAGE, "id": value}, parse_server_frame) == ErrorCode.BAD_FRAME


def test_ints_are_not_bools():
    assert _code({**HELLO, "register": 1}) == ErrorCode.BAD_FRAME


# --- strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "field", "cap"),
    [
        ({"type": "who"}, "tag", MAX_TAG_CHARS),
        ({"type": "rooms"}, "tag", MAX_TAG_CHARS),
        ({"type": "history", "room": "#a"}, "tag", MAX_TAG_CHARS),
        ({"type": "search", "words": "w"}, "tag", MAX_TAG_CHARS),
        ({"type": "ping"}, "token", MAX_PING_TOKEN_CHARS),
        ({"type": "pong"}, "token", MAX_PING_TOKEN_CHARS),
        (HELLO, "client", MAX_CLIENT_NAME_CHARS),
        (HELLO, "password", MAX_PASSWORD_CHARS),
        ({**HELLO, "password": None}, "token", MAX_RESUME_TOKEN_CHARS),
        ({"type": "bye"}, "reason", MAX_REASON_CHARS),
        ({"type": "search"}, "words", MAX_SEARCH_CHARS),
        (SEND, "id", MAX_CLIENT_ID_CHARS),
    ],
)
def test_one_line_fields_are_capped(base, field, cap):
    base = {k: v for k, v in base.items() if v is not None}
    assert _code({**base, field: "é" * cap}) is None
    assert _code({**base, field: "é" * (cap + 1)}) == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    ("base", "field"),
    [
        ({"type": "who"}, "tag"),
        ({"type": "rooms"}, "tag"),
        ({"type": "history", "room": "#a"}, "tag"),
        ({"type": "search", "words": "w"}, "tag"),
        ({"type": "ping"}, "token"),
        ({"type": "pong"}, "token"),
        (HELLO, "client"),
        ({"type": "hello", "version": 1, "nick": "al"}, "token"),
        ({"type": "bye"}, "reason"),
        ({"type": "search"}, "words"),
        (SEND, "id"),
    ],
)
@pytest.mark.parametrize("char", ["\n", "\t", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9b"])
def test_one_line_fields_refuse_every_control_character(base, field, char):
    # Newline and tab too: these fields end up in log lines and database columns.
    assert _code({**base, field: f"a{char}b"}) == ErrorCode.BAD_FRAME


def test_empty_one_line_fields_are_allowed_where_they_are_optional_labels():
    assert _code({"type": "who", "tag": ""}) is None
    assert _code({"type": "ping", "token": ""}) is None
    assert _code({"type": "bye", "reason": ""}) is None


def test_a_password_may_hold_any_character_within_its_length():
    # Hashed, never shown or logged: refusing characters would only lock people out.
    assert _code({**HELLO, "password": "tab\there \x01 \n é 😀"}) is None


def test_send_ids_refuse_control_characters_so_refs_can_be_echoed():
    assert _code({**SEND, "id": "c\n1"}) == ErrorCode.BAD_FRAME


# --- error messages and refs stay small whatever the peer sent --------------------------


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"send","id":"c1","text":"x","room":"#' + b"r" * 60_000 + b'"}',
        b'{"type":"send","id":"c1","text":"x","to":"' + b"n" * 60_000 + b'"}',
        b'{"type":"' + b"t" * 60_000 + b'"}',
        b'{"type":[' + b"1," * 20_000 + b"1]}",
    ],
)
def test_error_messages_quote_peer_values_briefly(line):
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_line(line)
    assert len(info.value.message) < 200
    # The server answers with exactly this, so it must encode.
    encode(Error(code=info.value.code, message=info.value.message, ref=info.value.ref))


@pytest.mark.parametrize("bad_id", ["x" * (MAX_CLIENT_ID_CHARS + 1), "c\n1", "", 5, ["c1"], None])
def test_an_error_only_echoes_the_send_id_when_it_is_a_well_formed_client_id(bad_id):
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_frame({**SEND, "id": bad_id, "text": "bell\x07"})
    assert info.value.ref is None


def test_error_message_is_cut_and_cleaned_instead_of_refused():
    error = Error(code="store-failed", message="line1\nline2\x1b[2J\ud800" + "x" * 5000)
    assert len(error.message) == MAX_ERROR_MESSAGE_CHARS
    assert error.message.startswith("line1\nline2\ufffd[2J\ufffd")
    encode(error)
    decoded = parse_server_frame({"type": "error", "code": "x", "message": "y" * 5000})
    assert len(decoded.message) == MAX_ERROR_MESSAGE_CHARS  # type: ignore[attr-defined]


# --- server frames the client library decodes -------------------------------------------


@pytest.mark.parametrize(
    "ts", ["t", "", "2026-11-24T09:30:00Z", "2026-02-30T09:30:00.000Z", "2026-11-24 09:30:00.000Z"]
)
def test_server_timestamps_must_be_real_wire_timestamps(ts):
    assert _code({**MESSAGE, "ts": ts}, parse_server_frame) == ErrorCode.BAD_FRAME
    ack = {"type": "ack", "ref": "c1", "id": 1, "ts": ts}
    assert _code(ack, parse_server_frame) == ErrorCode.BAD_FRAME


def test_message_text_from_a_server_is_bounded_but_shown_as_the_clients_decide():
    # Structure only: the clients neutralise control characters where they show text.
    too_long = {**MESSAGE, "text": "x" * (MAX_TEXT_CHARS + 1)}
    assert _code(too_long, parse_server_frame) == ErrorCode.TEXT_TOO_LONG
    assert _code({**MESSAGE, "text": "esc\x1b[2J", "from": "x\x1b"}, parse_server_frame) is None
    assert _code({**MESSAGE, "from": "x" * 25}, parse_server_frame) == ErrorCode.BAD_FRAME


def test_message_targets_and_refs_from_a_server_are_checked():
    assert _code({**MESSAGE, "room": "lobby"}, parse_server_frame) == ErrorCode.BAD_ROOM
    assert _code({**MESSAGE, "room": None, "to": "a b"}, parse_server_frame) == ErrorCode.BAD_NICK
    assert _code({**MESSAGE, "ref": "c\x001"}, parse_server_frame) == ErrorCode.BAD_FRAME


def test_welcome_and_presence_names_are_checked():
    welcome = {"type": "welcome", "version": 1, "nick": "al", "token": "t", "server": "s"}
    assert _code({**welcome, "rooms": ["#a", "b"]}, parse_server_frame) == ErrorCode.BAD_ROOM
    assert _code({**welcome, "rooms": [], "nick": "a b"}, parse_server_frame) == ErrorCode.BAD_NICK
    presence = {"type": "presence", "room": "#a"}
    assert _code({**presence, "online": ["al", "b b"]}, parse_server_frame) == ErrorCode.BAD_NICK
    assert _code({**presence, "joined": ""}, parse_server_frame) == ErrorCode.BAD_NICK


def test_lists_from_a_server_are_capped():
    welcome = {"type": "welcome", "version": 1, "nick": "al", "token": "t", "server": "s"}
    rooms = [f"#r{i}" for i in range(MAX_ROOMS_LISTED + 1)]
    assert _code({**welcome, "rooms": rooms[:-1]}, parse_server_frame) is None
    assert _code({**welcome, "rooms": rooms}, parse_server_frame) == ErrorCode.BAD_FRAME
    online = [f"n{i}" for i in range(MAX_ONLINE_LISTED + 1)]
    presence = {"type": "presence", "room": "#a"}
    assert _code({**presence, "online": online[:-1]}, parse_server_frame) is None
    assert _code({**presence, "online": online}, parse_server_frame) == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "#a", "members": 1},
        {"name": "a", "members": 1, "joined": True},
        {"name": "#a", "members": -1, "joined": True},
        {"name": "#a", "members": 1.0, "joined": True},
        {"name": "#a", "members": True, "joined": True},
        {"name": "#a", "members": 1, "joined": 1},
        {"name": "#a", "members": MAX_ID + 1, "joined": True},
    ],
)
def test_rooms_entries_are_checked(entry):
    assert _code({"type": "rooms", "rooms": [entry]}, parse_server_frame) == ErrorCode.BAD_FRAME


def test_rooms_entries_drop_unknown_keys_like_frames_do():
    frame = parse_server_frame(
        {"type": "rooms", "rooms": [{"name": "#a", "members": 2, "joined": False, "x": [[{}]]}]}
    )
    assert frame.rooms == [{"name": "#a", "members": 2, "joined": False}]  # type: ignore[attr-defined]


# --- every field of every frame type is bounded, so every frame fits a line -------------


def _frame_types() -> list[type[Frame]]:
    # Sorted: a set of classes iterates in address order, which differs between the
    # processes of a parallel run (pytest-xdist needs one collection order).
    return sorted({*CLIENT_FRAMES.values(), *SERVER_FRAMES.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _frame_types(), ids=lambda c: c.__name__)
def test_every_field_of_every_frame_type_has_a_bound(cls):
    # A new field without a bound would let a peer make that frame arbitrarily large.
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        text = str(hints[field.name])
        if "list" in text:
            assert field.name in cls.ITEMS, f"{cls.__name__}.{field.name} has no item cap"
        if "dict" in text:
            continue  # entries of `rooms`: checked field by field in RoomList.check()
        if "str" in text:
            assert field.name in cls.CHARS, f"{cls.__name__}.{field.name} has no length cap"
        if "int" in text:
            assert field.name in cls.RANGES, f"{cls.__name__}.{field.name} has no range"


#: The widest value each bounded field can hold: names at their longest (ASCII
#: only), other strings in characters that take 4 bytes of UTF-8 (or, where
#: control characters are allowed, 6 bytes of JSON escape), numbers at their
#: most digits, booleans as `false`.
_EMOJI = "\U0001f600"
_OVERRIDES: dict[type[Frame], dict[str, object]] = {
    Hello: {"token": None},  # exactly one of password / token: the longer
    Send: {"to": None, "e2e": None},
    History: {"with_": None, "around": None},
    Message: {"ts": TS, "kind": "private", "room": None, "edited": TS, "e2e": None},
    # Keys and codes are base64 and capitals: ASCII at their fixed lengths.
    KeysPut: {"sign": "A" * 44, "box": "A" * 44, "sig": "A" * 88},
    Keys: {"sign": "A" * 44, "box": "A" * 44, "sig": "A" * 88},
    Link: {"op": "answer", "code": "ABCD", "pub": "A" * 44, "mac": "A" * 44, "box": "A" * 2048},
    Ack: {"ts": TS},
    Batch: {"state": "close", "kind": "history"},
    RoomList: {
        "rooms": [{"name": "#" + "r" * 32, "members": MAX_ID, "joined": False}] * MAX_ROOMS_LISTED
    },
    Read: {"with_": None},
    Welcome: {"flood": {"rate": 1e9, "burst": MAX_ID}},
    Moderate: {"action": "ban"},  # every field may be given (text is not checked for a ban)
    Edited: {"edited": TS},
    Notice: {"ts": TS},
    Conversations: {
        "items": [
            {
                "kind": "room",
                "name": "#" + "r" * 32,
                "unread": MAX_ID,
                "read": MAX_ID,
                "cut": True,
                "last": {
                    "id": MAX_ID,
                    "ts": TS,
                    "kind": "private",
                    "text": "\x01" * MAX_PREVIEW_CHARS,
                    "from": "\x01" * 24,
                    "to": "n" * 24,
                    "ref": _EMOJI * MAX_CLIENT_ID_CHARS,
                },
            }
        ]
        * MAX_CONVERSATIONS_LISTED
    },
}


def _widest(cls: type[Frame]) -> Frame:
    kwargs: dict[str, object] = {}
    for field in dataclasses.fields(cls):
        value: object = False
        if field.name in cls.RANGES:
            value = cls.RANGES[field.name][1]
        elif field.name in cls.CHARS:
            lo, hi = cls.CHARS[field.name]
            if (lo, hi) == (1, 24):
                value = "n" * 24
            elif (lo, hi) == (2, 33):
                value = "#" + "r" * 32
            elif field.name == "password":
                value = "\x01" * hi
            else:
                value = _EMOJI * hi
            if field.name in cls.ITEMS:
                value = [value] * cls.ITEMS[field.name]
        kwargs[field.name] = value
    kwargs.update(_OVERRIDES.get(cls, {}))
    return cls(**kwargs)


@pytest.mark.parametrize("cls", _frame_types(), ids=lambda c: c.__name__)
def test_the_widest_frame_of_every_type_fits_one_line(cls):
    line = encode(_widest(cls))
    assert len(line) < MAX_LINE_BYTES


@pytest.mark.parametrize("cls", [Send, Message], ids=lambda c: c.__name__)
def test_the_widest_encrypted_message_fits_one_line(cls):
    # An envelope is printable ASCII; even all quotes (two bytes each in JSON) fit.
    frame = dataclasses.replace(
        _widest(cls), text="", room=None, to="n" * 24, e2e='"' * MAX_ENVELOPE_CHARS
    )
    assert len(encode(frame)) < MAX_LINE_BYTES


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "", "room": "#lobby", "e2e": "{}"},  # only private messages are encrypted
        {"text": "plain too", "to": "bob", "e2e": "{}"},  # the text is the envelope's
        {"text": "", "to": "bob", "e2e": "{\u00e9}"},
        {"text": "", "to": "bob", "e2e": "{\n}"},
    ],
)
def test_envelopes_are_checked(fields):
    with pytest.raises(LocalProtocolError):
        Send(id="c1", **fields)


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "link", "op": "offer", "code": "ABCD"},  # an offer needs its key and MAC
        {"type": "link", "op": "fetch", "code": "ABCD", "pub": "A" * 44},
        {"type": "link", "op": "fetch", "code": "abcd"},
        {"type": "link", "op": "steal", "code": "ABCD"},
        {"type": "keys", "nick": "bob", "sign": "A" * 44},  # all three or none
        {"type": "keys", "nick": "bob", "sign": "!" * 44, "box": "A" * 44, "sig": "A" * 88},
    ],
)
def test_key_and_link_frames_are_checked(wire):
    assert _code(wire, parse_server_frame) == ErrorCode.BAD_FRAME


def test_a_hello_with_both_password_and_token_is_still_refused_locally():
    with pytest.raises(LocalProtocolError):
        Hello(version=1, nick="al", password="p", token="t")
