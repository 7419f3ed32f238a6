# Tests for protocol/frames.py: frames validate themselves; parsing maps peer
# mistakes to RemoteProtocolError with stable codes. No sockets.

import pytest

from parley_chat.protocol import (
    Ack,
    Batch,
    ErrorCode,
    Hello,
    History,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    Send,
    parse_client_frame,
    parse_server_frame,
)

TS = "2026-11-24T09:30:00.000Z"


def test_send_round_trips_through_wire_dict():
    frame = Send(id="c1", text="hello\n\tworld", room="#lobby")
    assert parse_client_frame(frame.to_wire()) == frame


def test_optional_none_fields_are_left_out_of_the_wire_form():
    assert Send(id="c1", text="hi", to="bob").to_wire() == {
        "type": "send",
        "id": "c1",
        "text": "hi",
        "to": "bob",
    }


def test_python_keyword_fields_use_wire_names():
    history = parse_client_frame({"type": "history", "with": "bob", "limit": 10})
    assert isinstance(history, History)
    assert history.with_ == "bob"
    assert history.to_wire()["with"] == "bob"
    msg = Message(id=1, ts=TS, kind="public", text="x", from_="al", room="#lobby")
    assert msg.to_wire()["from"] == "al"
    assert parse_server_frame(msg.to_wire()) == msg


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"type": "nope"}, ErrorCode.UNKNOWN_TYPE),
        ({"text": "no type"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": 5}, ErrorCode.UNKNOWN_TYPE),
        ({"type": "send", "id": "a", "room": "#lobby"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "a", "text": 5, "room": "#lobby"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "a", "text": "x"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "a", "text": "x", "room": "#a", "to": "b"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "a", "text": "x", "room": "lobby"}, ErrorCode.BAD_ROOM),
        ({"type": "send", "id": "a", "text": "x", "to": "bad nick"}, ErrorCode.BAD_NICK),
        ({"type": "send", "id": "a", "text": "bell\x07", "room": "#a"}, ErrorCode.BAD_TEXT),
        ({"type": "send", "id": "a", "text": "esc\x1b[2J", "room": "#a"}, ErrorCode.BAD_TEXT),
        ({"type": "send", "id": "a", "text": "c1\x9b", "room": "#a"}, ErrorCode.BAD_TEXT),
        ({"type": "send", "id": "a", "text": "   ", "room": "#a"}, ErrorCode.BAD_TEXT),
        ({"type": "send", "id": "", "text": "x", "room": "#a"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "x" * 65, "text": "x", "room": "#a"}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "a", "text": "x" * 16_001, "room": "#a"}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "hello", "version": 1, "nick": "al"}, ErrorCode.BAD_FRAME),
        (
            {"type": "hello", "version": 1, "nick": "al", "password": "p", "token": "t"},
            ErrorCode.BAD_FRAME,
        ),
        (
            {"type": "hello", "version": 1, "nick": "\u0410lice", "password": "p"},
            ErrorCode.BAD_NICK,
        ),
        ({"type": "hello", "version": 1, "nick": "x" * 25, "password": "p"}, ErrorCode.BAD_NICK),
        ({"type": "hello", "version": True, "nick": "al", "password": "p"}, ErrorCode.BAD_FRAME),
        ({"type": "history", "room": "#a", "limit": 201}, ErrorCode.BAD_FRAME),
        ({"type": "history", "room": "#a", "before": 0}, ErrorCode.BAD_FRAME),
        ({"type": "search", "words": ""}, ErrorCode.BAD_FRAME),
        ({"type": "welcome", "version": 1}, ErrorCode.UNKNOWN_TYPE),
    ],
)
def test_invalid_client_frames_get_stable_codes(obj, code):
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_frame(obj)
    assert info.value.code == code


def test_error_carries_the_send_id_as_ref():
    with pytest.raises(RemoteProtocolError) as info:
        parse_client_frame({"type": "send", "id": "c42", "text": "\x00", "room": "#a"})
    assert info.value.ref == "c42"


def test_non_object_json_is_bad_json():
    for value in ([], "x", 3, None):
        with pytest.raises(RemoteProtocolError) as info:
            parse_client_frame(value)
        assert info.value.code == ErrorCode.BAD_JSON


def test_newline_and_tab_are_allowed_in_text():
    assert Send(id="a", text="line1\nline2\tcol", room="#a").text == "line1\nline2\tcol"


def test_building_an_invalid_frame_locally_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        Send(id="a", text="", room="#lobby")
    with pytest.raises(LocalProtocolError):
        Batch(state="half", kind="replay")
    with pytest.raises(LocalProtocolError):
        Message(id=1, ts=TS, kind="shout", text="x", room="#a")


def test_unknown_extra_keys_are_ignored_for_forward_compatibility():
    frame = parse_client_frame({"type": "ping", "token": "x", "future": [1, 2]})
    assert frame.to_wire() == {"type": "ping", "token": "x"}


def test_hello_defaults():
    hello = parse_client_frame({"type": "hello", "version": 1, "nick": "al", "password": "pw"})
    assert isinstance(hello, Hello)
    assert hello.register is False and hello.last_seen is None


