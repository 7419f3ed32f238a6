# Tests for protocol/codec.py: line framing, the 64 KiB cap, UTF-8 and JSON
# errors, fragmentation. No sockets.

from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_chat.protocol import (
    MAX_LINE_BYTES,
    ErrorCode,
    Frame,
    LineDecoder,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    Search,
    Send,
    StreamError,
    decode_client_line,
    decode_server_line,
    encode,
)
from tests.budget import examples

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


@dataclass(frozen=True, slots=True)
class _Unbounded(Frame):
    """A frame with no bound on its field, which no real frame type is (see test_bounds.py)."""

    TYPE: ClassVar[str] = "unbounded"
    blob: str


def test_encode_refuses_frames_over_the_cap():
    # Every real frame type fits a line by construction, so encode's own guard
    # is exercised with a test-only type that has an unbounded field.
    with pytest.raises(LocalProtocolError) as info:
        encode(_Unbounded(blob="é" * 40_000))
    assert info.value.code == ErrorCode.LINE_TOO_LONG


def test_server_line_round_trip():
    msg = Message(
        id=7, ts="2026-11-24T10:00:00.000Z", kind="private", text="psst", from_="a", to="b"
    )
    assert decode_server_line(encode(msg)[:-1]) == msg


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow], deadline=None)
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


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow], deadline=None)
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


# --- the strict JSON parser: only RemoteProtocolError ever leaves decode -------------


def _refused(line: bytes, decode=decode_client_line) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode(line)
    return info.value


def test_lone_surrogate_in_send_text_is_bad_text_and_names_the_send():
    exc = _refused(b'{"type":"send","id":"c1","room":"#lobby","text":"x\\ud800y"}')
    assert exc.code == ErrorCode.BAD_TEXT
    assert exc.ref == "c1"


def test_lone_surrogate_in_message_text_from_a_server_is_bad_text():
    line = (
        b'{"type":"message","id":1,"ts":"' + TS.encode() + b'","kind":"public",'
        b'"room":"#a","text":"\\udc00"}'
    )
    assert _refused(line, decode_server_line).code == ErrorCode.BAD_TEXT


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"send","id":"c\\ud800","room":"#lobby","text":"x"}',
        b'{"type":"send","id":"c1","room":"#lo\\ud800","text":"x"}',
        b'{"type":"hello","version":1,"nick":"al","password":"pw\\udbff"}',
        b'{"type":"hello","version":1,"nick":"al","password":"pw","client":"\\udfff"}',
        b'{"type":"who","tag":"\\ud800"}',
        b'{"type":"search","words":"\\ud800"}',
        b'{"type":"ping","token":"\\ud800"}',
        b'{"type":"bye","reason":"\\ud800"}',
        b'{"type":"\\ud800"}',
    ],
)
def test_lone_surrogate_in_any_other_known_field_is_bad_frame(line):
    assert _refused(line).code == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"ping","future":"\\ud800"}',
        b'{"type":"ping","future":{"deeper":["ok","\\ud800"]}}',
        b'{"type":"ping","fut\\ud800ure":1}',
        b'{"type":"ping","future":[[[[{"k\\udc00":null}]]]]}',
    ],
)
def test_lone_surrogate_in_unknown_fields_nested_values_or_keys_is_refused(line):
    # Unknown fields are dropped, but a line that is not valid Unicode is refused whole.
    assert _refused(line).code == ErrorCode.BAD_FRAME
    assert _refused(line, decode_server_line).code == ErrorCode.BAD_FRAME


def test_surrogate_escapes_are_found_in_either_hex_case():
    for escape in (b"\\uD800", b"\\udBfF", b"\\uDc00", b"\\uDFFF"):
        line = b'{"type":"send","id":"c1","room":"#a","text":"' + escape + b'"}'
        assert _refused(line).code == ErrorCode.BAD_TEXT


def test_reversed_or_half_surrogate_pairs_are_refused():
    for text in (b"\\ude00\\ud83d", b"\\ud83d", b"\\ud83dx\\ude00", b"\\ud83d\\ud83d"):
        line = b'{"type":"send","id":"c1","room":"#a","text":"' + text + b'"}'
        assert _refused(line).code == ErrorCode.BAD_TEXT


