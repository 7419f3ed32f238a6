# Tests for server/hub.py: presence and fan-out, with fake peers (no sockets).

import json
from datetime import datetime

import pytest

from parley_chat.server.hub import Hub
from parley_chat.server.store.records import StoredMessage


class FakePeer:
    #: No I/O loop: the hub hands deliveries over at once, on the calling thread.
    loop = None

    def __init__(self):
        self.frames = []

        self.calls = 0

    def deliver(self, data, message_id=None, *, lazy=False):
        self.calls += 1
        self.frames.extend(json.loads(line) for line in data.splitlines())

    def deliver_many(self, chunks):
        self.calls += 1
        for _, data in chunks:
            self.frames.extend(json.loads(line) for line in data.splitlines())

    def deliver_shared(self, data, chunks):
        self.calls += 1
        self.frames.extend(json.loads(line) for line in data.splitlines())


class SharingPeer(FakePeer):
    """A peer that keeps the bytes objects it was handed as shared."""

    def __init__(self):
        super().__init__()
        self.shared = []

    def deliver_shared(self, data, chunks):
        self.calls += 1
        self.shared.append(data)
        assert b"".join(d for _, d in chunks) == data
        self.frames.extend(json.loads(line) for line in data.splitlines())


def _msg(id_, kind="public", room="#lobby", sender="alice", recipient=None, cid=None):
    return StoredMessage(
        id=id_,
        created_at=datetime(2026, 11, 24, 10, 0, 0),
        kind=kind,
        room=room,
        sender=sender,
        recipient=recipient,
        body="hi",
        client_msg_id=cid,
    )


def _hub_with_three():
    hub = Hub()
    peers = {n: FakePeer() for n in ("alice", "alice2", "bob", "carol")}
    assert hub.attach(peers["alice"], 1, "alice", ["#lobby"]) is True
    assert hub.attach(peers["alice2"], 1, "alice", ["#lobby"]) is False
    hub.attach(peers["bob"], 2, "bob", ["#lobby", "#dev"])
    hub.attach(peers["carol"], 3, "carol", ["#lobby"])
    return hub, peers


def test_public_message_reaches_room_members_with_ref_only_for_the_sender():
    hub, peers = _hub_with_three()
    n = hub.deliver_message(_msg(5, cid="c1"), sender_id=1, ref="c1")
    assert n == 4
    assert peers["alice"].frames[-1]["ref"] == "c1"
    assert peers["alice2"].frames[-1]["ref"] == "c1"
    assert "ref" not in peers["bob"].frames[-1]
    assert peers["carol"].frames[-1]["id"] == 5


def test_private_message_reaches_only_its_two_parties():
    hub, peers = _hub_with_three()
    msg = _msg(6, kind="private", room=None, sender="alice", recipient="bob", cid="c2")
    assert hub.deliver_message(msg, sender_id=1, ref="c2") == 3
    assert peers["carol"].frames == []
    assert peers["bob"].frames[-1]["to"] == "bob"
    assert peers["bob"].frames[-1]["kind"] == "private"


def test_room_message_skips_non_members():
    hub, peers = _hub_with_three()
    hub.deliver_message(_msg(7, room="#dev", sender="bob"), sender_id=2, ref=None)
    assert peers["bob"].frames and not peers["carol"].frames and not peers["alice"].frames


def test_presence_and_detach():
    hub, peers = _hub_with_three()
    assert hub.online_in("#LOBBY") == ["alice", "bob", "carol"]
    assert hub.detach(peers["alice"], 1) is None, "alice still has a connection"
    assert hub.detach(peers["alice2"], 1) == ["#lobby"]
    assert hub.online_in("#lobby") == ["bob", "carol"]
    hub.publish_presence("#lobby", left="alice")
    # A delta: who left, not the whole list (a join storm stays linear in bytes).
    assert peers["bob"].frames[-1] == {"type": "presence", "room": "#lobby", "left": "alice"}
    assert not peers["alice"].frames


def test_a_leaver_is_told_about_its_own_leave_through_extra_user():
    hub, peers = _hub_with_three()
    hub.left(2, "#dev")
    hub.publish_presence("#dev", left="bob", extra_user=2)
    assert peers["bob"].frames[-1] == {"type": "presence", "room": "#dev", "left": "bob"}
    assert not peers["carol"].frames


def test_a_batch_hands_each_connection_its_share_once_in_order():
    hub, peers = _hub_with_three()
    with hub.batch():
        for i in range(5):
            hub.deliver_message(_msg(10 + i), sender_id=None, ref=None)
        hub.reply(peers["bob"], b'{"type":"ack","ref":"x","id":14,"ts":"t"}\n')
        assert peers["bob"].calls == 0, "nothing is handed over before the batch ends"
    assert peers["bob"].calls == 1
    assert [f.get("id") for f in peers["bob"].frames] == [10, 11, 12, 13, 14, 14]
    assert peers["bob"].frames[-1]["type"] == "ack"
    assert peers["carol"].calls == 1 and len(peers["carol"].frames) == 5


