# Battery #12-#14 and pending item d: clients that send too much, read too
# little, or vanish. The flood limits are the defaults here (a burst of 10,
# then 5 per second, 200 frames of backlog): for_tests relaxes them.

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from parley_chat.protocol import (
    Ack,
    Batch,
    ErrorCode,
    Frame,
    History,
    Message,
    Ping,
    Pong,
    Presence,
    Send,
    encode,
)
from tests.battery.helpers import (
    DEFAULT_FLOOD_LIMITS,
    Client,
    barrier,
    codes,
    left_presence,
)


def _read_for(client: Client, seconds: float, sink: list[Frame]) -> None:
    """Read frames into *sink* for *seconds* (or until the server closes)."""
    deadline = time.monotonic() + seconds
    while not client.closed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            sink.append(client.recv(remaining))
        except TimeoutError:
            return
        except EOFError:
            return


def _room_history(client: Client, room: str, tag: str) -> list[Message]:
    """Every message of *room* the client may see, paging back 200 at a time."""
    out: list[Message] = []
    before = None
    while True:
        page_tag = f"{tag}-{before}"
        client.send(History(room=room, before=before, limit=200, tag=page_tag))
        frames = client.recv_until(
            lambda f, t=page_tag: isinstance(f, Batch) and f.state == "close" and f.tag == t
        )
        start = next(
            i
            for i, f in enumerate(frames)
            if isinstance(f, Batch) and f.state == "open" and f.tag == page_tag
        )
        page = [f for f in frames[start:] if isinstance(f, Message)]
        out = page + out
        if not frames[-1].more or not page:
            return out
        before = page[0].id


def _timed_sender(
    client: Client, stop: threading.Event, latencies: list[float], prefix: str
) -> Callable[[], None]:
    """A thread body: send at 4 per second (under the default rate) and time each ack."""

    def run() -> None:
        for i in range(40):
            if stop.is_set():
                return
            ref = f"{prefix}{i}"
            started = time.monotonic()
            client.send(Send(id=ref, text=f"steady {i}", room="#lobby"))
            client.recv_until(lambda f, r=ref: isinstance(f, Ack) and f.ref == r, timeout=10)
            latencies.append(time.monotonic() - started)
            stop.wait(0.25)  # the pacing wait ends early on the sign that the case is over

    return run


def test_a_flood_is_delayed_and_every_acked_message_is_stored(make_server, battery):
    """Battery #12: 1000 sends/s for 2 s at the default limits: delayed to the rate, acked ⊆ stored, another user's acks < 1 s."""
    server = make_server(**DEFAULT_FLOOD_LIMITS)
    flooder = battery.online(server, "flooder")
    bob = battery.online(server, "bob")
    barrier(flooder, "ready")
    barrier(bob, "ready")
    stop = threading.Event()
    latencies: list[float] = []
    steady = threading.Thread(target=_timed_sender(bob, stop, latencies, "b"), daemon=True)
    steady.start()
    frames: list[Frame] = []
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 2.0 and not flooder.closed:
        burst = b"".join(
            encode(Send(id=f"f{n + k}", text=f"flood {n + k}", room="#lobby")) for k in range(100)
        )
        flooder.sock.settimeout(10)
        try:
            flooder.send(burst)
        except OSError:
            break
        n += 100
        _read_for(flooder, 0.1, frames)  # ~100 ms of reading between bursts: ~1000 sends/s
    _read_for(flooder, 1.0, frames)
    elapsed = time.monotonic() - started
    stop.set()
    steady.join(15)
    assert not steady.is_alive()
    acked = {f.ref: f.id for f in frames if isinstance(f, Ack)}
    assert set(codes(frames)) <= {ErrorCode.FLOOD}, codes(frames)
    assert 5 <= len(acked) <= 10 + 5.0 * elapsed + 5, f"{len(acked)} acks in {elapsed:.1f} s"
    assert latencies and max(latencies) < 1.0, f"bob's acks took up to {max(latencies):.2f} s"
    flooder.close()
    stored = {m.id: m for m in _room_history(bob, "#lobby", "all")}
    for ref, message_id in acked.items():
        assert message_id in stored, f"acked {ref} (id {message_id}) is not stored"
        assert (stored[message_id].from_, stored[message_id].text) == (
            "flooder",
            f"flood {ref[1:]}",
        )
    battery.finish(server)


def _end_reason(server, nick: str) -> str | None:
    """The end reason of *nick*'s latest session (after the writer has caught up)."""
    server.store.submit(lambda s: None).result(10)  # FIFO: earlier bookkeeping is written
    with server.store.read() as s:
        return s.execute(
            text(
                "SELECT end_reason FROM sessions JOIN users ON users.id = sessions.user_id "
                "WHERE users.nick = :nick ORDER BY sessions.id DESC LIMIT 1"
            ),
            {"nick": nick},
        ).scalar()