def test_an_escaped_surrogate_pair_is_one_character_and_accepted():
    frame = decode_client_line(b'{"type":"send","id":"c1","room":"#a","text":"\\ud83d\\ude00"}')
    assert frame.text == "\U0001f600"  # type: ignore[attr-defined]


def test_an_escaped_backslash_before_u_is_text_not_a_surrogate():
    frame = decode_client_line(b'{"type":"send","id":"c1","room":"#a","text":"\\\\ud800"}')
    assert frame.text == "\\ud800"  # type: ignore[attr-defined]


def test_raw_utf8_encoded_surrogates_are_bad_utf8():
    # CESU-style bytes for U+D800: Python's UTF-8 decoder refuses them.
    assert _refused(b'{"type":"ping","token":"\xed\xa0\x80"}').code == ErrorCode.BAD_UTF8


def test_a_frame_built_locally_with_a_surrogate_is_refused_when_built_as_a_local_error():
    # Refused where it is built (the caller's thread), not when an I/O thread
    # encodes it: text read with surrogateescape once killed the client's I/O.
    with pytest.raises(LocalProtocolError) as text:
        Send(id="c1", text="x\udcff", room="#a")
    assert text.value.code == ErrorCode.BAD_TEXT and "not valid Unicode" in text.value.message
    with pytest.raises(LocalProtocolError) as other:
        Search(words="caf\udce9")
    assert other.value.code == ErrorCode.BAD_FRAME and "'words'" in other.value.message


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_bad_json(literal):
    for line in (
        b'{"type":"history","room":"#a","limit":' + literal + b"}",
        b'{"type":"ping","future":[' + literal + b"]}",
    ):
        assert _refused(line).code == ErrorCode.BAD_JSON
        assert _refused(line, decode_server_line).code == ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"history","room":"#a","limit":' + b"9" * 5000 + b"}",
        b'{"type":"history","room":"#a","before":' + b"9" * 5000 + b"}",
        b'{"type":"hello","version":1,"nick":"al","password":"p","last_seen":' + b"1" * 5000 + b"}",
        b'{"type":"hello","version":' + b"-" + b"1" * 5000 + b',"nick":"al","password":"p"}',
        b'{"type":"ping","future":' + b"7" * 20 + b"}",
    ],
)
def test_huge_integer_literals_are_bad_frame_not_a_traceback(line):
    # json.loads would raise ValueError (Python's int-string limit) past 4300 digits.
    assert _refused(line).code == ErrorCode.BAD_FRAME


def test_integer_literals_up_to_19_digits_parse():
    frame = decode_client_line(b'{"type":"history","room":"#a","before":9223372036854775807}')
    assert frame.before == 2**63 - 1  # type: ignore[attr-defined]


def test_a_float_that_overflows_to_infinity_is_bad_frame():
    assert _refused(b'{"type":"ping","future":1e999}').code == ErrorCode.BAD_FRAME
    assert _refused(b'{"type":"ping","future":-1E400}').code == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"ping","token":"a","token":"b"}',
        b'{"type":"ping","type":"ping"}',
        b'{"type":"ping","future":{"k":1,"k":2}}',
    ],
)
def test_duplicate_keys_are_bad_json(line):
    # Two parsers could pick different values for the key: refuse instead of guessing.
    assert _refused(line).code == ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 60_000,
        b"{" * 60_000,
        b'{"type":"ping","future":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"type":"ping","future":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}",
    ],
)
def test_deep_nesting_is_bad_json(line):
    assert _refused(line).code == ErrorCode.BAD_JSON
    assert _refused(line, decode_server_line).code == ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    "line",
    [b"", b" ", b"\xff", b"\x00", b"{}", b"null", b"1", b"1e999", b"-", b'"\\ud800"', b"{}{}"],
)
def test_odd_lines_are_remote_protocol_errors(line):
    _refused(line)
    _refused(line, decode_server_line)
