# The conversation list, read markers and history around an id, against a real
# TLS server on loopback and a real SQLite file. Private conversations must reach
# only their two parties on every one of these paths.

from __future__ import annotations

import pytest

from parley_chat.protocol import (
    MAX_CONVERSATIONS_LISTED,
    MAX_PREVIEW_CHARS,
    Ack,
    Batch,
    Conversations,
    Error,
    ErrorCode,
    History,
    Join,
    ListConversations,
    Message,
    Presence,
    Read,
    Send,
    Welcome,
)
from tests.support import RawClient, barrier, messages_in
from tests.support import db_rows as _rows


def online(server, ca_file, nick: str) -> tuple[RawClient, Welcome, Conversations]:
    """A logged-in raw client, its welcome, and the conversation list sent after it."""
    client = RawClient(server.address, ca_file)
    welcome, _ = client.login(nick)
    # The list comes right after the welcome, ahead of the replay.
    (listing,) = client.before_replay
    assert isinstance(listing, Conversations)
    return client, welcome, listing


def say(client: RawClient, cid: str, text: str, *, room: str | None = None, to: str | None = None):
    client.send(Send(id=cid, text=text, room=room, to=to))
    return client.expect(Ack, ref=cid)


def listed(client: RawClient, tag: str = "c") -> dict[tuple[str, str], dict]:
    client.send(ListConversations(tag=tag))
    frame = client.expect(Conversations, tag=tag)
    assert not frame.more
    return {(i["kind"], i["name"]): i for i in frame.items}


def test_welcome_announces_the_flood_limits(make_server, ca_file):
    server = make_server(flood_rate=5.0, flood_burst=10)
    _, welcome, _ = online(server, ca_file, "alice")
    assert welcome.flood == {"rate": 5.0, "burst": 10}


def test_the_list_has_rooms_and_private_peers_with_latest_message_and_unread(server, ca_file):
    alice, _, first = online(server, ca_file, "alice")
    assert [(i["kind"], i["name"]) for i in first.items] == [("room", "#lobby")]
    bob, _, _ = online(server, ca_file, "bob")
    bob.send(Join(room="#dev"))
    bob.expect(Presence, room="#dev", joined="bob")
    say(bob, "b1", "hello lobby", room="#lobby")
    say(bob, "b2", "psst alice", to="alice")
    ack = say(bob, "b3", "are you there?", to="alice")
    say(alice, "a1", "my own words do not count", room="#lobby")
    items = listed(alice)
    assert set(items) == {("room", "#lobby"), ("private", "bob")}
    lobby, private = items["room", "#lobby"], items["private", "bob"]
    assert lobby["unread"] == 1 and lobby["read"] == 0
    assert lobby["last"]["text"] == "my own words do not count"
    assert lobby["last"]["ref"] == "a1"  # the sender's own copy carries its client id
    assert private["unread"] == 2
    assert private["last"]["id"] == ack.id and private["last"]["from"] == "bob"
    assert "ref" not in private["last"]  # bob's client id is not alice's to see
    # bob sees his side: alice's lobby line is unread for him; his own private ones are not.
    bob_items = listed(bob)
    assert bob_items["private", "alice"]["unread"] == 0
    assert bob_items["room", "#lobby"]["unread"] == 1
    assert bob_items["room", "#dev"] == {
        "kind": "room",
        "name": "#dev",
        "last": None,
        "unread": 0,
        "read": 0,
    }


def test_a_list_never_shows_other_peoples_private_conversations(server, ca_file):
    alice, _, _ = online(server, ca_file, "alice")
    bob, _, _ = online(server, ca_file, "bob")
    carol, _, _ = online(server, ca_file, "carol")
    say(bob, "b1", "secret for carol only", to="carol")
    say(carol, "c1", "secret reply to bob", to="bob")
    items = listed(alice)
    assert set(items) == {("room", "#lobby")}
    assert items["room", "#lobby"]["last"] is None
    assert "secret" not in repr(items)
    # Not after a new login either (the list sent with the welcome).
    _again, _, first = online(server, ca_file, "alice")
    assert [(i["kind"], i["name"]) for i in first.items] == [("room", "#lobby")]
    assert "secret" not in repr(first.to_wire())
    # bob and carol each see exactly their conversation with the other.
    assert set(listed(bob)) == {("room", "#lobby"), ("private", "carol")}
    assert set(listed(carol)) == {("room", "#lobby"), ("private", "bob")}


