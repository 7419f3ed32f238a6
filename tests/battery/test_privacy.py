# Battery #27 and #28: nobody reads what is not theirs, on any path: live
# delivery, replay (fresh and with last_seen), history (around an id too),
# search, the conversation list, read markers, guessed ids.

from __future__ import annotations

from parley_chat.protocol import (
    Ack,
    Conversations,
    Error,
    ErrorCode,
    Frame,
    History,
    Join,
    Leave,
    ListConversations,
    ListRooms,
    Message,
    Read,
    Search,
    Send,
    Who,
)
from tests.battery.helpers import barrier, codes, joined_presence, left_presence
from tests.support import messages_in, request_batch


def _ids(frames: list[Frame]) -> set[int]:
    return {m.id for m in messages_in(frames)}


def test_a_private_message_reaches_its_two_parties_and_nobody_else_on_any_path(server, battery):
    """Battery #27: a DM from A to B with C online: C never gets it live, in a replay, in history with A or B (or around its id), in search, in the conversation list, through a read marker, or by guessing its id."""
    carol = battery.online(server, "carol")
    alice = battery.online(server, "alice")
    bob = battery.online(server, "bob")
    battery.online(server, "dave").close()  # an account nobody wrote to, for comparison
    for c in (carol, alice, bob):
        barrier(c, "ready")
    alice.send(Send(id="dm", text="zebra secret for bob", to="bob"))
    dm = alice.expect(Ack).id
    assert bob.expect(Message, id=dm).text == "zebra secret for bob"
    alice.send(Send(id="pub", text="public after", room="#lobby"))
    public = alice.expect(Ack).id
    live = carol.recv_until(lambda f: isinstance(f, Message) and f.id == public)
    assert dm not in _ids(live), "carol got the DM live"
    # Replays: with last_seen = 0 (everything carol may see) and a fresh login.
    again = battery.connect(server)
    _, replay = again.login("carol", register=False, last_seen=0)
    assert public in _ids(replay) and dm not in _ids(replay)
    fresh = battery.connect(server)
    _, latest = fresh.login("carol", register=False)
    assert public in _ids(latest) and dm not in _ids(latest)
    # History with either party, a room page ending just past the DM's id, and search.
    answers = {}
    for tag, frame in {
        "with-alice": History(with_="alice", tag="with-alice"),
        "with-bob": History(with_="bob", tag="with-bob"),
        "with-dave": History(with_="dave", tag="with-dave"),
        "guess": History(room="#lobby", before=dm + 1, tag="guess"),
        "search": Search(words="zebra", tag="search"),
        "search-bob": Search(words="for bob", tag="search-bob"),
    }.items():
        messages, close = request_batch(carol, frame)
        assert dm not in {m.id for m in messages}, tag
        answers[tag] = (len(messages), close.more, close.count)
    # Not even "it exists": asking about bob looks like asking about dave, who got nothing.
    assert answers["with-alice"] == answers["with-bob"] == answers["with-dave"] == (0, False, 0)
    assert answers["search"] == answers["search-bob"] == (0, False, 0)
    # History around the DM's id, in the room and with either party.
    for tag, frame in {
        "around-room": History(room="#lobby", around=dm, tag="around-room"),
        "around-alice": History(with_="alice", around=dm, tag="around-alice"),
        "around-bob": History(with_="bob", around=dm, tag="around-bob"),
    }.items():
        messages, _ = request_batch(carol, frame)
        assert dm not in {m.id for m in messages}, tag
    # The conversation list (at login and on request) knows nothing of alice and bob's.
    for listing in (*again.before_replay, *fresh.before_replay):
        assert isinstance(listing, Conversations)
        assert [(i["kind"], i["name"]) for i in listing.items] == [("room", "#lobby")]
        assert "zebra" not in repr(listing.to_wire())
    carol.send(ListConversations(tag="mine"))
    mine = carol.expect(Conversations, tag="mine")
    assert {i["kind"] for i in mine.items} == {"room"} and "zebra" not in repr(mine.to_wire())
    # A read marker cannot be pointed at it, and the refusal does not quote it.
    for target in ({"with_": "alice"}, {"with_": "bob"}):
        carol.send(Read(id=dm, **target))
        refused = carol.expect(Error)
        assert refused.code == ErrorCode.BAD_FRAME and "zebra" not in refused.message
    # The two parties do see it, in their lists too.
    for party, peer in ((alice, "bob"), (bob, "alice")):
        party.send(ListConversations(tag="p"))
        items = {(i["kind"], i["name"]): i for i in party.expect(Conversations, tag="p").items}
        assert items["private", peer]["last"]["id"] == dm
    assert [m.id for m in request_batch(bob, History(with_="alice", tag="b"))[0]] == [dm]
    assert [m.id for m in request_batch(alice, Search(words="zebra", tag="a"))[0]] == [dm]
    battery.finish(server)


def test_nothing_but_login_and_keepalive_is_served_before_login(server, battery):
    """Battery #28: before a hello, history, search, rooms, who, join, leave and send get `not-logged-in` and no data."""
    battery.online(server, "alice").close()
    client = battery.connect(server)
    for i, frame in enumerate(
        [
            History(room="#lobby", tag="h"),
            History(with_="alice", tag="d"),
            Search(words="anything", tag="s"),
            ListRooms(tag="r"),
            Who(tag="w"),
            Join(room="#new"),
            Leave(room="#lobby"),
            Send(id="x", text="hi", room="#lobby"),
        ]
    ):
        client.send(frame)
        got = barrier(client, f"p{i}")
        assert codes(got) == [ErrorCode.NOT_LOGGED_IN], frame
        assert [f for f in got if f.TYPE != "error"] == [], "data before login"
    battery.finish(server)


def test_only_members_read_a_rooms_history_replay_and_search(server, battery):
    """Battery #28: a non-member (and a former member) asking for a room's history gets `not-in-room`; replay and search show nothing of it."""
    alice = battery.online(server, "alice")
    carol = battery.online(server, "carol")
    alice.send(Join(room="#secret"))
    alice.recv_until(lambda f: joined_presence(f, "#secret", "alice"))
    alice.send(Send(id="s1", text="quokka plans", room="#secret"))
    hidden = alice.expect(Ack).id
    carol.send(History(room="#secret", tag="h1"))
    assert codes(barrier(carol, "h1")) == [ErrorCode.NOT_IN_ROOM]
    assert request_batch(carol, Search(words="quokka", tag="s1"))[0] == []
    # A former member: in while it was said, out now.
    carol.send(Join(room="#secret"))
    carol.recv_until(lambda f: joined_presence(f, "#secret", "carol"))
    assert hidden in {m.id for m in request_batch(carol, History(room="#secret", tag="h2"))[0]}
    carol.send(Leave(room="#secret"))
    carol.recv_until(lambda f: left_presence([f], "carol"))
    carol.send(History(room="#secret", tag="h3"))
    assert codes(barrier(carol, "h3")) == [ErrorCode.NOT_IN_ROOM]
    assert request_batch(carol, Search(words="quokka", tag="s2"))[0] == []
    again = battery.connect(server)
    _, replay = again.login("carol", register=False, last_seen=0)
    assert hidden not in _ids(replay)
    battery.finish(server)
