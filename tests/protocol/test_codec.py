# Tests for protocol/codec.py: line framing, the 64 KiB cap, UTF-8 and JSON
# errors, fragmentation. No sockets.

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_LINE_BYTES,
    ErrorCode,
    LineDecoder,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    RoomList,
    Send,
    StreamError,
    decode_client_line,
    decode_server_line,
    encode,
)

TS = "2026-11-24T09:30:00.000Z"


def test_encode_is_one_terminated_line_of_utf8_json():
    data = encode(Send(id="a", text="héllo ✓", room="#lobby"))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert "héllo ✓".encode() in data


def test_newlines_inside_text_are_escaped_so_frames_stay_one_line():
    data = encode(Send(id="a", text="one\ntwo", room="#lobby"))
    assert data.count(b"\n") == 1


def test_decoder_handles_whole_split_and_merged_frames_identically():
    frames = [encode(Send(id=str(i), text=f"m{i}", room="#lobby")) for i in range(3)]
    stream = b"".join(frames)
    whole = LineDecoder().feed(stream)
    bytewise = []
    dec = LineDecoder()
    for i in range(len(stream)):
        bytewise += dec.feed(stream[i : i + 1])
    assert whole == bytewise == [f[:-1] for f in frames]


def test_crlf_and_blank_lines():
    dec = LineDecoder()
    assert dec.feed(b'{"type":"ping"}\r\n\n\r\n{"type":"pong"}\n') == [
        b'{"type":"ping"}',
        b'{"type":"pong"}',
    ]


def test_partial_line_over_the_cap_fails_before_its_newline():
    dec = LineDecoder(max_line=1024)
    dec.feed(b"a" * 1000)
    with pytest.raises(StreamError) as info:
        dec.feed(b"a" * 100)
    assert info.value.code == ErrorCode.LINE_TOO_LONG


def test_complete_line_over_the_cap_fails():
    with pytest.raises(StreamError):
        LineDecoder(max_line=1024).feed(b"a" * 2000 + b"\n")


def test_line_exactly_at_the_cap_passes():
    assert LineDecoder(max_line=1024).feed(b"a" * 1024 + b"\n") == [b"a" * 1024]


def test_default_cap_is_64_kib():
    assert MAX_LINE_BYTES == 65536
    dec = LineDecoder()
    with pytest.raises(StreamError):
        dec.feed(b"x" * (MAX_LINE_BYTES + 1))


def test_invalid_utf8_and_json():
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_line(b'{"type":"send","text":"hi\xaa"}')
    assert info.value.code == ErrorCode.BAD_UTF8
    for junk in (b"{", b"[]", b'"x"', b"nul", b"[" * 100_000):
        with pytest.raises(RemoteProtocolError) as info:
            decode_client_line(junk)
        assert info.value.code == ErrorCode.BAD_JSON


def test_encode_refuses_frames_over_the_cap():
    # Every field is bounded, but a list of the most entries, each as long as
    # allowed, still adds up to more than one line: encode is the last guard.
    entry = {"name": "#" + "r" * 32, "members": 2**63 - 1, "joined": False}
    with pytest.raises(LocalProtocolError) as info:
        encode(RoomList(rooms=[entry] * 1000))
    assert info.value.code == ErrorCode.LINE_TOO_LONG


def test_server_line_round_trip():
    msg = Message(
        id=7, ts="2026-11-24T10:00:00.000Z", kind="private", text="psst", from_="a", to="b"
    )
    assert decode_server_line(encode(msg)[:-1]) == msg


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(data):
    dec = LineDecoder(max_line=1024)
    try:
        lines = dec.feed(data)
    except StreamError:
        return
    for line in lines:
        try:
            decode_client_line(line)
        except RemoteProtocolError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["hello", "send", "join", "history", "search", "who", "bye", "x"]
            )
        },
        optional={
            k: json_values
            for k in (
                "id",
                "text",
                "room",
                "to",
                "nick",
                "password",
                "version",
                "limit",
                "before",
                "with",
                "words",
            )
        },
    )
)
def test_structured_junk_only_ever_raises_remote_protocol_errors(obj):
    import json

    try:
        decode_client_line(json.dumps(obj).encode())
    except RemoteProtocolError:
        pass
