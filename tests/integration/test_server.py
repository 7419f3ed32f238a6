# End-to-end tests of the server: real TLS on a loopback port, a real SQLite
# file, certificates from the project's own script, frames sent by hand.

from __future__ import annotations

import random
import socket
import string
import time

import pytest

from parley_chat.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Hello,
    Join,
    Leave,
    Message,
    Ping,
    Pong,
    Presence,
    Send,
    Who,
    encode,
)
from parley_chat.server.connection import Connection
from tests.support import RawClient, barrier, messages_in, online, wait_session_ended
from tests.support import db_rows as _rows


def connect(server, ca_file) -> RawClient:
    return RawClient(server.address, ca_file)


# --- accounts and login ----------------------------------------------------------


def test_register_then_login_again(server, ca_file):
    alice = connect(server, ca_file)
    welcome, batch = alice.login("Alice")
    assert welcome.created and welcome.nick == "Alice" and welcome.rooms == ["#lobby"]
    assert welcome.token and welcome.version == PROTOCOL_VERSION
    assert batch[0].state == "open" and batch[-1].state == "close"
    alice.send(Bye(reason="done"))
    alice.expect_closed()
    again = connect(server, ca_file)
    welcome2, _ = again.login("alice", register=False)
    assert not welcome2.created and welcome2.nick == "Alice"


def test_password_is_stored_as_scrypt_hash_only(server, ca_file):
    online(server, ca_file, "alice")
    ((stored,),) = _rows(server, "SELECT password_hash FROM users WHERE nick_key='alice'")
    assert stored.startswith("scrypt$") and "secret-pw" not in stored


def test_wrong_password_is_refused_and_closed(server, ca_file):
    online(server, ca_file, "alice")
    bad = connect(server, ca_file)
    bad.send(Hello(version=1, nick="alice", password="nope"))
    frames = bad.expect_closed()
    assert [f.code for f in frames if isinstance(f, Error)] == [ErrorCode.AUTH_FAILED]


def test_taken_nick_on_register_is_refused_case_insensitively(server, ca_file):
    online(server, ca_file, "alice")
    other = connect(server, ca_file)
    other.send(Hello(version=1, nick="ALICE", password="different", register=True))
    frames = other.expect_closed()
    assert [f.code for f in frames if isinstance(f, Error)] == [ErrorCode.NICK_TAKEN]


def test_unknown_nick_without_register_says_how_to_register(server, ca_file):
    c = connect(server, ca_file)
    c.send(Hello(version=1, nick="ghost", password="pw"))
    (err,) = [f for f in c.expect_closed() if isinstance(f, Error)]
    assert err.code == ErrorCode.NO_SUCH_ACCOUNT and "register" in err.message


def test_registration_closed(make_server, ca_file):
    server = make_server(registration_open=False)
    c = connect(server, ca_file)
    c.send(Hello(version=1, nick="newbie", password="pw", register=True))
    (err,) = [f for f in c.expect_closed() if isinstance(f, Error)]
    assert err.code == ErrorCode.REGISTRATION_CLOSED


def test_wrong_passwords_are_throttled_before_hashing(make_server, ca_file):
    server = make_server(login_failures=3)
    online(server, ca_file, "alice")
    codes = []
    for _ in range(5):
        c = connect(server, ca_file)
        c.send(Hello(version=1, nick="alice", password="guess"))
        codes += [f.code for f in c.expect_closed() if isinstance(f, Error)]
    assert codes == [ErrorCode.AUTH_FAILED] * 3 + [ErrorCode.THROTTLED] * 2
    # Even the right password waits out the window: the throttle comes first.
    c = connect(server, ca_file)
    c.send(Hello(version=1, nick="alice", password="secret-pw"))
    assert [f.code for f in c.expect_closed() if isinstance(f, Error)] == [ErrorCode.THROTTLED]


def test_resume_token_logs_in_and_a_bad_one_is_refused(server, ca_file):
    alice = connect(server, ca_file)
    welcome, _ = alice.login("alice")
    resumed = connect(server, ca_file)
    welcome2, _ = resumed.login("alice", token=welcome.token)
    assert welcome2.nick == "alice" and welcome2.token != welcome.token
    forged = connect(server, ca_file)
    forged.send(Hello(version=1, nick="alice", token="not-a-token"))
    assert [f.code for f in forged.expect_closed() if isinstance(f, Error)] == [ErrorCode.BAD_TOKEN]
    ((n,),) = _rows(
        server, "SELECT count(*) FROM resume_tokens WHERE token_hash = ?", welcome.token
    )
    assert n == 0, "tokens are stored hashed, never in the clear"


