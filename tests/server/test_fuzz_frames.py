# A live-server fuzz test: a few hundred mutated frames of every client type,
# from seeded (so repeatable) random mutations of valid frames, sent over real
# TLS to a real server, over a handful of connections, some logged in and some
# not. Black-box: only the wire protocol and the public fixtures are used, so
# the test holds whatever the server's I/O core looks like inside.
#
# What must hold throughout:
# * the server never answers `internal` (a handler failed on some input);
# * it never closes a connection without first sending an `error` frame that
#   says why, except after a `bye`;
# * every frame it sends decodes with the protocol package (nothing it builds
#   from hostile input breaks the protocol's own bounds);
# * nothing is logged at ERROR or with a traceback by the `parley` loggers;
# * an innocent second user, sending all along, gets every message acked.
#
# After each fuzzed line the test sends a `ping` with a fresh token and reads
# until the matching `pong` (or the close): the server handles one
# connection's frames in order, so that pong marks the end of the answer to
# the fuzzed line. Every wait has a deadline.

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest

from parley_chat.protocol import (
    MAX_LINE_BYTES,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Ping,
    Pong,
    RemoteProtocolError,
    Send,
    decode_client_line,
    encode,
)
from tests.fuzzjson import Pairs, Raw, dump
from tests.support import RawClient

SEED = 20261124
FRAMES = 600  # fuzzed lines in all
LOGGED_IN = 3  # connections logged in as the fuzzing account
ANONYMOUS = 3  # connections that never sent a good hello
INNOCENT_EVERY = 15  # the innocent user sends once per this many fuzzed lines
BUDGET = 25.0  # seconds: stop fuzzing (and say so) past this
REPLY_TIMEOUT = 10.0  # for any one answer

# --- seeded mutations of valid frames -------------------------------------------------


JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    Raw("1e999"),
    Raw("-Infinity"),
    Raw("NaN"),
    Raw("9" * 5000),
    Raw("-" + "1" * 30),
    Raw("[" * 3000 + "]" * 3000),
    "",
    " ",
    "\ud800",
    "a\udc00b",
    "\ud83d",
    "\x00",
    "\x07",
    "\x1b[2J",
    "a\nb",
    "\t",
    "\x9b",
    "#lobby",
    "#fuzz",
    "lobby",
    "innocent",
    "Innocent",
    "#" + "x" * 40,
    "x" * 65,
    "x" * 129,
    "x" * 201,
    "x" * 1025,
    "é" * 5000,
    "x" * 16_001,
    "2026-11-24T09:30:00.123Z",
    [],
    {},
    [1, [2, [3, "\ud800"]]],
    {"a": {"b": [None]}},
    ["#lobby", "#fuzz"],
]
#: Values that pass decoding but probe the handlers: names in other cases,
#: rooms that do not exist, the user itself, ids at the top of the range,
#: text past the server's (lower) limit, LIKE wildcards, reused client ids.
TRICKY: dict[str, list[Any]] = {
    "room": ["#lobby", "#LOBBY", "#Fuzz", "#nowhere", "#" + "z" * 32, "#_"],
    "to": ["innocent", "INNOCENT", "fuzzer", "fuzzhello", "nobody", "n" * 24],
    "with": ["innocent", "Innocent", "fuzzer", "nobody"],
    "before": [1, 2, 2**63 - 1, 10**18],
    "limit": [1, 200],
    "last_seen": [0, 1, 2**63 - 1],
    "text": ["x" * 4000, "x" * 4001, "\U0001f600" * 16_000, "\n\t.", "é😀"],
    "words": ["%", "_", "'", '"', "\\", "%%", "x" * 200, "fuzz"],
    "tag": ["", "x" * 64, "\U0001f600" * 64],
    "token": ["", "x" * 128],
    "reason": ["", "x" * 200],
    "id": ["same", "x" * 64, "\U0001f600" * 64],
    "version": [0, 2, 65535],
    "register": [True, False],
    "client": ["", "x" * 100],
    # Never "fuzzer": failed logins would throttle the account the test logs in with.
    "nick": ["fuzzhello", "FUZZHELLO", "innocent", "n" * 24],
    "password": ["pw", "x" * 1024, "\x00\x01"],
}
FIELDS = [
    "type",
    "version",
    "nick",
    "password",
    "token",
    "register",
    "last_seen",
    "client",
    "id",
    "text",
    "room",
    "to",
    "with",
    "before",
    "limit",
    "tag",
    "words",
    "reason",
    "future",
]
TYPES = ["hello", "send", "join", "leave", "who", "rooms", "history", "search", "ping", "pong"]
TYPES += ["bye", "welcome", "message", "ack", "", "HELLO", "x" * 100]
SNIPPETS = [
    b'"',
    b"\\",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b",",
    b":",
    b"\xff",
    b"\xed\xa0\x80",
    b"\x00",
]


