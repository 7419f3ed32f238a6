"""Several nodes on one PostgreSQL database: live delivery across nodes, failover with
an exact replay, catching up after the listener connection is cut, and order under load."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from parley_chat.protocol import Ack, Message, Ping, Pong, Presence, Send, Who, encode
from parley_chat.server.bus_postgres import libpq_url
from parley_chat.server.chat_server import ChatServer
from tests.support import RawClient


def _client(node: ChatServer, ca_file: Path) -> RawClient:
    return RawClient(node.address, ca_file)


def _barrier(c: RawClient, token: str = "b") -> list[object]:
    """Frames up to the pong of a ping: everything the server queued before it."""
    c.send(Ping(token=token))
    return c.recv_until(lambda f: isinstance(f, Pong) and f.token == token)[:-1]


def test_a_message_sent_on_node_a_arrives_live_on_node_b(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    alice = _client(a, ca_file)
    bob = _client(b, ca_file)
    alice.login("alice")
    bob.login("bob")
    _barrier(bob)
    alice.send(Send(id="m1", room="#lobby", text="hello from a"))
    got = bob.expect(Message, timeout=20, text="hello from a")
    assert got.from_ == "alice" and got.room == "#lobby"
    # And back: B's sender, A's reader.
    bob.send(Send(id="m2", room="#lobby", text="hello from b"))
    back = alice.expect(Message, timeout=20, text="hello from b")
    assert back.id > got.id
    alice.close()
    bob.close()


def _ids(frames: list[object]) -> list[int]:
    return [f.id for f in frames if isinstance(f, Message)]


def _acks(c: RawClient, count: int, timeout: float = 60) -> list[Ack]:
    """The next *count* acks (other frames skipped): with several nodes an ack waits
    for its message's turn, so a ping barrier does not cover it."""
    got: list[Ack] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        f = c.recv(max(0.0, deadline - time.monotonic()))
        if isinstance(f, Ack):
            got.append(f)
    return got


