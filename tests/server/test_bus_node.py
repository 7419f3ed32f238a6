"""Unit tests of server/bus_node.py: a Node over a stand-in bus, a real SQLite store and
a real Hub, with recording connections. The bus is the one fake: what the Node does
with what other nodes say (out of order, never, twice) is what is tested here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from parley_chat.server.bus import Event, Receive, Resync
from parley_chat.server.bus_node import Node
from parley_chat.server.hub import Hub
from parley_chat.server.moderation import MuteCache
from parley_chat.server.store import Store, upgrade_to_head, writes

NOW = datetime(2026, 12, 1, 12, 0, 0)


class StandInBus:
    """Records what the node publishes; the test plays the other nodes."""

    shared = True

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.receive: Receive | None = None
        self.resync: Resync | None = None

    def start(self, receive: Receive, resync: Resync) -> None:
        self.receive, self.resync = receive, resync

    def publish(self, events: list[Event]) -> None:
        self.published.extend(events)

    def stop(self) -> None:
        pass


class Recorder:
    """A connection that keeps the message ids it was given, in order, and the
    other frames' bytes (presence)."""

    #: No I/O loop: the hub hands deliveries over at once, on the calling thread.
    loop = None

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.other: list[bytes] = []

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        if message_id is not None:
            self.ids.append(message_id)
        else:
            self.other.append(data)

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        self.ids.extend(mid for mid, _ in chunks if mid is not None)

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        self.deliver_many(chunks)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    upgrade_to_head(url, backup=False)
    s = Store(url)
    s.start()
    yield s
    s.close()


@pytest.fixture
def users(store: Store) -> dict[str, int]:
    return {
        nick: store.submit(lambda s, n=nick: writes.create_user(s, n, "scrypt$x", NOW)).result(5).id
        for nick in ("alice", "bob", "carol")
    }


@pytest.fixture
def node(store: Store) -> Iterator[tuple[Node, StandInBus, Hub]]:
    bus = StandInBus()
    hub = Hub()
    n = Node("here#1", bus, store, hub, MuteCache(), restart_grace=0.0)
    n.start()
    yield n, bus, hub
    n.stop()


def _post(store: Store, sender: int, text: str, room: str = "#lobby", **kw: object):
    return store.submit(
        lambda s: writes.add_message(
            s, kind="public", body=text, now=NOW, room=room, sender_id=sender, **kw
        )
    ).result(5)[0]


def test_notifications_out_of_order_are_delivered_in_id_order_once(node, store, users) -> None:
    n, bus, hub = node
    conn = Recorder()
    hub.attach(conn, users["bob"], "bob", ["#lobby"])
    msgs = [_post(store, users["alice"], f"m{i}") for i in range(3)]  # by "another node"
    ids = [m.id for m in msgs]
    assert bus.receive is not None
    bus.receive("there#1", [Event("message", ids[2], room="#lobby")])
    bus.receive("there#1", [Event("message", ids[0], room="#lobby")])
    bus.receive(
        "there#1",
        [Event("message", ids[1], room="#lobby"), Event("message", ids[0], room="#lobby")],
    )
    assert n.wait_idle(ids[2], timeout=10)
    assert conn.ids == ids


def test_a_gap_nobody_notified_is_read_after_the_hold(node, store, users) -> None:
    n, bus, hub = node
    conn = Recorder()
    hub.attach(conn, users["bob"], "bob", ["#lobby"])
    lost = [_post(store, users["alice"], f"lost {i}") for i in range(2)]  # never notified
    mine = _post(store, users["bob"], "mine")
    hub.deliver_message(mine, users["bob"], None)  # this node's own commit, after the gap
    assert n.wait_idle(mine.id, timeout=10)
    assert conn.ids == [lost[0].id, lost[1].id, mine.id]
    assert n.read_rows >= 2
    # This node told the others of its own message, with its routing.
    assert Event("message", mine.id, room="#lobby") in bus.published


def test_messages_nobody_here_needs_are_passed_without_reading(node, store, users) -> None:
    n, bus, hub = node
    conn = Recorder()
    hub.attach(conn, users["bob"], "bob", ["#lobby"])
    store.submit(lambda s: writes.join_room(s, users["alice"], "#elsewhere", NOW)).result(5)
    other = _post(store, users["alice"], "not for bob", room="#elsewhere")
    assert bus.receive is not None
    bus.receive("there#1", [Event("message", other.id, room="#elsewhere")])
    assert n.wait_idle(other.id, timeout=10)
    assert conn.ids == [] and n.read_rows == 0