def test_a_room_run_is_one_bytes_object_shared_by_every_plain_member():
    hub = Hub()
    peers = {f"u{i}": SharingPeer() for i in range(4)}
    for i, (nick, peer) in enumerate(peers.items()):
        hub.attach(peer, i + 1, nick, ["#lobby"])
    with hub.batch():
        for i in range(3):
            hub.deliver_message(_msg(20 + i, sender="u0", cid=f"c{i}"), sender_id=1, ref=f"c{i}")
        hub.reply(peers["u0"], b'{"type":"ack","ref":"c2","id":22,"ts":"t"}\n')
    readers = [peers[n] for n in ("u1", "u2", "u3")]
    assert all(len(p.shared) == 1 for p in readers)
    assert readers[0].shared[0] is readers[1].shared[0] is readers[2].shared[0]
    assert [f["id"] for f in readers[0].frames] == [20, 21, 22]
    assert all("ref" not in f for f in readers[0].frames)
    # The sender gets its own copies (with ref), then its ack, in one call of its own.
    sender = peers["u0"]
    assert sender.shared == [] and sender.calls == 1
    assert [(f["type"], f.get("ref")) for f in sender.frames] == [
        ("message", "c0"),
        ("message", "c1"),
        ("message", "c2"),
        ("ack", "c2"),
    ]


def test_a_batch_keeps_id_order_across_rooms_and_private_messages():
    hub, peers = _hub_with_three()  # bob is in #lobby and #dev
    with hub.batch():
        hub.deliver_message(_msg(30), sender_id=None, ref=None)
        hub.deliver_message(_msg(31, room="#dev", sender="bob"), sender_id=None, ref=None)
        pm = _msg(32, kind="private", room=None, sender="alice", recipient="bob", cid="p")
        hub.deliver_message(pm, sender_id=1, ref="p")
        hub.deliver_message(_msg(33), sender_id=None, ref=None)
    assert [f["id"] for f in peers["bob"].frames] == [30, 31, 32, 33]
    assert [f["id"] for f in peers["carol"].frames] == [30, 33]
    assert [f["id"] for f in peers["alice"].frames] == [30, 32, 33]
    assert peers["alice"].frames[1]["ref"] == "p"


def test_a_membership_change_inside_a_batch_starts_a_new_audience():
    hub, peers = _hub_with_three()
    dave = FakePeer()
    with hub.batch():
        hub.deliver_message(_msg(40), sender_id=None, ref=None)
        hub.attach(dave, 4, "dave", ["#lobby"])
        hub.deliver_message(_msg(41), sender_id=None, ref=None)
    assert [f["id"] for f in dave.frames] == [41]
    assert [f["id"] for f in peers["carol"].frames] == [40, 41]


def test_a_rooms_audience_is_reused_across_batches_until_someone_comes_or_goes():
    hub, peers = _hub_with_three()
    with hub.batch():
        hub.deliver_message(_msg(50), sender_id=None, ref=None)
    dave = FakePeer()
    hub.attach(dave, 4, "dave", ["#lobby"])  # after the first batch built the audience
    with hub.batch():
        hub.deliver_message(_msg(51, sender="alice", cid="a"), sender_id=1, ref="a")
    hub.detach(peers["carol"], 3)
    with hub.batch():
        hub.deliver_message(_msg(52), sender_id=None, ref=None)
    assert [f["id"] for f in dave.frames] == [51, 52]
    assert [f["id"] for f in peers["carol"].frames] == [50, 51]
    # Both of the sender's connections get its own copy, with the ref, in the second batch.
    assert [f.get("ref") for f in peers["alice"].frames] == [None, "a", None]
    assert [f.get("ref") for f in peers["alice2"].frames] == [None, "a", None]
    assert [f.get("ref") for f in peers["bob"].frames] == [None, None, None]


def test_presence_deltas_wait_for_the_flush_and_skip_the_user_they_are_about():
    requested = []
    hub = Hub(request_flush=lambda: requested.append(1))
    alice, bob = FakePeer(), FakePeer()
    hub.attach(alice, 1, "alice", ["#lobby"])
    hub.attach(bob, 2, "bob", ["#lobby"])
    hub.publish_presence("#lobby", joined="bob")
    hub.publish_presence("#lobby", left="carol")
    assert requested == [1], "one request per gathering, not one per delta"
    assert alice.frames == [] and bob.frames == []
    hub.flush_presence()
    assert alice.frames == [
        {"type": "presence", "room": "#lobby", "joined": "bob"},
        {"type": "presence", "room": "#lobby", "left": "carol"},
    ]
    assert alice.calls == 1, "all of a flush's deltas in one write"
    assert bob.frames == [{"type": "presence", "room": "#lobby", "left": "carol"}]


