"""Presence, room membership and moderation across nodes: a user with connections on
two nodes is listed once, stays online while either connection lives, follows a join
made on the other node, and a kick, a mute or a disconnection reaches both."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parley_chat.protocol import (
    Ack,
    Error,
    ErrorCode,
    Join,
    Message,
    Ping,
    Pong,
    Presence,
    Send,
    Who,
)
from parley_chat.protocol.moderation import Moderate, Moderated, Notice, RoomInfo
from parley_chat.server.chat_server import ChatServer
from tests.support import RawClient


def _client(node: ChatServer, ca_file: Path, nick: str) -> RawClient:
    c = RawClient(node.address, ca_file)
    c.login(nick)
    return c


def _online(c: RawClient, room: str = "#lobby") -> list[str]:
    tag = uuid.uuid4().hex[:8]
    c.send(Who(room=room, tag=tag))
    frame = c.expect(Presence, timeout=20, tag=tag)
    return list(frame.online or [])


def _until_online(
    c: RawClient, want: Callable[[list[str]], bool], timeout: float = 30
) -> list[str]:
    """Wait for a presence delta after which *want* holds of the list (read with who)."""
    online = _online(c)
    deadline = time.monotonic() + timeout
    while not want(online):
        c.expect(Presence, timeout=max(0.1, deadline - time.monotonic()))
        online = _online(c)
    return online


def _ok(c: RawClient, action: str, **fields: Any) -> Moderated:
    ref = uuid.uuid4().hex
    c.send(Moderate(action=action, ref=ref, **fields))
    frames = c.recv_until(
        lambda f: isinstance(f, Moderated | Error) and getattr(f, "ref", None) == ref, timeout=20
    )
    assert isinstance(frames[-1], Moderated), frames[-1]
    return frames[-1]


def _send(c: RawClient, text: str, room: str = "#lobby") -> Ack | Error:
    cid = uuid.uuid4().hex
    c.send(Send(id=cid, room=room, text=text))
    frames = c.recv_until(
        lambda f: isinstance(f, Ack | Error) and getattr(f, "ref", None) == cid, timeout=20
    )
    return frames[-1]  # type: ignore[return-value]


def _barrier(c: RawClient) -> None:
    c.send(Ping(token="x"))
    c.expect(Pong, token="x")


def test_a_user_on_two_nodes_is_listed_once_and_online_until_the_last_connection_ends(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    watcher = _client(a, ca_file, "watcher")
    alice_a = _client(a, ca_file, "alice")
    # alice on B too: A's watcher sees her once; bob on B alone is seen on A.
    alice_b = _client(b, ca_file, "alice")
    bob = _client(b, ca_file, "bob")
    online = _until_online(watcher, lambda o: "bob" in o)
    assert online.count("alice") == 1
    assert sorted(online) == ["alice", "bob", "watcher"]
    # B's view agrees: the users of A are listed there.
    assert sorted(_until_online(bob, lambda o: "watcher" in o)) == ["alice", "bob", "watcher"]
    # alice's connection on A ends: she is still online (on B), nobody reads that she left.
    alice_a.send(Send(id="bye", room="#lobby", text="leaving a"))
    alice_a.expect(Ack)
    alice_a.close()
    watcher.expect(Message, text="leaving a")
    bob.send(Send(id="probe", room="#lobby", text="probe"))
    frames = watcher.recv_until(lambda f: isinstance(f, Message) and f.text == "probe", timeout=20)
    assert not any(isinstance(f, Presence) and f.left == "alice" for f in frames)
    assert "alice" in _online(watcher)
    # Her last connection (on B) ends: now A's watcher is told.
    alice_b.close()
    watcher.expect(Presence, timeout=30, left="alice")
    assert sorted(_online(watcher)) == ["bob", "watcher"]
    for c in (watcher, bob):
        c.close()


def test_a_join_on_one_node_reaches_the_users_connection_on_the_other(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    alice_a = _client(a, ca_file, "alice")
    alice_b = _client(b, ca_file, "alice")
    bob = _client(b, ca_file, "bob")
    bob.send(Join(room="#team"))
    bob.expect(RoomInfo, room="#team")
    alice_a.send(Join(room="#team"))
    alice_a.expect(RoomInfo, room="#team")
    # Her connection on B learns it joined, and bob (on B) that she did.
    alice_b.expect(Presence, timeout=20, room="#team", joined="alice")
    bob.expect(Presence, timeout=20, room="#team", joined="alice")
    # bob's message in #team (sent on B) reaches both of her connections.
    assert isinstance(_send(bob, "welcome", room="#team"), Ack)
    assert alice_a.expect(Message, timeout=20, text="welcome").room == "#team"
    alice_b.expect(Message, timeout=20, text="welcome")
    # And she can post there from B.
    assert isinstance(_send(alice_b, "thanks", room="#team"), Ack)
    for c in (alice_a, alice_b, bob):
        c.close()


def test_kick_and_mute_on_one_node_take_effect_on_the_other(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    owner = _client(a, ca_file, "owner")
    owner.send(Join(room="#club"))
    owner.expect(RoomInfo, room="#club")
    carol_b = _client(b, ca_file, "carol")
    carol_b.send(Join(room="#club"))
    carol_b.expect(RoomInfo, room="#club")
    owner.expect(Presence, timeout=20, room="#club", joined="carol")
    # Kicked on A: her connection on B is told why, leaves, and cannot post there.
    _ok(owner, "kick", room="#club", nick="carol", reason="spam")
    notice = carol_b.expect(Notice, timeout=20, kind="kick")
    assert "spam" in notice.text and notice.room == "#club"
    carol_b.expect(Presence, timeout=20, room="#club", left="carol")
    refused = _send(carol_b, "still here?", room="#club")
    assert isinstance(refused, Error) and refused.code == ErrorCode.NOT_IN_ROOM
    # Muted in #club on A (she came back): her posts on B are refused, then allowed again.
    carol_b.send(Join(room="#club"))
    carol_b.expect(RoomInfo, room="#club")
    _ok(owner, "mute", room="#club", nick="carol")
    carol_b.expect(Notice, timeout=20, kind="mute")
    muted = _send(carol_b, "muted?", room="#club")
    assert isinstance(muted, Error) and muted.code == ErrorCode.MUTED
    _ok(owner, "unmute", room="#club", nick="carol")
    carol_b.expect(Notice, timeout=20, kind="unmute")
    assert isinstance(_send(carol_b, "free again", room="#club"), Ack)
    owner.close()
    carol_b.close()


def test_an_operator_disconnecting_a_user_ends_their_connections_on_every_node(
    make_node: Callable[..., ChatServer], ca_file: Path, pg_url: str
) -> None:
    import psycopg

    from parley_chat.server.bus_postgres import libpq_url

    a = make_node("a")
    b = make_node("b")
    op = _client(a, ca_file, "op")
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as db:
        db.execute("UPDATE users SET operator = true WHERE nick = 'op'")
    dave_a = _client(a, ca_file, "dave")
    dave_b = _client(b, ca_file, "dave")
    _barrier(dave_b)
    _ok(op, "disconnect", nick="dave", reason="enough")
    for conn in (dave_a, dave_b):
        frames = conn.expect_closed(timeout=30)
        error = next(f for f in frames if isinstance(f, Error))
        assert error.code == ErrorCode.DISCONNECTED and "enough" in error.message
    op.close()


def test_a_private_message_across_nodes_reaches_its_two_parties_only(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    alice_a = _client(a, ca_file, "alice")
    alice_b = _client(b, ca_file, "alice")
    bob_b = _client(b, ca_file, "bob")
    eve_a = _client(a, ca_file, "eve")
    eve_b = _client(b, ca_file, "eve")
    cid = uuid.uuid4().hex
    alice_a.send(Send(id=cid, to="bob", text="just for bob"))
    got = bob_b.expect(Message, timeout=20, text="just for bob")
    assert got.to == "bob" and got.from_ == "alice" and got.ref is None
    # alice's other connection (on B) gets her own copy, with her client id.
    assert alice_b.expect(Message, timeout=20, text="just for bob").ref == cid
    # A public message after it, from each node: eve sees those and nothing before.
    assert isinstance(_send(bob_b, "public after"), Ack)
    assert isinstance(_send(alice_a, "public after 2"), Ack)
    for eve in (eve_a, eve_b):
        frames = eve.recv_until(
            lambda f: isinstance(f, Message) and f.text == "public after 2", timeout=20
        )
        texts = [f.text for f in frames if isinstance(f, Message)]
        assert "just for bob" not in texts and "public after" in texts
    for c in (alice_a, alice_b, bob_b, eve_a, eve_b):
        c.close()


def test_an_edit_and_a_deletion_on_one_node_reach_the_other(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    from parley_chat.protocol.moderation import Deleted, Edited

    a = make_node("a")
    b = make_node("b")
    alice = _client(a, ca_file, "alice")
    bob = _client(b, ca_file, "bob")
    _barrier(bob)
    ack = _send(alice, "typo hree")
    assert isinstance(ack, Ack)
    bob.expect(Message, timeout=20, id=ack.id)
    _ok(alice, "edit", id=ack.id, text="typo here")
    edited = bob.expect(Edited, timeout=20, id=ack.id)
    assert edited.text == "typo here" and edited.room == "#lobby"
    _ok(alice, "delete", id=ack.id)
    deleted = bob.expect(Deleted, timeout=20, id=ack.id)
    assert deleted.by == "alice" and deleted.room == "#lobby"
    alice.close()
    bob.close()


def test_a_read_marker_moved_on_one_node_reaches_the_users_devices_on_the_other(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    from parley_chat.protocol import Read

    a = make_node("a")
    b = make_node("b")
    alice_a = _client(a, ca_file, "alice")
    alice_b = _client(b, ca_file, "alice")
    bob = _client(b, ca_file, "bob")
    room_msg = _send(bob, "read me")
    assert isinstance(room_msg, Ack)
    dm_id = uuid.uuid4().hex
    bob.send(Send(id=dm_id, to="alice", text="and me"))
    dm = bob.expect(Ack, timeout=20, ref=dm_id)
    alice_a.expect(Message, timeout=20, id=dm.id)
    alice_a.send(Read(id=room_msg.id, room="#lobby"))
    got = alice_b.expect(Read, timeout=20, room="#lobby")
    assert got.id == room_msg.id
    alice_a.send(Read(id=dm.id, with_="bob"))
    got = alice_b.expect(Read, timeout=20, with_="bob")
    assert got.id == dm.id
    for c in (alice_a, alice_b, bob):
        c.close()
