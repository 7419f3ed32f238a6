# Tests for server/hub.py: presence and fan-out, with fake peers (no sockets).

import json
from datetime import datetime

from parley_chat.server.hub import Hub
from parley_chat.server.store.records import StoredMessage


class FakePeer:
    def __init__(self):
        self.frames = []

        self.calls = 0

    def deliver(self, data, message_id=None, *, lazy=False):
        self.calls += 1
        self.frames.append(json.loads(data))

    def deliver_many(self, chunks):
        self.calls += 1
        for _, data in chunks:
            self.frames.append(json.loads(data))


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