def test_server_frames_are_not_accepted_from_clients_and_vice_versa():
    with pytest.raises(RemoteProtocolError):
        parse_client_frame(Ack(ref="a", id=1, ts=TS).to_wire())
    with pytest.raises(RemoteProtocolError):
        parse_server_frame(Send(id="a", text="x", room="#a").to_wire())


# --- conversations, read markers, history around, welcome.flood (issue 10) -----------------

_LAST = {"id": 7, "ts": TS, "kind": "private", "text": "hi", "from": "bob", "to": "alice"}


_BAD_TS = {**_LAST, "ts": "yesterday"}
_TOO_LONG = {**_LAST, "text": "x" * 201}  # past the preview's 200 characters


def _conversations(*items: dict) -> dict:
    return {"type": "conversations", "items": list(items)}


def test_conversation_entries_are_checked_rebuilt_and_round_trip():
    frame = parse_server_frame(
        _conversations(
            {"kind": "room", "name": "#lobby", "last": None, "unread": 0, "read": 0, "x": 1},
            {"kind": "private", "name": "bob", "last": {**_LAST, "y": 2}, "unread": 2, "read": 5},
        )
    )
    assert frame.items == [  # type: ignore[attr-defined]
        {"kind": "room", "name": "#lobby", "last": None, "unread": 0, "read": 0},
        {"kind": "private", "name": "bob", "last": _LAST, "unread": 2, "read": 5},
    ]
    assert parse_server_frame(frame.to_wire()) == frame


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "channel", "name": "#lobby", "last": None, "unread": 0, "read": 0},
        {"kind": "room", "name": "bob", "last": None, "unread": 0, "read": 0},  # not a room
        {"kind": "private", "name": "#lobby", "last": None, "unread": 0, "read": 0},
        {"kind": "room", "name": "#lobby", "last": None, "unread": -1, "read": 0},
        {"kind": "room", "name": "#lobby", "last": None, "unread": True, "read": 0},
        {"kind": "room", "name": "#lobby", "last": None, "unread": 0},
        {"kind": "room", "name": "#lobby", "last": "hi", "unread": 0, "read": 0},
        {"kind": "room", "name": "#lobby", "last": None, "unread": 0, "read": 0, "cut": 1},
        {"kind": "private", "name": "bob", "last": _BAD_TS, "unread": 0, "read": 0},
        {"kind": "private", "name": "bob", "last": _TOO_LONG, "unread": 0, "read": 0},
        "not an object",
    ],
)
def test_bad_conversation_entries_are_bad_frames(entry):
    with pytest.raises(RemoteProtocolError) as info:
        parse_server_frame(_conversations(entry))
    assert info.value.code == ErrorCode.BAD_FRAME


def test_read_needs_exactly_one_target_and_a_positive_id():
    assert parse_client_frame({"type": "read", "with": "bob", "id": 3}).with_ == "bob"  # type: ignore[attr-defined]
    for bad in (
        {"type": "read", "id": 3},
        {"type": "read", "room": "#a", "with": "bob", "id": 3},
        {"type": "read", "room": "#a", "id": 0},
        {"type": "read", "room": "#a", "id": "3"},
        {"type": "read", "room": "#a"},
    ):
        with pytest.raises(RemoteProtocolError) as info:
            parse_client_frame(bad)
        assert info.value.code == ErrorCode.BAD_FRAME, bad


def test_history_takes_before_or_around_not_both():
    around = parse_client_frame({"type": "history", "room": "#a", "around": 9})
    assert around.around == 9 and around.before is None  # type: ignore[attr-defined]
    with pytest.raises(RemoteProtocolError):
        parse_client_frame({"type": "history", "room": "#a", "around": 9, "before": 3})


@pytest.mark.parametrize(
    "flood",
    [{"rate": 0, "burst": 1}, {"rate": 5.0, "burst": 0}, {"rate": "5", "burst": 1}, {"rate": 5}],
)
def test_welcome_flood_is_a_positive_rate_and_burst(flood):
    welcome = {"type": "welcome", "version": 1, "nick": "al", "token": "t", "rooms": []}
    welcome["server"] = "p"
    ok = parse_server_frame({**welcome, "flood": {"rate": 5, "burst": 10, "extra": 1}})
    assert ok.flood == {"rate": 5.0, "burst": 10}  # type: ignore[attr-defined]
    with pytest.raises(RemoteProtocolError):
        parse_server_frame({**welcome, "flood": flood})


def test_what_a_person_types_too_long_is_said_in_words_not_field_names():
    from parley_chat.protocol import LocalProtocolError, Search
    from parley_chat.protocol.moderation import Moderate

    with pytest.raises(LocalProtocolError, match=r"search words are 1 to 200 characters$"):
        Search(words="w" * 201)
    with pytest.raises(LocalProtocolError, match=r"a reason is at most 200 characters$"):
        Moderate(action="kick", room="#a", nick="bob", reason="r" * 201)