def test_the_list_survives_a_restart_and_is_sent_before_the_replay(make_server, db_url, ca_file):
    server = make_server()
    alice, _, _ = online(server, ca_file, "alice")
    bob, _, _ = online(server, ca_file, "bob")
    say(bob, "b1", "while you were away", to="alice")
    bob.close()
    alice.close()
    server.stop()
    server = make_server()
    client = RawClient(server.address, ca_file)
    _welcome, frames = client.login("alice")
    (listing,) = client.before_replay
    assert isinstance(listing, Conversations)
    assert isinstance(frames[0], Batch) and frames[0].kind == "replay"
    items = {(i["kind"], i["name"]): i for i in listing.items}
    assert items["private", "bob"]["unread"] == 1
    assert items["private", "bob"]["last"]["text"] == "while you were away"


def test_read_markers_move_forward_only_and_follow_to_the_other_device(server, ca_file):
    alice, _, _ = online(server, ca_file, "alice")
    phone, _, _ = online(server, ca_file, "alice")
    bob, _, _ = online(server, ca_file, "bob")
    acks = [say(bob, f"b{i}", f"line {i}", room="#lobby") for i in range(3)]
    p1 = say(bob, "p1", "private one", to="alice")
    alice.send(Read(room="#lobby", id=acks[1].id))
    echo = phone.expect(Read)
    assert (echo.room, echo.with_, echo.id) == ("#lobby", None, acks[1].id)
    # The sender's own connection gets no echo (a barrier shows nothing came first).
    assert not [f for f in barrier(alice, "a") if isinstance(f, Read)]
    assert _rows(
        server,
        "SELECT r.message_id FROM read_markers r JOIN users u ON u.id = r.user_id "
        "JOIN rooms m ON m.id = r.room_id WHERE u.nick = 'alice' AND m.name = '#lobby'",
    ) == [(acks[1].id,)]
    # Back is ignored: no echo, marker unchanged.
    alice.send(Read(room="#lobby", id=acks[0].id))
    assert not [f for f in barrier(alice, "b") if isinstance(f, Error)]
    assert not [f for f in barrier(phone, "b") if isinstance(f, Read)]
    items = listed(phone)
    assert items["room", "#lobby"]["read"] == acks[1].id
    assert items["room", "#lobby"]["unread"] == 1
    assert items["private", "bob"]["unread"] == 1
    # A private read, by the peer's nick in any case; an id past the end lands on the last.
    alice.send(Read(with_="BOB", id=p1.id + 1000))
    echo = phone.expect(Read)
    assert (echo.with_, echo.id) == ("bob", p1.id)
    assert listed(alice)["private", "bob"]["unread"] == 0


def test_bad_read_markers_get_clear_errors(server, ca_file):
    alice, _, _ = online(server, ca_file, "alice")
    bob, _, _ = online(server, ca_file, "bob")
    _carol = online(server, ca_file, "carol")
    secret = say(bob, "b1", "for carol", to="carol")
    alice.send(Read(room="#nowhere", id=1))
    assert alice.expect(Error).code == ErrorCode.NOT_IN_ROOM
    alice.send(Read(with_="nobody", id=1))
    assert alice.expect(Error).code == ErrorCode.NO_SUCH_NICK
    # Someone else's private message cannot be marked (nor does it say it exists).
    alice.send(Read(with_="bob", id=secret.id))
    error = alice.expect(Error)
    assert error.code == ErrorCode.BAD_FRAME and "for carol" not in error.message
    alice.send(b'{"type":"read","room":"#lobby","with":"bob","id":1}\n')
    assert alice.expect(Error).code == ErrorCode.BAD_FRAME
    alice.send(b'{"type":"read","room":"#lobby","id":0}\n')
    assert alice.expect(Error).code == ErrorCode.BAD_FRAME
    assert _rows(server, "SELECT count(*) FROM read_markers WHERE peer_id IS NOT NULL") == [(0,)]