def test_frames_before_login_are_refused_but_the_connection_stays(server, ca_file):
    c = connect(server, ca_file)
    c.send(Send(id="x", text="hi", room="#lobby"))
    err = c.expect(Error)
    assert err.code == ErrorCode.NOT_LOGGED_IN and err.ref == "x"
    c.send(Ping(token="t"))
    assert c.expect(Pong).token == "t"


def test_unsupported_version(server, ca_file):
    c = connect(server, ca_file)
    c.send(Hello(version=99, nick="alice", password="pw", register=True))
    assert [f.code for f in c.expect_closed() if isinstance(f, Error)] == [ErrorCode.BAD_VERSION]


# --- messages ---------------------------------------------------------------------------


def test_public_message_is_acked_after_storage_and_broadcast(server, ca_file):
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    barrier(alice)  # bob's arrival is read: what follows starts with the send
    alice.send(Send(id="c1", text="hello lobby", room="#lobby"))
    before_ack = alice.recv_until(lambda f: isinstance(f, Ack))
    ack = before_ack[-1]
    assert ack.ref == "c1" and not ack.duplicate
    got = bob.expect(Message, id=ack.id)
    assert (got.kind, got.from_, got.room, got.text, got.ref) == (
        "public",
        "alice",
        "#lobby",
        "hello lobby",
        None,
    )
    (echo,) = [f for f in before_ack if isinstance(f, Message) and f.id == ack.id]
    assert echo.ref == "c1", "the sender's own copy carries its client id, ahead of the ack"
    assert _rows(server, "SELECT sender, kind, text FROM chat_log WHERE id = ?", ack.id) == [
        ("alice", "public", "hello lobby")
    ]


def test_sender_is_the_session_user_never_a_client_field(server, ca_file):
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    alice.send(b'{"type":"send","id":"f1","text":"i am bob","room":"#lobby","from":"bob"}\n')
    ack = alice.expect(Ack)
    assert bob.expect(Message, id=ack.id).from_ == "alice"


def test_private_message_reaches_only_its_two_parties(server, ca_file):
    alice, bob, carol = (online(server, ca_file, n) for n in ("alice", "bob", "carol"))
    for c in (alice, bob, carol):
        barrier(c)
    alice.send(Send(id="p1", text="just for bob", to="bob"))
    ack = alice.expect(Ack)
    got = bob.expect(Message, id=ack.id)
    assert (got.kind, got.from_, got.to) == ("private", "alice", "bob")
    alice.send(Send(id="pub", text="public after", room="#lobby"))
    ack2 = alice.expect(Ack)
    seen = carol.recv_until(lambda f: isinstance(f, Message) and f.id == ack2.id)
    assert all("just for bob" not in getattr(f, "text", "") for f in seen)
    assert _rows(server, "SELECT sender, recipient, kind FROM chat_log WHERE id = ?", ack.id) == [
        ("alice", "bob", "private")
    ]


def test_private_message_to_offline_user_is_stored_and_shown_at_login(server, ca_file):
    online(server, ca_file, "bob").close()
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="p1", text="see this later", to="bob"))
    ack = alice.expect(Ack)
    bob = connect(server, ca_file)
    _, batch = bob.login("bob")
    assert [m.id for m in messages_in(batch) if m.text == "see this later"] == [ack.id]


def test_private_message_to_unknown_nick(server, ca_file):
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="p1", text="hello?", to="nobody"))
    err = alice.expect(Error)
    assert err.code == ErrorCode.NO_SUCH_NICK and err.ref == "p1"


def test_resend_with_same_client_id_is_stored_once_and_acked_again(server, ca_file):
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="dup", text="once", room="#lobby"))
    first = alice.expect(Ack)
    alice.send(Send(id="dup", text="once", room="#lobby"))
    second = alice.expect(Ack)
    assert (second.id, second.duplicate) == (first.id, True)
    assert _rows(server, "SELECT count(*) FROM messages WHERE client_msg_id='dup'") == [(1,)]