def test_a_private_message_reaches_only_its_parties_connections(node, store, users) -> None:
    n, bus, hub = node
    bob, carol = Recorder(), Recorder()
    hub.attach(bob, users["bob"], "bob", ["#lobby"])
    hub.attach(carol, users["carol"], "carol", ["#lobby"])
    dm = store.submit(
        lambda s: writes.add_message(
            s,
            kind="private",
            body="psst",
            now=NOW,
            sender_id=users["alice"],
            recipient_id=users["bob"],
        )
    ).result(5)[0]
    assert bus.receive is not None
    bus.receive("there#1", [Event("message", dm.id, users=(users["alice"], users["bob"]))])
    assert n.wait_idle(dm.id, timeout=10)
    assert bob.ids == [dm.id] and carol.ids == []


def test_after_a_resync_everything_missed_is_delivered(node, store, users) -> None:
    n, bus, hub = node
    conn = Recorder()
    hub.attach(conn, users["bob"], "bob", ["#lobby"])
    missed = [_post(store, users["alice"], f"while deaf {i}") for i in range(5)]
    assert bus.resync is not None
    bus.resync()  # the listener came back: nothing was notified meanwhile
    assert n.wait_idle(missed[-1].id, timeout=10)
    assert conn.ids == [m.id for m in missed]
    assert Event("sync") in bus.published  # and presence is asked for again


def test_presence_of_another_node_lists_a_user_once_until_the_node_is_gone(
    node, store, users
) -> None:
    n, bus, hub = node
    watcher = Recorder()
    hub.attach(watcher, users["carol"], "carol", ["#lobby"])
    assert bus.receive is not None
    bus.receive("there#1", [Event("up", users=(users["alice"],))])
    bus.receive("yonder#1", [Event("up", users=(users["alice"],))])
    assert n.settle(timeout=10)
    assert hub.online_in("#lobby") == ["alice", "carol"]  # once, though on two nodes
    bus.receive("there#1", [Event("down", users=(users["alice"],))])
    assert n.settle(timeout=10)
    assert hub.online_in("#lobby") == ["alice", "carol"]  # still on yonder
    bus.receive("yonder#2", [Event("hello")])  # yonder restarted: its earlier users are gone
    assert n.settle(timeout=10)
    assert hub.online_in("#lobby") == ["carol"]


def test_an_own_message_read_before_its_writer_handed_it_over_still_gets_its_ack(
    node, store, users
) -> None:
    n, bus, hub = node
    conn = Recorder()
    hub.attach(conn, users["bob"], "bob", ["#lobby"])
    mine = _post(store, users["bob"], "mine")  # committed here; the hand-over comes later
    theirs = _post(store, users["alice"], "theirs")  # and another node's, after it
    assert bus.receive is not None
    bus.receive("there#1", [Event("message", theirs.id, room="#lobby")])
    assert n.wait_idle(theirs.id, timeout=10)  # both read from the database
    acked = []
    hub.deliver_message(mine, users["bob"], None, then=lambda: acked.append(mine.id))
    assert n.settle(timeout=10)
    assert acked == [mine.id]
    assert conn.ids == [mine.id, theirs.id]  # each once


def test_a_restarted_node_that_lists_its_user_again_makes_no_left_or_joined_noise(
    node, store, users
) -> None:
    n, bus, hub = node
    watcher = Recorder()
    hub.attach(watcher, users["carol"], "carol", ["#lobby"])
    assert bus.receive is not None
    bus.receive("yonder#1", [Event("up", users=(users["alice"],))])
    assert n.settle(timeout=10)
    assert hub.online_in("#lobby") == ["alice", "carol"]
    watcher.other.clear()
    # yonder restarts and at once lists alice again (she lingers there: cut off by the restart).
    bus.receive("yonder#2", [Event("hello"), Event("up", users=(users["alice"],))])
    assert n.settle(timeout=10)
    assert hub.online_in("#lobby") == ["alice", "carol"]
    assert not any(b'"left"' in d or b'"joined"' in d for d in watcher.other)
