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
