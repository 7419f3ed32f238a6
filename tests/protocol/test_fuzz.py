# Property-based fuzzing of the decoders (hypothesis): for every frame type,
# each direction, lines built from the frame's own fields holding a mix of
# valid values and junk (wrong types, huge and negative numbers, NaN, lone
# surrogates, control characters, deep nesting, duplicate keys, unknown
# fields), and raw or mutated bytes. Whatever the line:
#
# * decode raises nothing but RemoteProtocolError, and the error it raises can
#   itself be sent back (the server answers with exactly that code/message/ref);
# * a frame it returns re-encodes to a line under MAX_LINE_BYTES, every string
#   in it encodes to UTF-8, and the re-encoded line decodes to the same frame.
#
# Sized for CI: 100 examples per frame type and direction (tests/budget.py; the
# deep profile, `make fuzz-deep`, draws 30 times as many). bench/fuzz_protocol.py
# (atheris, `make fuzz`) runs the same invariants for as long as you like.

from __future__ import annotations

import base64
import dataclasses
import functools
import itertools
import json
import math
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_chat.protocol import (
    CLIENT_FRAMES,
    MAX_ID,
    MAX_LINE_BYTES,
    MAX_PAGE,
    MAX_TEXT_CHARS,
    MAX_VERSION,
    SERVER_FRAMES,
    Error,
    ErrorCode,
    Frame,
    LineDecoder,
    RemoteProtocolError,
    StreamError,
    decode_client_line,
    decode_server_line,
    encode,
    format_ts,
    has_surrogate,
)
from tests.budget import examples
from tests.fuzzjson import Pairs, Raw, dump