def test_coming_online_and_going_offline_are_presence_deltas_not_history(server, ca_file):
    bob = online(server, ca_file, "bob")
    barrier(bob)
    alice = online(server, ca_file, "alice")
    came = bob.expect(Presence, room="#lobby")
    assert (came.joined, came.online) == ("alice", None)
    alice.send(Bye(reason="lunch"))
    alice.expect_closed()
    went = bob.expect(Presence, left="alice")
    assert went.online is None
    server.store.submit(lambda s: None).result(10)  # the writer is FIFO: session row written
    # Nothing was stored: reconnects must not fill every room's history.
    assert _rows(server, "SELECT count(*) FROM messages WHERE kind='system'") == [(0,)]
    ((reason,),) = _rows(
        server,
        "SELECT end_reason FROM sessions JOIN users ON users.id = sessions.user_id "
        "WHERE users.nick='alice'",
    )
    assert reason == "signed out"  # the client's own words go to the log only


def test_who_lists_online_users(server, ca_file):
    alice = online(server, ca_file, "alice")
    bob = online(server, ca_file, "bob")  # keep a reference: a dropped client disconnects
    barrier(alice)
    alice.send(Who(tag="w1"))
    answer = alice.expect(Presence, tag="w1")
    assert answer.online == ["alice", "bob"]
    bob.close()


def test_one_user_on_two_connections_gets_everything_on_both(server, ca_file):
    desk, laptop = online(server, ca_file, "alice"), online(server, ca_file, "alice")
    bob = online(server, ca_file, "bob")
    bob.send(Send(id="b1", text="to alice", to="alice"))
    ack = bob.expect(Ack)
    assert desk.expect(Message, id=ack.id).text == "to alice"
    assert laptop.expect(Message, id=ack.id).text == "to alice"
    barrier(bob)
    bob.send(Who(tag="w"))
    assert bob.expect(Presence, tag="w").online == ["alice", "bob"], "listed once"


def test_rooms_join_leave(server, ca_file):
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    alice.send(Join(room="#dev"))
    assert alice.expect(Presence, room="#dev").joined == "alice"
    alice.send(Send(id="d1", text="in dev", room="#dev"))
    ack = alice.expect(Ack)
    bob.send(Send(id="d2", text="not a member", room="#dev"))
    assert bob.expect(Error).code == ErrorCode.NOT_IN_ROOM
    seen = barrier(bob, "sync")
    assert ack.id not in [m.id for m in messages_in(seen)]
    alice.send(Leave(room="#lobby"))
    assert alice.expect(Error).code == ErrorCode.CANNOT_LEAVE
    alice.send(Leave(room="#dev"))
    assert alice.expect(Presence, room="#dev").left == "alice"


# --- bad input: a clear error, nothing lost ---------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"type":"shout","text":"x"}\n', ErrorCode.UNKNOWN_TYPE),
        (b'{"type":"send", "id":\n', ErrorCode.BAD_JSON),
        (b'{"type":"send","id":"u","text":"caf\xe9","room":"#lobby"}\n', ErrorCode.BAD_UTF8),
        (b'{"type":"send","id":"c","text":"ring\\u0007","room":"#lobby"}\n', ErrorCode.BAD_TEXT),
        (b'{"type":"send","id":"m","room":"#lobby"}\n', ErrorCode.BAD_FRAME),
    ],
)
def test_bad_frames_get_an_error_and_keep_the_connection(server, ca_file, line, code):
    alice = online(server, ca_file, "alice")
    barrier(alice)
    alice.send(line)
    assert alice.expect(Error).code == code
    alice.send(Send(id="after", text="still here", room="#lobby"))
    assert alice.expect(Ack).ref == "after"
    assert _rows(server, "SELECT count(*) FROM messages WHERE kind != 'system'") == [(1,)]


def test_text_over_the_limit_is_refused_and_not_stored(make_server, ca_file):
    server = make_server(max_text_chars=100)
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="long", text="x" * 101, room="#lobby"))
    err = alice.expect(Error)
    assert (err.code, err.ref) == (ErrorCode.TEXT_TOO_LONG, "long")
    alice.send(Send(id="ok", text="x" * 100, room="#lobby"))
    assert alice.expect(Ack).ref == "ok"
    assert _rows(server, "SELECT client_msg_id FROM messages WHERE sender_id IS NOT NULL") == [
        ("ok",)
    ]


