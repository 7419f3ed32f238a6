"""Tests of client/connection.py, the I/O shell around ClientSession.

A few pure checks (backoff, the constructor) come first; the rest runs real
ChatClients over real TLS against real servers and real SQLite files
(tests/client/test_session.py tests the session itself, without sockets).
Every wait has a deadline: events are read from the queue with timeouts.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from parley_chat.client import (
    Acked,
    BatchEnded,
    ChatClient,
    Connected,
    ConversationsListed,
    Disconnected,
    ErrorReply,
    HostnameMismatch,
    LoginRefused,
    MessageReceived,
    PresenceChanged,
    Reconnecting,
    RoomJoined,
    RoomLeft,
    RoomsListed,
    ServerUnreachable,
    backoff_delay,
)
from parley_chat.client.events import BatchStarted, ClientEvent
from parley_chat.protocol import Ack, LocalProtocolError, Send
from tests.support import RawClient, barrier_events, collect_until, db_rows, wait_for_event

PASSWORD = "secret-pw"


# --- helpers -----------------------------------------------------------------------------


def is_replay_end(event: ClientEvent) -> bool:
    return isinstance(event, BatchEnded) and event.kind == "replay"


def texts(events: list[ClientEvent], sender: str | None = None) -> list[str]:
    return [
        e.message.text
        for e in events
        if isinstance(e, MessageReceived) and (sender is None or e.message.from_ == sender)
    ]


def kill_socket(client: ChatClient) -> None:
    """Break the client's connection from outside, as a network failure would.

    shutdown() acts on the file descriptor only (no TLS state is touched), so
    calling it from the test thread does not break the one-thread rule.
    """
    link = client._link
    assert link is not None and link.sock.fileno() != -1, (
        f"the client has no live connection; queued events: {list(client.events.queue)}"
    )
    # The plain socket's shutdown: SSLSocket.shutdown would also reset the TLS
    # object that the I/O thread is using.
    socket.socket.shutdown(link.sock, socket.SHUT_RDWR)


@pytest.fixture
def clients(server, ca_file):
    """A factory of logged-in ChatClients on the test server; all are closed at teardown."""
    made: list[ChatClient] = []

    def make(nick: str, *, connect: bool = True, **kwargs: object) -> ChatClient:
        host, port = server.address
        kwargs.setdefault("password", PASSWORD)
        kwargs.setdefault("register", True)
        kwargs.setdefault("ca_file", ca_file)
        client = ChatClient(host, port, nick=nick, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        if connect:
            client.connect()
            collect_until(client, is_replay_end)
        return client

    yield make
    for client in made:
        client.close(timeout=2.0)


# --- pure parts ------------------------------------------------------------------------------


def test_backoff_doubles_from_base_up_to_cap_with_jitter():
    assert backoff_delay(1, 0.5, 30.0, rand=1.0) == 0.5
    assert backoff_delay(1, 0.5, 30.0, rand=0.0) == 0.25
    assert backoff_delay(4, 0.5, 30.0, rand=1.0) == 4.0
    assert backoff_delay(20, 0.5, 30.0, rand=1.0) == 30.0
    assert backoff_delay(10_000, 0.5, 30.0, rand=0.0) == 15.0
    for attempt in range(1, 12):
        delay = backoff_delay(attempt, 0.5, 30.0)
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def _offline_client(ca_file, **kwargs: object) -> ChatClient:
    return ChatClient("127.0.0.1", 9, nick="alice", password=PASSWORD, ca_file=ca_file, **kwargs)  # type: ignore[arg-type]


def test_constructor_checks_credentials_and_nick(ca_file):
    with pytest.raises(ValueError):
        ChatClient("127.0.0.1", 1, nick="alice", ca_file=ca_file)
    with pytest.raises(ValueError):
        ChatClient("127.0.0.1", 1, nick="bad nick", password="x", ca_file=ca_file)
    with pytest.raises(ValueError):
        ChatClient("127.0.0.1", 1, nick="alice", password="", ca_file=ca_file)
    # Refused here: the hello carrying it failed to build in the middle of connect().
    with pytest.raises(ValueError, match="at most 1024 characters"):
        ChatClient("127.0.0.1", 1, nick="alice", password="p" * 1025, ca_file=ca_file)
    with pytest.raises(ValueError, match="not UTF-8"):  # PARLEY_PASSWORD with a stray byte
        ChatClient("127.0.0.1", 1, nick="alice", password="pw\udcff", ca_file=ca_file)


def test_send_text_refuses_what_the_protocol_refuses(ca_file):
    client = _offline_client(ca_file)
    with pytest.raises(LocalProtocolError):
        client.send_text("   ")
    with pytest.raises(LocalProtocolError):
        client.send_text("bell\x07")
    with pytest.raises(LocalProtocolError):
        client.send_text("x" * (client.max_text + 1))
    # Undecodable input (read with surrogateescape) is refused here, in the
    # caller's thread: it once reached the I/O thread, failed to encode there
    # and took the connection down.
    with pytest.raises(LocalProtocolError, match="not valid Unicode"):
        client.send_text("caf\udce9")
    with pytest.raises(LocalProtocolError, match="not valid Unicode"):
        client.search("caf\udce9")
    assert client.pending == {}


# --- against a real server ---------------------------------------------------------------------


def test_connect_logs_in_and_reports_tls(server, clients, certs_dir):
    alice = clients("Alice", connect=False)
    alice.connect()
    events = collect_until(alice, is_replay_end)
    connected = events[0]
    assert isinstance(connected, Connected)
    assert connected.nick == "Alice" and connected.created and not connected.resumed
    assert connected.rooms == ("#lobby",)
    assert connected.tls_version in ("TLSv1.2", "TLSv1.3")
    leaf = (certs_dir / "server.pem").read_text().split("-----END CERTIFICATE-----")[0]
    der = ssl.PEM_cert_to_DER_cert(leaf + "-----END CERTIFICATE-----\n")
    assert connected.fingerprint == hashlib.sha256(der).hexdigest() == alice.fingerprint
    assert alice.connected and alice.token and alice.tls_version == connected.tls_version
    assert isinstance(events[1], ConversationsListed)  # the list comes before the replay
    assert isinstance(events[2], BatchStarted) and events[2].kind == "replay"
    ((count,),) = db_rows(server, "SELECT count(*) FROM sessions WHERE ended_at IS NULL")
    assert count == 1


def test_wrong_password_is_login_refused(clients):
    clients("alice").close()
    intruder = clients("alice", connect=False, password="wrong-password", register=False)
    with pytest.raises(LoginRefused) as info:
        intruder.connect()
    assert info.value.code == "auth-failed"
    assert not intruder.connected


def test_unknown_nick_without_register_is_refused(clients):
    ghost = clients("ghost", connect=False, register=False)
    with pytest.raises(LoginRefused) as info:
        ghost.connect()
    assert info.value.code == "no-such-account"


def test_a_stale_token_falls_back_to_the_password(clients):
    clients("alice").close()
    alice = clients("alice", connect=False, token="not-a-real-token")
    alice.connect()
    connected = wait_for_event(alice, lambda e: isinstance(e, Connected))
    assert not connected.resumed and alice.token != "not-a-real-token"


def test_public_and_private_messages_between_clients(clients):
    alice, bob, carol = clients("alice"), clients("bob"), clients("carol")
    public_id = alice.send_text("hello, lobby")
    private_id = alice.send_text("just for you", to="bob")
    acked = collect_until(alice, lambda e: isinstance(e, Acked) and e.client_id == private_id)
    acks = [e for e in acked if isinstance(e, Acked)]
    assert [a.client_id for a in acks] == [public_id, private_id]
    assert acks[0].id < acks[1].id and not acks[0].duplicate
    assert alice.pending == {}

    got = collect_until(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.kind == "private"
    )
    received = [e.message for e in got if isinstance(e, MessageReceived) and e.message.from_]
    assert [(m.kind, m.text, m.room, m.to) for m in received] == [
        ("public", "hello, lobby", "#lobby", None),
        ("private", "just for you", None, "bob"),
    ]
    assert all(m.ref is None for m in received)  # refs are for the sender only

    # carol sees the public message, never the private one.
    alice.send_text("marker")
    seen = collect_until(
        carol, lambda e: isinstance(e, MessageReceived) and e.message.text == "marker"
    )
    assert texts(seen, "alice") == ["hello, lobby", "marker"]


def test_rooms_join_leave_who_history_and_search(clients):
    alice, bob = clients("alice"), clients("bob")
    alice.join("#dev")
    assert wait_for_event(alice, lambda e: isinstance(e, RoomJoined)).room == "#dev"
    assert "#dev" in alice.joined_rooms
    alice.send_text("kettle is on", room="#dev")
    wait_for_event(alice, lambda e: isinstance(e, Acked))
    alice.who("#dev", tag="w1")
    who = wait_for_event(alice, lambda e: isinstance(e, PresenceChanged) and e.tag == "w1")
    assert who.online == ("alice",)
    alice.rooms(tag="r1")
    listed = wait_for_event(alice, lambda e: isinstance(e, RoomsListed))
    assert listed.tag == "r1" and ("#dev", 1, True) in listed.rooms
    alice.history(room="#dev", tag="h1")
    page = collect_until(alice, lambda e: isinstance(e, BatchEnded) and e.tag == "h1")
    hist = [e for e in page if isinstance(e, MessageReceived) and e.batch == "history"]
    assert "kettle is on" in [e.message.text for e in hist] and all(e.tag == "h1" for e in hist)
    alice.search("kettle", tag="s1")
    found = collect_until(alice, lambda e: isinstance(e, BatchEnded) and e.tag == "s1")
    assert texts([e for e in found if isinstance(e, MessageReceived) and e.batch == "search"]) == [
        "kettle is on"
    ]
    # bob is not in #dev: sending there is refused and never stays pending.
    refused = bob.send_text("let me in", room="#dev")
    err = wait_for_event(bob, lambda e: isinstance(e, ErrorReply))
    assert err.code == "not-in-room" and err.ref == refused and bob.pending == {}
    alice.leave("#dev")
    assert wait_for_event(alice, lambda e: isinstance(e, RoomLeft)).room == "#dev"
    alice.leave("#lobby")
    assert wait_for_event(alice, lambda e: isinstance(e, ErrorReply)).code == "cannot-leave"


def test_dropped_connection_reconnects_and_replays_missed_messages_once_in_order(clients):
    alice = clients("alice", reconnect_base=2.0)
    bob = clients("bob")
    kill_socket(alice)
    dropped = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    assert dropped.will_retry and not dropped.by_user
    retry = wait_for_event(alice, lambda e: isinstance(e, Reconnecting))
    assert retry.attempt == 1 and 1.0 <= retry.delay <= 2.0
    # While alice is away (at least a second), bob talks.
    sent = [f"missed {i}" for i in range(5)]
    ids = [bob.send_text(t) for t in sent]
    collect_until(bob, lambda e: isinstance(e, Acked) and e.client_id == ids[-1])

    events = collect_until(alice, is_replay_end)
    connected = next(e for e in events if isinstance(e, Connected))
    assert connected.resumed
    replayed = [e for e in events if isinstance(e, MessageReceived) and e.message.from_ == "bob"]
    assert [e.message.text for e in replayed] == sent
    assert all(e.batch == "replay" for e in replayed)
    # Live delivery goes on, and nothing arrives twice.
    bob.send_text("live again")
    later = collect_until(
        alice, lambda e: isinstance(e, MessageReceived) and e.message.text == "live again"
    )
    later += barrier_events(alice)
    assert texts(later, "bob") == ["live again"]
    delivered = [e.message.id for e in events + later if isinstance(e, MessageReceived)]
    assert alice.connected and alice.last_seen == max(delivered)


def test_a_send_caught_by_a_drop_is_resent_and_stored_once(server, clients):
    alice = clients("alice", reconnect_base=0.2)
    before = alice.send_text("in flight")
    kill_socket(alice)  # the send may or may not have left: either way, once
    wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    during = alice.send_text("typed while offline")
    assert during in alice.pending
    events = collect_until(alice, lambda e: isinstance(e, Acked) and e.client_id == during)
    events += barrier_events(alice)
    acked = [e.client_id for e in events if isinstance(e, Acked)]
    assert sorted(acked) == sorted([before, during]) and alice.pending == {}
    for client_id in (before, during):
        assert db_rows(
            server, "SELECT count(*) FROM messages WHERE client_msg_id = ?", client_id
        ) == [(1,)]
    echoes = [e.message.ref for e in events if isinstance(e, MessageReceived) and e.message.ref]
    assert echoes.count(during) == 1 and echoes.count(before) <= 1


def test_a_stored_send_whose_ack_was_lost_is_resent_with_its_original_id(server, clients, ca_file):
    alice = clients("alice")
    assert alice.close()
    # Another connection of alice's stores client id "lost-ack-1", as if this
    # client had sent it and the ack was lost with its connection.
    raw = RawClient(server.address, ca_file)
    raw.login("alice", PASSWORD)
    raw.send(Send(id="lost-ack-1", room="#lobby", text="exactly once"))
    raw.expect(Ack, ref="lost-ack-1")
    raw.close()
    alice.session.restore_pending([Send(id="lost-ack-1", room="#lobby", text="exactly once")])

    alice.rejoin()
    events = collect_until(alice, lambda e: isinstance(e, Acked))
    events += barrier_events(alice)
    assert [e.client_id for e in events if isinstance(e, Acked)] == ["lost-ack-1"]
    assert alice.pending == {}
    assert db_rows(server, "SELECT count(*) FROM messages WHERE client_msg_id = 'lost-ack-1'") == [
        (1,)
    ]


def test_rejoin_after_close_replays_exactly_what_was_missed(clients):
    alice, bob = clients("alice"), clients("bob")
    barrier_events(alice)
    assert alice.close() and not alice.connected
    closed = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    assert closed.by_user and not closed.will_retry
    last_seen = alice.last_seen

    sent = []
    for i in range(30):
        text = f"while away {i}"
        sent.append(text)
        # Every third one is private to alice; the rest go to #lobby.
        last = bob.send_text(text, to="alice" if i % 3 == 2 else None)
    collect_until(bob, lambda e: isinstance(e, Acked) and e.client_id == last)

    alice.rejoin()
    events = collect_until(alice, is_replay_end)
    connected = next(e for e in events if isinstance(e, Connected))
    assert connected.resumed
    replayed = [e.message for e in events if isinstance(e, MessageReceived)]
    assert [m.text for m in replayed] == sent
    assert all(m.id > last_seen for m in replayed)
    assert [m.kind for m in replayed].count("private") == 10
    events += barrier_events(alice)
    ids = [e.message.id for e in events if isinstance(e, MessageReceived)]
    assert len(ids) == len(set(ids))
    assert texts(events, "bob") == sent


def test_the_server_ping_is_answered_so_an_idle_client_stays(make_server, ca_file):
    server = make_server(idle_ping_after=0.3, idle_close_after=0.9)
    host, port = server.address
    alice = ChatClient(host, port, nick="alice", password=PASSWORD, ca_file=ca_file, register=True)
    alice.connect()
    try:
        # Three times the server's idle deadline without a word from alice.
        with pytest.raises(AssertionError, match="no matching event"):
            wait_for_event(alice, lambda e: isinstance(e, Disconnected), timeout=2.7)
        assert alice.connected
        ref = alice.send_text("still here")
        wait_for_event(alice, lambda e: isinstance(e, Acked) and e.client_id == ref)
    finally:
        assert alice.close()


def test_client_pings_keep_a_quiet_connection_alive(make_server, ca_file):
    # The server would ping at 60 s and close at 90 s; the client pings every 0.2 s
    # and would drop the connection if a pong took longer than 0.5 s.
    server = make_server()
    host, port = server.address
    alice = ChatClient(
        host,
        port,
        nick="alice",
        password=PASSWORD,
        ca_file=ca_file,
        register=True,
        ping_interval=0.2,
        ping_timeout=0.5,
    )
    alice.connect()
    try:
        with pytest.raises(AssertionError, match="no matching event"):
            wait_for_event(alice, lambda e: isinstance(e, Disconnected), timeout=1.5)
        assert alice.connected
    finally:
        assert alice.close()


def test_server_shutdown_is_reported_and_close_stops_the_retries(make_server, ca_file):
    server = make_server()
    host, port = server.address
    alice = ChatClient(
        host,
        port,
        nick="alice",
        password=PASSWORD,
        ca_file=ca_file,
        register=True,
        reconnect_base=0.1,
    )
    alice.connect()
    server.stop()
    dropped = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    assert dropped.will_retry and dropped.reason.startswith("shutdown")
    wait_for_event(alice, lambda e: isinstance(e, Reconnecting) and e.attempt >= 2)
    pending = alice.send_text("nobody will ack this")
    started = time.monotonic()
    assert alice.close(timeout=0.5) is False
    assert time.monotonic() - started < 5.0
    assert pending in alice.pending
    final = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    assert final.by_user and not final.will_retry


def test_without_auto_reconnect_a_drop_is_final(clients):
    alice = clients("alice", auto_reconnect=False)
    kill_socket(alice)
    dropped = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
    assert not dropped.will_retry and not dropped.by_user
    assert not alice.connected
    alice.rejoin()
    assert wait_for_event(alice, lambda e: isinstance(e, Connected)).resumed


# --- several server addresses: failover -------------------------------------------------------


def test_constructor_takes_one_address_or_a_list_of_them(ca_file):
    one = _offline_client(ca_file)
    assert one.addresses == (("127.0.0.1", 9),) and (one.host, one.port) == ("127.0.0.1", 9)
    two = ChatClient(
        [("127.0.0.1", 9), ("localhost", 10)], nick="alice", password=PASSWORD, ca_file=ca_file
    )
    assert two.addresses == (("127.0.0.1", 9), ("localhost", 10)) and two.port == 9
    for host, port in (("127.0.0.1", None), ([("127.0.0.1", 9)], 9), ([], None)):
        with pytest.raises(ValueError):
            ChatClient(host, port, nick="alice", password=PASSWORD, ca_file=ca_file)  # type: ignore[arg-type]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_skips_a_server_that_is_down_and_logs_in_at_the_next(
    make_server, ca_file, tmp_path
):
    b = make_server(db_url=f"sqlite:///{tmp_path / 'b.db'}")
    dead = ("127.0.0.1", _closed_port())
    alice = ChatClient(
        [dead, b.address], nick="alice", password=PASSWORD, ca_file=ca_file, register=True
    )
    try:
        alice.connect()
        collect_until(alice, is_replay_end)
        assert (alice.host, alice.port) == b.address
        ref = alice.send_text("reached b")
        wait_for_event(alice, lambda e: isinstance(e, Acked) and e.client_id == ref)
        assert db_rows(b, "SELECT body FROM messages WHERE client_msg_id = ?", ref) == [
            ("reached b",)
        ]
    finally:
        alice.close(timeout=2.0)
    # With every address down, connect() raises the failure plainly.
    nobody = ChatClient(
        [dead, ("127.0.0.1", _closed_port())], nick="alice", password=PASSWORD, ca_file=ca_file
    )
    with pytest.raises(ServerUnreachable):
        nobody.connect()


def test_a_certificate_that_fails_verification_is_not_skipped_for_the_next_address(
    make_server, ca_file, tmp_path
):
    # The first server listens on 127.0.0.2, a name its certificate does not carry.
    stranger = make_server(host="127.0.0.2", db_url=f"sqlite:///{tmp_path / 'x.db'}")
    b = make_server(db_url=f"sqlite:///{tmp_path / 'b.db'}")
    alice = ChatClient(
        [stranger.address, b.address],
        nick="alice",
        password=PASSWORD,
        ca_file=ca_file,
        register=True,
    )
    with pytest.raises(HostnameMismatch, match=r"127\.0\.0\.2"):
        alice.connect()
    assert not alice.connected
    assert db_rows(b, "SELECT count(*) FROM users") == [(0,)]  # b never heard from alice


def _start_server_process(certs_dir, db_path) -> tuple[subprocess.Popen[str], int]:
    """A server in a process of its own (so it can be killed), and its port."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "--port",
            "0",
            "--db",
            f"sqlite:///{db_path}",
            "--certs",
            str(certs_dir),
            "--scrypt-n",
            "16",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # readline() blocks, so it runs in a thread and the test waits with a deadline.
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise AssertionError("the server printed nothing in time") from None
    assert line.startswith("parley listening on "), line
    return proc, int(line.split()[3].rsplit(":", 1)[1])