def _read_messages(c: RawClient, count: int, timeout: float = 60) -> list[Message]:
    """The next *count* message frames (other frames skipped), within *timeout*."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        f = c.recv(max(0.0, deadline - time.monotonic()))
        if isinstance(f, Message):
            got.append(f)
    return got


def _node_process(
    name: str, pg_url: str, certs_dir: Path, *extra: str
) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    """A node as a real server process (`python -m parley_chat.server`), and its address."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "--db",
            pg_url,
            "--bus",
            "postgres",
            "--node",
            name,
            "--port",
            "0",
            "--certs-dir",
            str(certs_dir),
            "--scrypt-n",
            "16",
            "--presence-grace",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    ready: queue.Queue[str] = queue.Queue()
    out = proc.stdout

    def read_lines() -> None:
        for line in out:
            ready.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    deadline = time.monotonic() + 60
    while True:
        line = ready.get(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith("parley listening on "):
            host, port = line.split()[3].rsplit(":", 1)
            return proc, (host, int(port))


def test_a_killed_nodes_client_reconnects_to_another_node_with_an_exact_replay(
    make_node: Callable[..., ChatServer], pg_url: str, certs_dir: Path, ca_file: Path
) -> None:
    a = make_node("a")
    b_proc, b_address = _node_process("b", pg_url, certs_dir)
    try:
        c = make_node("c")
        alice = _client(a, ca_file)
        alice.login("alice")
        bob = RawClient(b_address, ca_file)
        bob.login("bob")
        _barrier(bob)
        for i in range(5):
            alice.send(Send(id=f"before-{i}", room="#lobby", text=f"before {i}"))
        seen = _read_messages(bob, 5)
        last_seen = seen[-1].id
        b_proc.kill()  # node B dies at once (SIGKILL); bob's connection with it
        b_proc.wait(30)
        bob.expect_closed(timeout=30)
    finally:
        if b_proc.poll() is None:
            b_proc.kill()
    # Meanwhile on A: messages bob has not seen, public and private.
    for i in range(10):
        alice.send(Send(id=f"after-{i}", room="#lobby", text=f"after {i}"))
    alice.send(Send(id="dm", to="bob", text="for bob only"))
    sent = sorted(f.id for f in _acks(alice, 16) if f.ref.startswith("after-") or f.ref == "dm")
    assert len(sent) == 11
    # bob reconnects to node C with the id it saw last: exactly what it missed, in order.
    bob2 = _client(c, ca_file)
    _welcome, replay = bob2.login("bob", last_seen=last_seen)
    replayed = _ids(replay)
    assert replayed == sent
    assert [f.text for f in replay if isinstance(f, Message)][-1] == "for bob only"
    # And live again, from A to C.
    alice.send(Send(id="live", room="#lobby", text="live again"))
    assert bob2.expect(Message, timeout=20, text="live again").id > sent[-1]
    alice.close()
    bob2.close()


def test_a_node_whose_listener_is_cut_catches_up_with_no_loss_or_duplicate(
    make_node: Callable[..., ChatServer], pg_url: str, ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    reader = _client(a, ca_file)
    reader.login("reader")
    writer = _client(b, ca_file)
    writer.login("writer")
    _barrier(reader)
    bus = a.node.bus
    before = bus.reconnects  # type: ignore[attr-defined]
    app_name = bus.listen_application_name  # type: ignore[attr-defined]
    dsn = libpq_url(pg_url)
    with psycopg.connect(dsn, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    assert killed == [(True,)]
    # Sent while node A is deaf (and while it reconnects): it must get every one, once.
    for i in range(200):
        writer.send(Send(id=f"w{i}", room="#lobby", text=f"w {i}"))
    expected = sorted(f.id for f in _acks(writer, 200))
    got = _read_messages(reader, 200, timeout=60)
    assert [m.id for m in got] == expected
    assert a.node.wait_idle(expected[-1], timeout=30)
    extra = [f for f in _barrier(reader, "after") if isinstance(f, Message)]
    assert extra == []  # no duplicate came after
    assert bus.reconnects > before  # type: ignore[attr-defined]
    reader.close()
    writer.close()


def test_two_thousand_concurrent_sends_across_two_nodes_reach_everyone_complete_and_in_order(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    senders = [_client(a, ca_file), _client(b, ca_file)]
    readers = [_client(a, ca_file), _client(b, ca_file)]
    for i, s in enumerate(senders):
        s.login(f"sender{i}")
    for i, r in enumerate(readers):
        r.login(f"reader{i}")
    for c in senders + readers:
        _barrier(c)
    per = 1000
    errors: list[BaseException] = []

    def blast(s: RawClient, who: int) -> None:
        try:
            data = b"".join(
                encode(Send(id=f"s{who}-{i}", room="#lobby", text=f"{who}:{i}")) for i in range(per)
            )
            s.sock.sendall(data)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=blast, args=(s, i)) for i, s in enumerate(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for r in readers + senders:
        got: list[Message] = []
        acks: list[Ack] = []
        deadline = time.monotonic() + 120
        want_acks = per if r in senders else 0
        while len(got) < 2 * per or len(acks) < want_acks:
            f = r.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(f, Message):
                got.append(f)
            elif isinstance(f, Ack):
                # Each ack after the sender's own copy of its message.
                assert f.id in {m.id for m in got}
                acks.append(f)
        ids = [m.id for m in got]
        assert ids == list(range(ids[0], ids[0] + 2 * per))  # complete and increasing
        # Each sender's own messages in the order it sent them.
        for who in range(2):
            mine = [int(m.text.split(":")[1]) for m in got if m.text.startswith(f"{who}:")]
            assert mine == list(range(per))
        if r in senders:  # every send acked once, with its message's id
            who = senders.index(r)
            assert sorted(a.ref for a in acks) == sorted(f"s{who}-{i}" for i in range(per))
            by_ref = {m.ref: m.id for m in got if m.ref is not None}
            assert all(by_ref[a.ref] == a.id for a in acks)
    for c in senders + readers:
        c.close()


def _online(c: RawClient) -> list[str]:
    c.send(Who(room="#lobby", tag="w"))
    return list(c.expect(Presence, timeout=20, tag="w").online or [])


def test_a_killed_nodes_users_go_offline_elsewhere_after_the_node_timeout(
    make_node: Callable[..., ChatServer], pg_url: str, certs_dir: Path, ca_file: Path
) -> None:
    a = make_node("a", node_timeout=2.0)
    b_proc, b_address = _node_process("b", pg_url, certs_dir, "--node-timeout", "2")
    try:
        watcher = _client(a, ca_file)
        watcher.login("watcher")
        bob = RawClient(b_address, ca_file)
        bob.login("bob")
        deadline = time.monotonic() + 30
        while "bob" not in _online(watcher):
            watcher.expect(Presence, timeout=max(0.1, deadline - time.monotonic()), joined="bob")
        b_proc.kill()  # no goodbye: A hears nothing more from B
        b_proc.wait(30)
    finally:
        if b_proc.poll() is None:
            b_proc.kill()
    watcher.expect(Presence, timeout=30, left="bob")
    assert _online(watcher) == ["watcher"]
    watcher.close()
    bob.close()


def test_a_restarted_node_makes_the_others_forget_its_earlier_users(
    make_node: Callable[..., ChatServer], pg_url: str, certs_dir: Path, ca_file: Path
) -> None:
    a = make_node("a", node_timeout=600.0)  # never by silence in this test
    b_proc, b_address = _node_process("b", pg_url, certs_dir, "--node-timeout", "600")
    procs = [b_proc]
    try:
        watcher = _client(a, ca_file)
        watcher.login("watcher")
        bob = RawClient(b_address, ca_file)
        bob.login("bob")
        deadline = time.monotonic() + 30
        while "bob" not in _online(watcher):
            watcher.expect(Presence, timeout=max(0.1, deadline - time.monotonic()), joined="bob")
        b_proc.kill()
        b_proc.wait(30)
        bob.close()
        # B again, under the same name: its hello tells A that bob's session there is gone.
        again, _address = _node_process("b", pg_url, certs_dir, "--node-timeout", "600")
        procs.append(again)
        watcher.expect(Presence, timeout=60, left="bob")
        assert _online(watcher) == ["watcher"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    watcher.close()


def test_a_message_committed_without_a_notification_is_still_delivered(
    make_node: Callable[..., ChatServer], pg_url: str, ca_file: Path
) -> None:
    """As when a node dies between its COMMIT and its NOTIFY: the tail check finds it."""
    from parley_chat.server.commands import utcnow
    from parley_chat.server.store import Store, writes
    from parley_chat.server.store.queries import get_user

    a = make_node("a")
    reader = _client(a, ca_file)
    reader.login("reader")
    writer = _client(a, ca_file)
    writer.login("ghost")
    _barrier(reader)
    store = Store(pg_url)  # a writer that tells no one
    store.start()
    try:
        with store.read() as s:
            ghost = get_user(s, "ghost")
        assert ghost is not None
        msg, _ = store.submit(
            lambda s: writes.add_message(
                s,
                kind="public",
                body="unannounced",
                now=utcnow(),
                room="#lobby",
                sender_id=ghost.id,
            )
        ).result(30)
    finally:
        store.close()
    got = reader.expect(Message, timeout=30, text="unannounced")
    assert got.id == msg.id
    # And the writer's own connection gets its copy too.
    assert writer.expect(Message, timeout=30, text="unannounced").id == msg.id
    reader.close()
    writer.close()