def test_line_over_the_cap_is_an_error_then_close(server, ca_file):
    alice = online(server, ca_file, "alice")
    barrier(alice)
    alice.send(b"{" + b"a" * (70 * 1024))
    frames = alice.expect_closed()
    assert [f.code for f in frames if isinstance(f, Error)] == [ErrorCode.LINE_TOO_LONG]


def test_plaintext_client_gets_a_clear_error_and_is_closed(server):
    with socket.create_connection(server.address, timeout=5) as raw:
        raw.sendall(b'{"type":"hello","version":1,"nick":"x","password":"y"}\n')
        started = time.monotonic()
        data = b""
        while chunk := raw.recv(4096):
            data += chunk
        assert time.monotonic() - started < 2
    assert b"tls-required" in data and b"TLS only" in data


def test_a_client_that_never_handshakes_does_not_delay_others(make_server, ca_file):
    server = make_server(handshake_timeout=3.0)
    silent = socket.create_connection(server.address, timeout=10)
    try:
        started = time.monotonic()
        alice = online(server, ca_file, "alice")
        assert time.monotonic() - started < 1.0
        alice.close()
        # And the silent one is dropped at the handshake deadline.
        silent.settimeout(10)
        assert silent.recv(1) == b""
        assert time.monotonic() - started < 6
    finally:
        silent.close()


def test_a_client_that_never_logs_in_is_closed_at_the_login_deadline(make_server, ca_file):
    server = make_server(login_timeout=1.0)
    c = connect(server, ca_file)
    started = time.monotonic()
    frames = c.expect_closed(timeout=5)
    assert [f.code for f in frames if isinstance(f, Error)] == [ErrorCode.TIMEOUT]
    assert time.monotonic() - started < 3


def test_too_many_connections_from_one_address(make_server, ca_file):
    server = make_server(max_connections_per_ip=2)
    keep = [connect(server, ca_file), connect(server, ca_file)]
    third = connect(server, ca_file)
    assert [f.code for f in third.expect_closed() if isinstance(f, Error)] == [
        ErrorCode.TOO_MANY_CONNECTIONS
    ]
    for c in keep:
        c.close()


def test_idle_client_is_pinged_then_closed(make_server, ca_file):
    server = make_server(idle_ping_after=0.5, idle_close_after=1.5)
    alice = online(server, ca_file, "alice")
    alice.expect(Ping, timeout=3)
    frames = alice.expect_closed(timeout=5)
    assert ErrorCode.TIMEOUT in [f.code for f in frames if isinstance(f, Error)]


def test_a_reader_that_never_reads_is_dropped_and_others_are_unaffected(make_server, ca_file):
    server = make_server(send_queue_bytes=64 * 1024)
    sleepy = connect(server, ca_file)
    sleepy.login("sleepy")
    sleepy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    text = "y" * 3000
    deadline = time.monotonic() + 30
    sent = 0
    while server.hub.is_online("sleepy"):
        assert time.monotonic() < deadline, "the non-reader was never dropped"
        alice.send(Send(id=f"s{sent}", text=text, room="#lobby"))
        t0 = time.monotonic()
        last = alice.expect(Ack)
        assert last.ref == f"s{sent}"
        assert time.monotonic() - t0 < 2.0, "the sender waited on the slow reader"
        sent += 1
    # bob, who reads, got every one of them: up to the last, then nothing more (a barrier).
    frames = bob.recv_until(lambda f: isinstance(f, Message) and f.id == last.id)
    frames += barrier(bob)
    got = [m for m in frames if isinstance(m, Message) and m.from_ == "alice"]
    assert len(got) == sent
    # the log says "send queue exceeded"
    assert wait_session_ended(server, "sleepy") == "not reading"


# --- durability -----------------------------------------------------------------------------------


def test_history_survives_a_restart(make_server, ca_file, db_url):
    first = make_server(db_url=db_url)
    alice = online(first, ca_file, "alice")
    alice.send(Send(id="k1", text="keep me", room="#lobby"))
    ack = alice.expect(Ack)
    first.stop()
    second = make_server(db_url=db_url)
    again = connect(second, ca_file)
    _, batch = again.login("alice", register=False)
    assert [m.text for m in messages_in(batch) if m.id == ack.id] == ["keep me"]