def test_a_reader_that_stops_reading_is_dropped_and_nobody_waits_for_it(make_server, battery):
    """Battery #13: a client that never reads is dropped with "send queue exceeded" (256 KiB); the sender's acks and a reader's stream are unaffected."""
    server = make_server(send_queue_bytes=256 * 1024)
    sleepy = battery.connect(server, rcvbuf=4096)
    sleepy.login("sleepy")
    carol = battery.online(server, "carol")
    alice = battery.online(server, "alice")
    barrier(carol, "ready")
    barrier(alice, "ready")
    gone = threading.Event()
    notices: list[str] = []
    seen: list[int] = []

    failures: list[BaseException] = []

    def carol_reads() -> None:  # carol's socket is only touched on this thread
        try:
            while True:
                frame = carol.recv(15)
                if isinstance(frame, Message) and frame.from_ == "alice":
                    seen.append(frame.id)
                    if frame.text == "that is all":
                        return
                elif isinstance(frame, Presence) and frame.left == "sleepy":
                    notices.append(f"sleepy left ({_end_reason(server, 'sleepy')})")
                    gone.set()
        except BaseException as exc:  # reported on the test thread
            failures.append(exc)
            gone.set()

    reader = threading.Thread(target=carol_reads, daemon=True)
    reader.start()
    text = "z" * 4000
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    acked: list[int] = []
    n = 0
    deadline = time.monotonic() + 30
    while not gone.is_set() and n * len(text) < 5 * 1024 * 1024:
        assert time.monotonic() < deadline, "the non-reader was never dropped"
        while len(sent_at) < 8:  # a window of 8 sends in flight
            ref = f"a{n}"
            sent_at[ref] = time.monotonic()
            alice.send(Send(id=ref, text=text, room="#lobby"))
            n += 1
        frame = alice.recv(10)
        if isinstance(frame, Ack):
            latencies.append(time.monotonic() - sent_at.pop(frame.ref))
            acked.append(frame.id)
    while sent_at:
        frame = alice.recv(10)
        if isinstance(frame, Ack):
            latencies.append(time.monotonic() - sent_at.pop(frame.ref))
            acked.append(frame.id)
    alice.send(Send(id="last", text="that is all", room="#lobby"))
    last = alice.expect(Ack)
    acked.append(last.id)
    reader.join(30)
    assert not reader.is_alive(), "carol's stream stalled"
    assert failures == []
    assert notices == ["sleepy left (not reading)"]  # stored for "send queue exceeded"
    assert seen == acked, "carol missed, reordered or doubled messages"
    assert max(latencies) < 1.0, f"alice waited up to {max(latencies):.2f} s for an ack"
    sleepy.expect_closed(timeout=15)  # what its buffers held, then the end
    battery.finish(server)


_SILENT_PEER = r"""
import json, socket, ssl, sys
host, port, ca, nick = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost")
hello = {"type": "hello", "version": 1, "nick": nick, "password": "secret-pw", "register": True}
sock.sendall(json.dumps(hello).encode() + b"\n")
seen = b""
while b'"state":"close"' not in seen:
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit(1)
    seen += chunk
print("ready", flush=True)
sys.stdin.read()  # never returns: the test stops this process, then kills it
"""


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "the peer process did not log in in time"
    assert proc.stdout.readline().strip() == "ready", f"peer exited {proc.poll()}"


def test_a_stopped_peer_is_pinged_closed_and_seen_leaving(make_server, battery, ca_file: Path):
    """Battery #14: a logged-in client process gets SIGSTOP (no FIN): pinged at 1 s idle, closed at 2 s, others see it leave."""
    server = make_server(idle_ping_after=1.0, idle_close_after=2.0)
    carol = battery.online(server, "carol")
    host, port = server.address
    proc = subprocess.Popen(
        [sys.executable, "-c", _SILENT_PEER, host, str(port), str(ca_file), "ghost"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(proc, 15)
        os.kill(proc.pid, signal.SIGSTOP)
        silent_since = time.monotonic()
        frames: list[Frame] = []
        pinged = False
        while not left_presence(frames, "ghost"):
            assert time.monotonic() - silent_since < 8, "nobody was told the silent peer left"
            frame = carol.recv(8)
            frames.append(frame)
            if isinstance(frame, Ping):  # carol is idle too: she answers, as a live client does
                pinged = True
                carol.send(Pong(token=frame.token))
        gone_after = time.monotonic() - silent_since
    finally:
        proc.kill()  # SIGKILL ends a stopped process too
        proc.wait(10)
    assert pinged, "the server never pinged an idle connection"
    assert 1.5 <= gone_after <= 2.0 + 2.5, f"the silent peer was dropped after {gone_after:.2f} s"
    # Going offline is presence (seen above), not a stored notice; the session
    # row keeps the reason.
    assert _end_reason(server, "ghost") == "timed out"  # the log says "ping timeout"
    battery.finish(server)


# --- pending item d: flood control before login -------------------------------------------


def test_pings_before_login_are_flood_limited_like_any_frame(make_server, battery):
    """Battery #12, item d: 5000 pings in a burst before login: pongs bounded by burst + rate x time; bob's acks < 1 s."""
    server = make_server(**DEFAULT_FLOOD_LIMITS)
    bob = battery.online(server, "bob")
    barrier(bob, "ready")
    stop = threading.Event()
    latencies: list[float] = []
    steady = threading.Thread(target=_timed_sender(bob, stop, latencies, "b"), daemon=True)
    steady.start()
    spammer = battery.connect(server)
    started = time.monotonic()
    try:
        spammer.send(b"".join(encode(Ping(token=str(i))) for i in range(5000)))
    except OSError:  # ssl.SSLError is one: the server may hang up on a flooder mid-write
        pass
    frames: list[Frame] = []
    _read_for(spammer, 2.0, frames)
    elapsed = time.monotonic() - started
    stop.set()
    steady.join(15)
    assert not steady.is_alive()
    pongs = sum(isinstance(f, Pong) for f in frames)
    assert pongs <= 10 + 5.0 * elapsed + 10, f"{pongs} pongs in {elapsed:.1f} s"
    assert latencies and max(latencies) < 1.0
    battery.finish(server)