def test_a_member_that_arrives_after_a_delta_does_not_get_it():
    hub = Hub(request_flush=lambda: None)
    alice, bob = FakePeer(), FakePeer()
    hub.attach(alice, 1, "alice", ["#lobby"])
    hub.publish_presence("#lobby", joined="alice")
    hub.attach(bob, 2, "bob", ["#lobby"])  # bob's full list already has alice
    hub.publish_presence("#lobby", joined="bob")
    hub.flush_presence()
    assert bob.frames == []
    assert alice.frames == [{"type": "presence", "room": "#lobby", "joined": "bob"}]


def test_a_message_flushes_the_rooms_waiting_deltas_first():
    hub = Hub(request_flush=lambda: None)
    alice, bob = FakePeer(), FakePeer()
    hub.attach(alice, 1, "alice", ["#lobby"])
    hub.attach(bob, 2, "bob", ["#lobby"])
    hub.publish_presence("#lobby", joined="bob")
    hub.deliver_message(_msg(50, sender="bob"), sender_id=None, ref=None)
    assert [f["type"] for f in alice.frames] == ["presence", "message"]


def test_presence_pages_split_big_rooms_and_mark_all_but_the_last():
    from parley_chat.server.hub import PRESENCE_PAGE, presence_pages

    nicks = [f"user{i:05d}" for i in range(PRESENCE_PAGE * 2 + 3)]
    pages = [json.loads(p) for p in presence_pages("#lobby", nicks)]
    assert [len(p["online"]) for p in pages] == [PRESENCE_PAGE, PRESENCE_PAGE, 3]
    assert [p.get("more") for p in pages] == [True, True, None]
    assert [n for p in pages for n in p["online"]] == nicks
    longest = [f"{i:0>24}" for i in range(PRESENCE_PAGE)]  # nicks of the maximum length
    assert all(len(p) < 64 * 1024 for p in presence_pages("#lobby", longest))


def test_join_and_leave_update_membership():
    hub, _peers = _hub_with_three()
    hub.joined(3, "#Dev")
    assert hub.room_name(3, "#dev") == "#Dev"
    assert "carol" in hub.online_in("#dev")
    hub.left(3, "#dev")
    assert hub.room_name(3, "#dev") is None


@pytest.mark.parametrize(
    "msg",
    [
        _msg(1, cid="c1"),
        _msg(2, kind="system", sender=None),
        _msg(3, kind="private", room=None, recipient="bob", cid="c3"),
        StoredMessage(
            id=2**63 - 1,
            created_at=datetime(2026, 12, 1, 9, 30, 0, 123456),
            kind="public",
            room="#lobby",
            sender="alice",
            recipient=None,
            body='quotes " and \\ and \u202e and \n and emoji \U0001f600',
            client_msg_id="x",
        ),
        StoredMessage(
            id=9,
            created_at=datetime(2026, 12, 1, 9, 30, 0, 123456),
            kind="private",
            room=None,
            sender="alice",
            recipient="bob",
            body="",
            client_msg_id="c9",
            envelope='{"v":1,"c":"AAAA","s":"quoted \\" and \\\\"}',
        ),
    ],
)
@pytest.mark.parametrize("ref", [None, "c1"])
def test_message_bytes_are_exactly_the_checked_frames_encoding(msg, ref):
    from parley_chat.protocol import encode
    from parley_chat.server.hub import message_bytes, message_frame

    plain, own = message_bytes(msg, ref)
    assert plain == encode(message_frame(msg))
    assert own == encode(message_frame(msg, ref))
    if ref is None:
        assert own is plain


# --- lingering (the presence grace) ------------------------------------------------------


def test_a_lingering_user_stays_listed_and_comes_back_silently():
    hub, peers = _hub_with_three()
    assert hub.release(peers["bob"], 2) is not None  # bob's only connection
    assert hub.online_in("#dev") == ["bob"] and hub.is_online("bob")
    again = FakePeer()
    # Back within the grace: not "just came online", so nobody is told.
    assert hub.attach(again, 2, "bob", ["#lobby"]) is False
    assert hub.online_in("#dev") == []  # the rooms the database has now
    assert hub.online_in("#lobby") == ["alice", "bob", "carol"]


