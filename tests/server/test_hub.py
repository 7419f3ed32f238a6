# Tests for server/hub.py: presence and fan-out, with fake peers (no sockets).

import json
from datetime import datetime

from server.hub import Hub
from server.store.records import StoredMessage


class FakePeer:
    def __init__(self):
        self.frames = []

    def deliver(self, data, message_id=None):
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
    assert peers["bob"].frames[-1] == {
        "type": "presence",
        "room": "#lobby",
        "online": ["bob", "carol"],
        "left": "alice",
    }
    assert not peers["alice"].frames


def test_join_and_leave_update_membership():
    hub, _peers = _hub_with_three()
    hub.joined(3, "#Dev")
    assert hub.room_name(3, "#dev") == "#Dev"
    assert "carol" in hub.online_in("#dev")
    hub.left(3, "#dev")
    assert hub.room_name(3, "#dev") is None