def test_a_server_killed_mid_session_fails_over_to_the_next_with_replay_and_resends(
    make_server, certs_dir, ca_file, tmp_path
):
    proc, port_a = _start_server_process(certs_dir, tmp_path / "a.db")
    b = make_server(db_url=f"sqlite:///{tmp_path / 'b.db'}")
    addresses = [("127.0.0.1", port_a), b.address]
    alice = ChatClient(
        addresses,
        nick="alice",
        password=PASSWORD,
        ca_file=ca_file,
        register=True,
        reconnect_base=0.2,
    )
    bob = ChatClient(
        b.address[0], b.address[1], nick="bob", password=PASSWORD, ca_file=ca_file, register=True
    )
    try:
        alice.connect()
        collect_until(alice, is_replay_end)
        assert alice.port == port_a
        first = alice.send_text("on a")
        wait_for_event(alice, lambda e: isinstance(e, MessageReceived) and e.message.ref == first)
        seen_on_a = alice.last_seen
        assert seen_on_a is not None
        # Meanwhile, on b: messages alice has not seen.
        bob.connect()
        collect_until(bob, is_replay_end)
        sent = [bob.send_text(f"on b {i}") for i in range(seen_on_a + 3)]
        acks = collect_until(bob, lambda e: isinstance(e, Acked) and e.client_id == sent[-1])
        ids = {e.client_id: e.id for e in acks if isinstance(e, Acked)}

        proc.kill()  # SIGKILL: no shutdown notice, the connection just breaks
        proc.wait(30)
        dropped = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
        assert dropped.will_retry
        during = alice.send_text("typed during the failover")
        events = collect_until(alice, is_replay_end, timeout=30)
        connected = next(e for e in events if isinstance(e, Connected))
        # b never issued alice's token: she logs in with the password there.
        assert not connected.resumed and (alice.host, alice.port) == b.address
        # b replays what comes after the last message alice saw (on a).
        replayed = [e.message for e in events if isinstance(e, MessageReceived)]
        expected = [f"on b {i}" for i, ref in enumerate(sent) if ids[ref] > seen_on_a]
        assert expected and [m.text for m in replayed if m.from_ == "bob"] == expected
        assert all(m.id > seen_on_a for m in replayed)
        # The send made while no server was reachable is stored on b, once.
        wait_for_event(alice, lambda e: isinstance(e, Acked) and e.client_id == during)
        assert db_rows(b, "SELECT count(*) FROM messages WHERE client_msg_id = ?", during) == [(1,)]
        assert alice.pending == {}
    finally:
        alice.close(timeout=2.0)
        bob.close(timeout=2.0)
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_a_server_shutting_down_hands_its_clients_over_to_the_next(make_server, ca_file, tmp_path):
    a = make_server(db_url=f"sqlite:///{tmp_path / 'a.db'}")
    b = make_server(db_url=f"sqlite:///{tmp_path / 'b.db'}")
    alice = ChatClient(
        [a.address, b.address],
        nick="alice",
        password=PASSWORD,
        ca_file=ca_file,
        register=True,
        reconnect_base=0.2,
    )
    try:
        alice.connect()
        collect_until(alice, is_replay_end)
        assert alice.port == a.address[1]
        a.stop()  # the server says `shutdown` and closes: a passing reason, so b is next
        dropped = wait_for_event(alice, lambda e: isinstance(e, Disconnected))
        assert dropped.will_retry and dropped.reason.startswith("shutdown")
        connected = wait_for_event(alice, lambda e: isinstance(e, Connected), timeout=30)
        assert connected.nick == "alice" and (alice.host, alice.port) == b.address
        ref = alice.send_text("after the handover")
        wait_for_event(alice, lambda e: isinstance(e, Acked) and e.client_id == ref)
    finally:
        alice.close(timeout=2.0)