def valid_frame(kind: str, n: int) -> dict[str, Any]:
    """A valid frame of *kind*: the starting point of each mutation."""
    return {
        # A nick of its own: wrong passwords must not throttle the accounts the test uses.
        "hello": {"type": "hello", "version": 1, "nick": "fuzzhello", "password": "pw"},
        "send": {"type": "send", "id": f"f{n}", "room": "#lobby", "text": f"fuzz {n}"},
        "join": {"type": "join", "room": "#fuzz"},
        "leave": {"type": "leave", "room": "#fuzz"},
        "who": {"type": "who", "room": "#lobby", "tag": "w"},
        "rooms": {"type": "rooms", "tag": "r"},
        "history": {"type": "history", "room": "#lobby", "before": 5, "limit": 10, "tag": "h"},
        "search": {"type": "search", "words": "fuzz", "limit": 5, "tag": "s"},
        "ping": {"type": "ping", "token": "p"},
        "pong": {"type": "pong", "token": "p"},
        "bye": {"type": "bye", "reason": "done"},
    }[kind]


def fuzzed_line(rng: random.Random, n: int) -> bytes:
    """One mutated line (without its newline) from *rng*."""
    if rng.random() < 0.03:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))).replace(b"\n", b" ")
    kinds = [*TYPES[:10], "bye"]
    obj = Pairs(list(valid_frame(rng.choice(kinds), n).items()))
    for _ in range(rng.randrange(1, 3)):
        op = rng.random()
        keys = [k for k, _ in obj.items if k in TRICKY]
        if op < 0.4 and keys:  # a field gets a tricky but valid value
            key = rng.choice(keys)
            obj.items = [(k, rng.choice(TRICKY[k]) if k == key else v) for k, v in obj.items]
        elif op < 0.65 and obj.items:  # a field gets junk
            at = rng.randrange(len(obj.items))
            obj.items[at] = (obj.items[at][0], rng.choice(JUNK))
        elif op < 0.75:  # a known (maybe foreign) or unknown field is added
            name = rng.choice(FIELDS)
            obj.items.append((name, rng.choice(TRICKY.get(name, JUNK) + JUNK)))
        elif op < 0.85 and obj.items:  # a field goes missing
            del obj.items[rng.randrange(len(obj.items))]
        elif op < 0.9 and obj.items:  # a key twice
            key = rng.choice(obj.items)[0]
            obj.items.append((key, rng.choice(JUNK)))
        else:  # the type changes
            obj.items = [("type", rng.choice(TYPES)), *[i for i in obj.items if i[0] != "type"]]
    # Mostly surrogates as \u escapes; now and then written raw (bad UTF-8).
    if rng.random() < 0.05:
        text = "{" + ",".join(f"{json.dumps(k)}:{_raw(v)}" for k, v in obj.items) + "}"
        line = text.encode("utf-8", "surrogatepass")
    else:
        line = dump(obj).encode()
    if len(line) >= MAX_LINE_BYTES:
        # Past the cap the stream ends (its own test is below): written raw it
        # may fit, as the longest valid frames do, else it is cut (bad JSON).
        text = "{" + ",".join(f"{json.dumps(k)}:{_raw(v)}" for k, v in obj.items) + "}"
        line = text.encode("utf-8", "surrogatepass")[: MAX_LINE_BYTES - 1]
    if rng.random() < 0.05:  # byte-level damage
        at = rng.randrange(len(line) + 1)
        line = line[:at] + rng.choice(SNIPPETS) + line[at + rng.randrange(3) :]
    return line.replace(b"\n", b"\\n")[: MAX_LINE_BYTES - 1]