def test_an_expired_linger_forgets_the_user_and_a_stale_token_does_nothing():
    hub, peers = _hub_with_three()
    first = hub.release(peers["bob"], 2)
    assert first is not None
    hub.attach(FakePeer(), 2, "bob", ["#lobby", "#dev"])  # came back
    assert hub.expire(2, first) is None  # that grace is over, but bob is here
    second = hub.release(next(iter(hub._users[2].conns)), 2)
    assert second is not None and second != first
    assert hub.expire(2, first) is None
    assert hub.expire(2, second) == ("bob", ["#lobby", "#dev"])
    assert not hub.is_online("bob") and hub.online_in("#dev") == []


def test_release_of_one_of_several_connections_is_no_linger():
    hub, peers = _hub_with_three()
    assert hub.release(peers["alice"], 1) is None
    assert hub.release(peers["alice2"], 1) is not None


def test_linger_lists_a_user_the_restart_cut_off_until_expiry():
    hub = Hub()
    token = hub.linger(7, "dora", ["#lobby"])
    assert token is not None and hub.online_in("#lobby") == ["dora"]
    assert hub.linger(7, "dora", ["#lobby"]) is None  # already known
    assert hub.attach(FakePeer(), 7, "dora", ["#lobby"]) is False
    assert hub.expire(7, token) is None


class FakeLoop:
    """A loop that keeps what the hub posts until the test runs it."""

    def __init__(self):
        self.steps = []

    def post(self, step):
        self.steps.append(step)

    def run(self):
        steps, self.steps = self.steps, []
        for step in steps:
            step()


class LoopPeer(SharingPeer):
    """A connection served by a (fake) loop."""

    def __init__(self, loop):
        super().__init__()
        self.loop = loop


def test_connections_on_a_loop_get_their_share_when_the_loop_runs_its_step():
    loop = FakeLoop()
    hub = Hub()
    peers = {f"u{i}": LoopPeer(loop) for i in range(3)}
    for i, (nick, peer) in enumerate(peers.items()):
        hub.attach(peer, i + 1, nick, ["#lobby"])
    offline = FakePeer()  # no loop: handed over at once
    hub.attach(offline, 9, "nine", ["#lobby"])
    with hub.batch():
        hub.deliver_message(_msg(60, sender="u0", cid="c"), sender_id=1, ref="c")
        hub.reply(peers["u0"], b'{"type":"ack","ref":"c","id":60,"ts":"t"}\n')
    # One step for the whole group, whatever the audience.
    assert len(loop.steps) == 1
    assert all(p.calls == 0 for p in peers.values()), "queued only on the loop's thread"
    assert [f["id"] for f in offline.frames] == [60]
    loop.run()
    assert [f["id"] for f in peers["u1"].frames] == [60] == [f["id"] for f in peers["u2"].frames]
    assert peers["u1"].shared[0] is peers["u2"].shared[0]
    assert [(f["type"], f.get("ref")) for f in peers["u0"].frames] == [
        ("message", "c"),
        ("ack", "c"),
    ]


def test_after_steps_wait_until_every_loop_has_queued_its_part():
    loops = [FakeLoop(), FakeLoop()]
    hub = Hub()
    peers = [LoopPeer(loops[i % 2]) for i in range(4)]
    for i, peer in enumerate(peers):
        hub.attach(peer, i + 1, f"u{i}", ["#lobby"])
    done = []
    with hub.batch():
        hub.deliver_message(_msg(70), sender_id=None, ref=None)
        hub.after_batch(lambda: done.append([len(p.frames) for p in peers]))
    assert done == [] and all(len(lp.steps) == 1 for lp in loops)
    loops[1].run()
    assert done == [], "one loop has not queued its part yet"
    loops[0].run()
    # Run once, and only when every connection had the message queued.
    assert done == [[1, 1, 1, 1]]


def test_consecutive_batches_reach_a_loop_connection_in_commit_order():
    loop = FakeLoop()
    hub = Hub()
    reader, sender = LoopPeer(loop), LoopPeer(loop)
    hub.attach(reader, 1, "reader", ["#lobby"])
    hub.attach(sender, 2, "sender", ["#lobby"])
    with hub.batch():
        hub.deliver_message(_msg(80), sender_id=None, ref=None)
    with hub.batch():  # the reader is special here: its own reply rides along
        hub.deliver_message(_msg(81, sender="reader", cid="r"), sender_id=1, ref="r")
        hub.reply(reader, b'{"type":"ack","ref":"r","id":81,"ts":"t"}\n')
    loop.run()
    assert [(f["type"], f.get("id")) for f in reader.frames] == [
        ("message", 80),
        ("message", 81),
        ("ack", 81),
    ]
    assert [f["id"] for f in sender.frames] == [80, 81]