FUZZ = settings(
    max_examples=examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

# --- junk ---------------------------------------------------------------------------

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
CONTROL = st.characters(max_codepoint=0x9F, categories=["Cc"])
CLEAN_CHAR = st.characters(exclude_categories=["Cc", "Cs"])

# Random strings are kept short (hypothesis draws them a character at a time,
# which is what makes examples slow); the long ones, at and past each cap,
# and the awkward ones are picked from lists instead.
AWKWARD = [
    "",
    " ",
    "#lobby",
    "lobby",
    "alice",
    "a b",
    "2026-11-24T09:30:00.123Z",
    "\ud800",
    "a\udfffb",
    "\ude00\ud83d",
    "\x00",
    "a\nb",
    "\x1b[2J",
    "\x9b",
    "\u2028",
    "\ufeff",
    "\U0001f600",
]
PAST_CAPS = [c * n for n in (25, 33, 34, 65, 101, 129, 201, 1025, 16_001) for c in "x\U0001f600"]


def pick(values: list[str]) -> st.SearchStrategy[str]:
    """sampled_from, but with a short repr (a failure report would print every value)."""
    return st.sampled_from(range(len(values))).map(values.__getitem__)


junk_text = st.one_of(
    st.text(max_size=6),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=3), SURROGATE, st.text(max_size=3)),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=3), CONTROL, st.text(max_size=3)),
    pick(AWKWARD),
    pick(PAST_CAPS),
)
junk_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, MAX_ID, MAX_ID + 1, 2**64, -(2**63) - 1, MAX_PAGE + 1]),
    st.floats(),  # NaN and +-Infinity are written as json.dumps writes them
    st.sampled_from(
        [
            Raw("9" * 5000),
            Raw("-" + "1" * 4400),
            Raw("1" * 20),
            Raw("1e999"),
            Raw("-1E400"),
            Raw("-0"),
            Raw("1.0"),
            Raw("1e2"),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
        ]
    ),
)
deep = st.integers(1, 3000).map(lambda n: Raw("[" * n + "]" * n))
leaf = st.one_of(st.none(), st.booleans(), junk_number, junk_text)
# At most two levels of containers, not st.recursive: as varied where it matters (wrong
# types, nesting, duplicate keys) and several times cheaper to draw.
shallow = st.one_of(st.lists(leaf, max_size=3), st.dictionaries(junk_text, leaf, max_size=3), deep)
junk = st.one_of(
    leaf,
    shallow,
    st.builds(lambda k, a, b: Pairs(((k, a), (k, b))), junk_text, leaf, shallow),
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value three times in four, junk otherwise."""
    return st.one_of(valid, valid, valid, junk)


# --- valid values, field by field -----------------------------------------------------


def clean(min_size: int, max_size: int, chars: Any = None) -> st.SearchStrategy[str]:
    """Valid strings of *min_size* to *max_size* characters: short random ones, or at the cap."""
    chars = CLEAN_CHAR if chars is None else chars
    fill = "\U0001f600" if chars is CLEAN_CHAR else "x"
    short = st.text(chars, min_size=min_size, max_size=min(max_size, 8))
    return st.one_of(short, short, short, st.just(max_size).map(lambda n: fill * n))


def label(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """A one-line field: no control characters, no surrogates."""
    return clean(min_size, max_size)


NAME_CHARS = "abcxyzABCXYZ0189_-"
NICK = clean(1, 24, NAME_CHARS)
ROOM = clean(1, 32, NAME_CHARS).map(lambda name: "#" + name)
IDS = st.one_of(st.integers(0, MAX_ID), st.sampled_from([0, 1, MAX_ID]))
TEXT = st.one_of(
    st.text(st.one_of(CLEAN_CHAR, st.sampled_from("\n\t")), min_size=1, max_size=8).filter(
        str.strip
    ),
    st.just(MAX_TEXT_CHARS // 3).map(lambda n: "\U0001f600\n\t" * n),
)
TS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)).map(format_ts)
TAG = label(0, 64)
CLIENT_ID = label(1, 64)
KEY = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
SIG = st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode())
LINK_CODE = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=4, max_size=4)
PAGE = {"before": st.integers(1, MAX_ID), "limit": st.integers(1, MAX_PAGE), "tag": TAG}

CLIENT_VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "hello": {
        "version": st.one_of(st.just(1), st.integers(0, MAX_VERSION)),
        "nick": NICK,
        "password": clean(1, 1024, st.characters(exclude_categories=["Cs"])),
        "token": label(1, 60),
        "register": st.booleans(),
        "last_seen": IDS,
        "client": label(0, 100),
    },
    "send": {"id": CLIENT_ID, "text": TEXT, "room": ROOM, "to": NICK},
    "join": {"room": ROOM},
    "leave": {"room": ROOM},
    "who": {"room": ROOM, "tag": TAG},
    "rooms": {"tag": TAG},
    "history": {"room": ROOM, "with": NICK, **PAGE},
    "conversations": {"tag": TAG},
    "read": {"id": st.integers(1, MAX_ID), "room": ROOM, "with": NICK},
    "search": {"words": label(1, 200).filter(str.strip), **PAGE},
    "ping": {"token": label(0, 128)},
    "pong": {"token": label(0, 128)},
    "bye": {"reason": label(0, 200)},
    # Moderation (protocol/moderation.py): actions that need only a room, so that a
    # well-formed line with any subset of the other fields is valid.
    "moderate": {
        "action": st.sampled_from(["private", "public", "topic"]),
        "room": ROOM,
        "nick": NICK,
        "id": st.integers(1, MAX_ID),
        "text": label(0, 300),
        "reason": label(0, 200),
        "ref": CLIENT_ID,
    },
    "keys_put": {"sign": KEY, "box": KEY, "sig": SIG, "replace": st.booleans()},
    "keys_get": {"nick": NICK, "tag": TAG},
    # A fetch: the other ops need fields together (their rules: test_bounds.py).
    "link": {"op": st.just("fetch"), "code": LINK_CODE},
}
SERVER_VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "welcome": {
        "version": st.integers(0, MAX_VERSION),
        "nick": NICK,
        "token": label(1, 128),
        "rooms": st.lists(ROOM, max_size=3),
        "server": label(0, 100),
        "created": st.booleans(),
        "session": IDS,
        "max_text": st.integers(1, MAX_TEXT_CHARS),
        "flood": st.fixed_dictionaries(
            {
                "rate": st.one_of(st.floats(0.01, 1e6), st.integers(1, 1000)),
                "burst": st.integers(1, MAX_ID),
            }
        ),
    },
    "message": {
        "id": IDS,
        "ts": TS,
        "kind": st.sampled_from(["public", "private", "system"]),
        "text": TEXT,
        "from": NICK,
        "room": ROOM,
        "to": NICK,
        "ref": CLIENT_ID,
        "edited": TS,
    },
    "ack": {"ref": CLIENT_ID, "id": IDS, "ts": TS, "duplicate": st.booleans()},
    "batch": {
        "state": st.sampled_from(["open", "close"]),
        "kind": st.sampled_from(["replay", "history", "search"]),
        "tag": TAG,
        "target": label(0, 64),
        "gap": st.booleans(),
        "more": st.booleans(),
        "count": IDS,
    },
    "presence": {
        "room": ROOM,
        "online": st.lists(NICK, max_size=3),
        "joined": NICK,
        "left": NICK,
        "tag": TAG,
    },
    "rooms": {
        "rooms": st.lists(
            st.fixed_dictionaries(
                {"name": ROOM, "members": st.integers(0, MAX_ID), "joined": st.booleans()}
            ),
            max_size=3,
        ),
        "tag": TAG,
    },
    "conversations": {
        "items": st.lists(
            st.fixed_dictionaries(
                {
                    "kind": st.just("private"),
                    "name": NICK,
                    "last": st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {
                                "id": IDS,
                                "ts": TS,
                                "kind": st.just("private"),
                                "text": st.text(CLEAN_CHAR, min_size=1, max_size=8),
                                "from": NICK,
                                "to": NICK,
                            }
                        ),
                    ),
                    "unread": IDS,
                    "read": IDS,
                },
                optional={"cut": st.booleans()},
            ),
            max_size=3,
        ),
        "tag": TAG,
        "more": st.booleans(),
    },
    "read": {"id": st.integers(1, MAX_ID), "room": ROOM, "with": NICK},
    "error": {
        "code": st.one_of(st.sampled_from(list(ErrorCode)).map(str), label(1, 64)),
        # Cleaned and cut when too long, never refused.
        "message": st.one_of(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
            pick([t for t in AWKWARD + PAST_CAPS if not has_surrogate(t)]),
        ),
        "ref": CLIENT_ID,
    },
    "ping": {"token": label(0, 128)},
    "pong": {"token": label(0, 128)},
    # Moderation (protocol/moderation.py).
    "moderated": {"action": label(1, 16), "message": label(0, 500), "ref": CLIENT_ID},
    "roominfo": {
        "room": ROOM,
        "private": st.booleans(),
        "topic": label(0, 300),
        "owner": NICK,
        "moderators": st.lists(NICK, max_size=3),
        "operators": st.lists(NICK, max_size=3),
        "tag": TAG,
    },
    "deleted": {"id": st.integers(1, MAX_ID), "room": ROOM, "by": NICK},
    "edited": {"id": st.integers(1, MAX_ID), "text": TEXT, "edited": TS, "room": ROOM},
    "notice": {"text": TEXT, "ts": TS, "kind": label(1, 16), "from": NICK, "room": ROOM},
    "keys": {"nick": NICK, "tag": TAG},
    "link": {"op": st.just("fetch"), "code": LINK_CODE},
}
#: Fields of which a valid frame has exactly one.
EXCLUSIVE = {
    "hello": ("password", "token"),
    "send": ("room", "to"),
    "history": ("room", "with"),
    "read": ("room", "with"),
    "message": ("room", "to"),
    "moderate": ("room",),  # the actions drawn need a room
}


def _required(cls: type[Frame]) -> set[str]:
    return {
        cls.WIRE_NAMES.get(f.name, f.name)
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
    }


# Strategies are built once per frame type and kept: hypothesis works out
# properties of every new strategy object, which for these trees costs more
# than drawing from them, so building them inside each draw made the file slow.
_MANGLE = st.integers(0, 9)  # 0: leave a field out, 1: repeat a key
# Write non-ASCII as escapes three times in four: written raw, a surrogate
# makes the whole line bad UTF-8, and the fields behind it go untested.
_ASCII = st.sampled_from([True, True, True, False])


@functools.cache
def fuzzed_line(cls: type[Frame], direction: str) -> st.SearchStrategy[bytes]:
    """Lines for a *cls* frame: its fields mostly valid, some junk, some missing or extra."""
    values = (CLIENT_VALUES if direction == "client" else SERVER_VALUES)[cls.TYPE]
    required = _required(cls)
    fields = st.fixed_dictionaries(
        {k: mostly(v) for k, v in values.items() if k in required},
        optional={
            **{k: mostly(v) for k, v in values.items() if k not in required},
            "future": junk,  # an unknown field: dropped if the frame is accepted
        },
    )
    kind = mostly(st.just(cls.TYPE))

    @st.composite
    def line(draw: st.DrawFn) -> bytes:
        items = [("type", draw(kind)), *draw(fields).items()]
        mangle = draw(_MANGLE)
        if mangle < 2:  # each draw costs, so one draw picks the field for either case
            at = draw(st.integers(0, len(items) - 1))
            if mangle == 0:
                del items[at]
            else:
                items.append((items[at][0], draw(junk)))
        text = dump(Pairs(tuple(items)), ascii_only=draw(_ASCII))
        # Raw surrogates (ascii_only=False) come out as CESU-style bytes: bad UTF-8.
        return text.encode("utf-8", "surrogatepass")

    return line()


@functools.cache
def valid_line(cls: type[Frame], direction: str) -> st.SearchStrategy[bytes]:
    """Lines for well-formed *cls* frames."""
    values = (CLIENT_VALUES if direction == "client" else SERVER_VALUES)[cls.TYPE]
    required = _required(cls)
    choices = EXCLUSIVE.get(cls.TYPE, (None,))
    variants = []
    for chosen in choices:  # one dictionary strategy per member of the exclusive group
        optional = {
            k: v
            for k, v in values.items()
            if k not in required and k not in choices and k != chosen
        }
        mandatory = {k: v for k, v in values.items() if k in required or k == chosen}
        variants.append(st.fixed_dictionaries(mandatory, optional=optional))
    return st.tuples(st.one_of(variants), _ASCII).map(
        lambda pair: json.dumps({"type": cls.TYPE, **pair[0]}, ensure_ascii=pair[1]).encode()
    )


# --- the invariants -----------------------------------------------------------------


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def check_decodes_cleanly(decode, line: bytes) -> Frame | None:
    """Decode *line*; assert the invariants at the top of this file. The frame, or None."""
    try:
        frame = decode(line)
    except RemoteProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        encode(Error(code=exc.code, message=exc.message, ref=exc.ref))
        return None
    wire = frame.to_wire()
    for text in _strings(wire):
        text.encode("utf-8")
    for number in (v for v in wire.values() if isinstance(v, float)):
        assert math.isfinite(number)
    out = encode(frame)
    assert len(out) < MAX_LINE_BYTES
    assert decode(out[:-1]) == frame
    return frame


def _types(table: dict[str, type[Frame]]) -> list[type[Frame]]:
    return list(table.values())


# --- one fuzz test per frame type, each direction ----------------------------------------


@pytest.mark.parametrize("cls", _types(CLIENT_FRAMES), ids=lambda c: c.TYPE)
@FUZZ
@given(data=st.data())
def test_fuzzed_client_frames_only_raise_protocol_errors_and_accepted_ones_round_trip(cls, data):
    check_decodes_cleanly(decode_client_line, data.draw(fuzzed_line(cls, "client")))


@pytest.mark.parametrize("cls", _types(SERVER_FRAMES), ids=lambda c: c.TYPE)
@FUZZ
@given(data=st.data())
def test_fuzzed_server_frames_only_raise_protocol_errors_and_accepted_ones_round_trip(cls, data):
    check_decodes_cleanly(decode_server_line, data.draw(fuzzed_line(cls, "server")))


# The fuzz strategies are only worth something if their valid half is valid:
# these check that it is, and exercise the accepted-frame invariants on every example.


@pytest.mark.parametrize("cls", _types(CLIENT_FRAMES), ids=lambda c: c.TYPE)
@settings(FUZZ, max_examples=examples(30))
@given(data=st.data())
def test_well_formed_client_frames_are_accepted_and_round_trip(cls, data):
    line = data.draw(valid_line(cls, "client"))
    assert isinstance(check_decodes_cleanly(decode_client_line, line), cls)


@pytest.mark.parametrize("cls", _types(SERVER_FRAMES), ids=lambda c: c.TYPE)
@settings(FUZZ, max_examples=examples(30))
@given(data=st.data())
def test_well_formed_server_frames_are_accepted_and_round_trip(cls, data):
    line = data.draw(valid_line(cls, "server"))
    assert isinstance(check_decodes_cleanly(decode_server_line, line), cls)


# --- raw and mutated bytes -------------------------------------------------------------

SEED_LINES = [
    b'{"type":"hello","version":1,"nick":"alice","password":"pw","register":true,"last_seen":7}',
    b'{"type":"send","id":"c1","room":"#lobby","text":"hi \\ud83d\\ude00\\n"}',
    b'{"type":"history","room":"#lobby","before":100,"limit":50,"tag":"h"}',
    b'{"type":"message","id":2,"ts":"2026-11-24T09:30:00.123Z","kind":"public",'
    b'"text":"hi","from":"al","room":"#a","ref":"c1"}',
    b'{"type":"rooms","rooms":[{"name":"#a","members":2,"joined":true}],"tag":"r"}',
]
INSERTS = [
    b'"',
    b"\\",
    b"\\ud800",
    b"\\u0000",
    b"NaN",
    b"1e999",
    b"9" * 25,
    b"{",
    b"[",
    b"]",
    b",",
    b":",
    b"\xff",
    b"\xed\xa0\x80",
    b"\x00",
    b"\n",
]


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    line = bytearray(draw(st.sampled_from(SEED_LINES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            line[at:at] = draw(st.one_of(st.sampled_from(INSERTS), st.binary(max_size=3)))
        elif choice == 1:
            del line[at : at + draw(st.integers(1, 8))]
        else:
            line[at : at + 1] = draw(st.binary(min_size=1, max_size=1))
    return bytes(line)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_cleanly_either_way(line):
    check_decodes_cleanly(decode_client_line, line)
    check_decodes_cleanly(decode_server_line, line)


@FUZZ
@given(mutated_line())
def test_mutated_valid_lines_decode_cleanly_either_way(line):
    check_decodes_cleanly(decode_client_line, line)
    check_decodes_cleanly(decode_server_line, line)


@FUZZ
@given(
    st.lists(
        st.one_of(st.binary(max_size=80), st.sampled_from(SEED_LINES)), min_size=1, max_size=6
    ),
    st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=6, max_size=6),
    st.lists(st.integers(0, 1000), max_size=5),
)
def test_line_decoder_gives_the_same_lines_in_any_chunks_and_only_stream_errors(parts, ends, cuts):
    stream = b"".join(p + e for p, e in zip(parts, ends, strict=False))

    def run(chunks: list[bytes]) -> list[bytes] | None:
        decoder = LineDecoder(max_line=128)
        lines: list[bytes] = []
        try:
            for chunk in chunks:
                lines += decoder.feed(chunk)
        except StreamError:
            return None
        return lines

    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunked = [stream[a:b] for a, b in itertools.pairwise(points)]
    whole = run([stream])
    assert run(chunked) == whole
    for line in whole or ():
        check_decodes_cleanly(decode_client_line, line)
        check_decodes_cleanly(decode_server_line, line)