def test_full_disk_refuses_without_ack_and_recovers(server, ca_file):
    alice = online(server, ca_file, "alice")
    barrier(alice)
    # Cap the database at its current size: the next insert fails with SQLITE_FULL.
    server.store.submit(
        lambda s: s.connection().exec_driver_sql(
            "PRAGMA max_page_count = "
            + str(s.connection().exec_driver_sql("PRAGMA page_count").scalar())
        )
    ).result(5)
    # Varied text: its trigram index entries need new pages (a run of one letter would not).
    text = "".join(random.Random(7).choices(string.ascii_lowercase + string.digits, k=3000))
    alice.send(Send(id="full", text=text, room="#lobby"))
    err = alice.expect(Error)
    assert (err.code, err.ref) == (ErrorCode.STORE_FAILED, "full")
    assert _rows(server, "SELECT count(*) FROM messages WHERE client_msg_id='full'") == [(0,)]
    server.store.submit(
        lambda s: s.connection().exec_driver_sql("PRAGMA max_page_count = 1073741823")
    ).result(5)
    alice.send(Send(id="full", text=text, room="#lobby"))
    assert alice.expect(Ack).ref == "full"


def test_second_server_on_the_same_database_is_refused(server, make_server, db_url):
    from parley_chat.server.errors import DatabaseLocked

    with pytest.raises(DatabaseLocked, match="already using"):
        make_server(db_url=db_url)


def test_busy_port_is_a_clear_error(server, make_server, tmp_path):
    from parley_chat.server.errors import AddressInUse

    with pytest.raises(AddressInUse, match="already in use"):
        make_server(db_url=f"sqlite:///{tmp_path / 'other.db'}", port=server.address[1])


def test_a_message_is_encoded_once_and_its_bytes_shared_by_every_recipient(
    server, ca_file, monkeypatch
):
    n = 20
    clients = [online(server, ca_file, f"user{i}") for i in range(n)]
    # Every join delta has arrived: none is left for the message's batch to flush
    # first, which would hand those members a list of their own instead.
    for i, c in enumerate(clients[:-1]):
        waiting = {f"user{j}" for j in range(i + 1, n)}
        while waiting:
            f = c.recv()
            if isinstance(f, Presence) and f.joined in waiting:
                waiting.discard(f.joined)
    # The real connections, watched: what the hub hands each one as shared bytes
    # (on the class: a Connection has slots, so no method of its own can be set).
    handed: dict[str, list[bytes]] = {}
    watched = set(server.hub.all_connections())
    deliver_shared = Connection.deliver_shared

    def spy(self, data, chunks):
        if self in watched:
            handed.setdefault(self.nick, []).append(data)
        deliver_shared(self, data, chunks)

    monkeypatch.setattr(Connection, "deliver_shared", spy)

    clients[0].send(Send(id="all", text="hello everyone", room="#lobby"))
    own = clients[0].recv_until(lambda f: isinstance(f, Ack))
    ack = own[-1]
    assert [f.text for f in own if isinstance(f, Message) and f.id == ack.id] == ["hello everyone"]
    for c in clients[1:]:
        assert c.expect(Message, id=ack.id).text == "hello everyone"

    # One bytes object, encoded once, queued for all 19 readers...
    blobs = [handed.get(f"user{i}", []) for i in range(1, n)]
    assert all(len(b) == 1 for b in blobs), blobs
    shared = blobs[0][0]
    assert all(b[0] is shared for b in blobs)
    assert shared == encode(
        Message(
            id=ack.id, ts=ack.ts, kind="public", text="hello everyone", from_="user0", room="#lobby"
        )
    )
    # ...and not for the sender, whose own copy carries its client id.
    assert "user0" not in handed


def test_a_password_reset_by_the_operator_ends_open_connections(make_server, ca_file):
    from parley_chat.server.store import utcnow, writes

    server = make_server(revocation_check_interval=0.1)
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    server.store.submit(lambda s: writes.set_password(s, "alice", "scrypt$new", utcnow())).result(5)
    frames = alice.expect_closed()
    errors = [f for f in frames if isinstance(f, Error)]
    assert [e.code for e in errors] == [ErrorCode.AUTH_FAILED]
    assert "operator" in errors[0].message
    bob.send(Ping(token="still-here"))
    assert bob.expect(Pong).token == "still-here"  # others are untouched