def test_a_new_member_has_read_the_rooms_past(server, ca_file):
    bob, _, _ = online(server, ca_file, "bob")
    bob.send(Join(room="#dev"))
    bob.expect(Presence, room="#dev", joined="bob")
    for i in range(3):
        say(bob, f"b{i}", f"old {i}", room="#dev")
    alice, _, _ = online(server, ca_file, "alice")
    alice.send(Join(room="#dev"))
    alice.expect(Presence, room="#dev", joined="alice")
    say(bob, "new", "new one", room="#dev")
    assert listed(alice)["room", "#dev"]["unread"] == 1


def test_long_texts_are_cut_in_the_list_and_long_lists_are_paged(make_server, ca_file):
    server = make_server(max_rooms_per_user=100)
    alice, _, _ = online(server, ca_file, "alice")
    for i in range(MAX_CONVERSATIONS_LISTED + 3):
        alice.send(Join(room=f"#r{i:02}"))
        alice.expect(Presence, room=f"#r{i:02}", joined="alice")
    say(alice, "long", "x" * (MAX_PREVIEW_CHARS + 50), room="#r00")
    alice.send(ListConversations(tag="all"))
    first = alice.expect(Conversations, tag="all")
    second = alice.expect(Conversations, tag="all")
    assert first.more and not second.more
    assert len(first.items) == MAX_CONVERSATIONS_LISTED
    items = {i["name"]: i for i in first.items + second.items}
    assert len(items) == MAX_CONVERSATIONS_LISTED + 4  # and #lobby
    assert items["#r00"]["cut"] is True
    assert items["#r00"]["last"]["text"] == "x" * MAX_PREVIEW_CHARS


def _history(client: RawClient, **fields) -> tuple[list[int], Batch]:
    client.send(History(tag="h", **fields))
    client.expect(Batch, state="open", kind="history")  # live messages may come first
    frames = client.recv_until(lambda f: isinstance(f, Batch) and f.state == "close")
    return [m.id for m in messages_in(frames) if isinstance(m, Message)], frames[-1]


def test_history_around_an_id_is_centred_on_it(server, ca_file):
    alice, _, _ = online(server, ca_file, "alice")
    ids = [say(alice, f"a{i}", f"line {i}", room="#lobby").id for i in range(20)]
    page, close = _history(alice, room="#lobby", around=ids[10], limit=5)
    assert page == ids[8:13] and close.more and close.target == "#lobby"
    # Near the end the older side fills up what the newer side lacks.
    page, close = _history(alice, room="#lobby", around=ids[-1], limit=5)
    assert page == ids[-5:]
    page, close = _history(alice, room="#lobby", around=ids[1], limit=6)
    assert page == ids[:6] and not close.more
    alice.send(b'{"type":"history","room":"#lobby","around":5,"before":9}\n')
    assert alice.expect(Error).code == ErrorCode.BAD_FRAME


def test_history_around_never_reaches_into_other_conversations(server, ca_file):
    alice, _, _ = online(server, ca_file, "alice")
    bob, _, _ = online(server, ca_file, "bob")
    _carol = online(server, ca_file, "carol")
    mine = say(bob, "b1", "to alice", to="alice")
    secret = say(bob, "b2", "to carol", to="carol")
    page, _ = _history(alice, with_="bob", around=secret.id, limit=10)
    assert page == [mine.id]
    page, _ = _history(alice, room="#lobby", around=secret.id, limit=10)
    assert secret.id not in page and mine.id not in page


@pytest.mark.parametrize("limit", [1, 2])
def test_history_around_with_tiny_pages(server, ca_file, limit):
    alice, _, _ = online(server, ca_file, "alice")
    ids = [say(alice, f"a{i}", f"line {i}", room="#lobby").id for i in range(4)]
    page, _ = _history(alice, room="#lobby", around=ids[2], limit=limit)
    assert ids[2] in page and len(page) == limit