def _raw(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return dump(value)


# --- the connections -----------------------------------------------------------------


class Watch:
    """What the run saw that breaks the rules above, with the input that caused it."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def note(self, line: bytes, what: str) -> None:
        self.problems.append(f"{what}\n    after input {line[:300]!r}")


@dataclass
class Conn:
    client: RawClient
    logged_in: bool
    syncs: int = 0


def _open(server: Any, ca_file: Any, logged_in: bool) -> Conn:
    client = RawClient(server.address, ca_file)
    if logged_in:
        client.login("fuzzer")
    return Conn(client, logged_in)


def _answer(conn: Conn, line: bytes, watch: Watch) -> bool:
    """Send *line*, then a ping; read the answer up to its pong. False if the server closed."""
    conn.syncs += 1
    token = f"sync-{conn.syncs}"
    try:
        expects_close = isinstance(decode_client_line(line), Bye)
    except RemoteProtocolError:
        expects_close = False
    frames: list[Frame] = []
    try:
        conn.client.send(line + b"\n" + encode(Ping(token=token)))
        while True:
            frame = conn.client.recv(REPLY_TIMEOUT)
            frames.append(frame)
            if isinstance(frame, Error) and frame.code == ErrorCode.INTERNAL:
                watch.note(line, f"the server answered internal: {frame}")
            if isinstance(frame, Pong) and frame.token == token:
                return True
    except (EOFError, OSError):
        if not expects_close and not (frames and isinstance(frames[-1], Error)):
            watch.note(line, f"closed without an error frame first; it sent {frames!r}")
        return False
    except RemoteProtocolError as exc:
        watch.note(line, f"the server sent a frame the protocol refuses: {exc}")
        return False
    except TimeoutError:
        watch.note(line, f"no pong in {REPLY_TIMEOUT} s; got {frames!r}")
        return False


class _Records(logging.Handler):
    """Collects the records of the `parley` loggers at ERROR or with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.bad.append(record)


def _innocent_send(innocent: RawClient, n: int, watch: Watch) -> None:
    ref = f"innocent-{n}"
    innocent.send(Send(id=ref, room="#lobby", text=f"still here {n}"))
    try:
        innocent.expect(Ack, timeout=REPLY_TIMEOUT, ref=ref)
    except (TimeoutError, EOFError, RemoteProtocolError) as exc:
        watch.problems.append(f"the innocent user's send {ref} got no ack: {exc!r}")


def test_mutated_frames_of_every_type_never_break_the_server(make_server, ca_file):
    # Protocol errors are what this sends, so the bad-frame cap would close
    # every connection at once; it has its own tests. The rest is the default
    # test configuration.
    server = make_server(max_bad_frames=100_000)
    records = _Records()
    parley_log = logging.getLogger("parley")
    parley_log.addHandler(records)
    level = parley_log.level
    parley_log.setLevel(logging.DEBUG)
    watch = Watch()
    rng = random.Random(SEED)
    conns: list[Conn] = []
    innocent = RawClient(server.address, ca_file)
    try:
        innocent.login("innocent")
        conns = [_open(server, ca_file, i < LOGGED_IN) for i in range(LOGGED_IN + ANONYMOUS)]
        started = time.monotonic()
        sent = 0
        for n in range(FRAMES):
            if time.monotonic() - started > BUDGET:
                break
            at = n % len(conns)
            line = fuzzed_line(rng, n)
            if not _answer(conns[at], line, watch):
                conns[at].client.close()
                conns[at] = _open(server, ca_file, conns[at].logged_in)
            sent += 1
            if n % INNOCENT_EVERY == 0:
                _innocent_send(innocent, n, watch)
        _innocent_send(innocent, FRAMES, watch)
    finally:
        for conn in conns:
            conn.client.close()
        innocent.close()
        parley_log.removeHandler(records)
        parley_log.setLevel(level)
    assert sent >= FRAMES // 2, f"only {sent} lines sent within {BUDGET} s"
    logged = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records.bad]
    assert not watch.problems and not logged, "\n".join(watch.problems + logged)


@pytest.mark.parametrize(
    "size",
    [
        70_000,
        200_000,
        1_000_000,
    ],
)
def test_a_line_over_the_cap_gets_line_too_long_before_the_close(server, ca_file, size):
    client = RawClient(server.address, ca_file)
    frames: list[Frame] = []
    try:
        client.send(b'{"type":"ping","token":"' + b"x" * size + b'"}\n')
        frames = client.expect_closed(timeout=REPLY_TIMEOUT)
    except OSError as exc:  # reset while still sending: the error frame is lost
        frames = [Error(code="reset", message=repr(exc)[:200])]
    finally:
        client.close()
    assert [f.code for f in frames if isinstance(f, Error)] == [ErrorCode.LINE_TOO_LONG]


def test_too_many_bad_frames_close_the_connection_after_an_error_frame(server, ca_file):
    # The default cap (20): the close comes right after the error for the frame over it.
    client = RawClient(server.address, ca_file)
    try:
        client.send(b"{\n" * 30)
        frames = client.expect_closed(timeout=REPLY_TIMEOUT)
    finally:
        client.close()
    assert frames, "closed without any frame"
    assert all(isinstance(f, Error) for f in frames)
    assert isinstance(frames[-1], Error)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"send","id":"c1","room":"#lobby","text":"x\\ud800"}',
        b'{"type":"history","room":"#lobby","before":9223372036854775808}',
        b'{"type":"history","room":"#lobby","limit":' + b"9" * 5000 + b"}",
        b'{"type":"hello","version":1,"nick":"al","password":"p","last_seen":' + b"9" * 5000 + b"}",
        b'{"type":"who","tag":"' + b"x" * 65 + b'"}',
        b'{"type":"ping","token":"\\ud800"}',
        b'{"type":"ping","token":NaN}',
    ],
    ids=[
        "surrogate-text",
        "before-2**63",
        "limit-5000-digits",
        "last_seen-5000-digits",
        "tag-65-chars",
        "surrogate-token",
        "nan",
    ],
)
def test_the_defects_of_the_bad_input_battery_get_a_clean_error(server, ca_file, line):
    # Each of these once passed decoding (and broke the database writer or
    # SQLite), escaped as a traceback, or was echoed unbounded.
    client = RawClient(server.address, ca_file)
    try:
        client.login("battery")
        client.send(line + b"\n" + encode(Ping(token="after")))
        frames = client.recv_until(lambda f: isinstance(f, Pong) and f.token == "after")
    finally:
        client.close()
    errors = [f for f in frames if isinstance(f, Error)]
    assert len(errors) == 1, frames
    assert errors[0].code in {ErrorCode.BAD_TEXT, ErrorCode.BAD_FRAME, ErrorCode.BAD_JSON}
