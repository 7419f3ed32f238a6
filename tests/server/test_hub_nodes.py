"""Unit tests of the hub's part in several nodes: users online on other nodes, the
observer of presence and membership, and the sequencer that orders deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from parley_chat.server.hub import Hub
from parley_chat.server.store.records import StoredMessage


class Conn:
    """A recording connection."""

    #: No I/O loop: the hub hands deliveries over at once, on the calling thread.
    loop = None

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        self.data.append(data)

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        self.data.extend(d for _, d in chunks)

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        self.data.append(data)


class Watcher:
    """Records what the hub tells its observer."""

    def __init__(self) -> None:
        self.presence: list[tuple[int, bool]] = []
        self.members: list[int] = []

    def presence_changed(self, user_id: int, online: bool) -> None:
        self.presence.append((user_id, online))

    def membership_changed(self, user_id: int) -> None:
        self.members.append(user_id)


def _hub() -> tuple[Hub, Watcher]:
    hub = Hub()
    hub.observer = w = Watcher()
    return hub, w


def test_a_user_on_another_node_is_listed_once_and_stays_while_connected_anywhere() -> None:
    hub, w = _hub()
    assert hub.remote_up(1, "alice", ["#lobby"], "b#1") is True  # newly online: tell the rooms
    assert hub.remote_up(1, "alice", ["#lobby"], "c#1") is False
    conn = Conn()
    assert hub.attach(conn, 1, "alice", ["#lobby"]) is False  # known: no joined noise
    assert w.presence == [(1, True)]  # but the other nodes hear she is here now
    assert hub.online_in("#lobby") == ["alice"]
    assert hub.detach(conn, 1) is None  # still on b and c: nobody is told she left
    assert w.presence == [(1, True), (1, False)]
    assert hub.remote_down(1, "b#1") is None
    assert hub.remote_down(1, "c#1") == ("alice", ["#lobby"])  # gone everywhere now
    assert hub.online_in("#lobby") == []


def test_a_lingering_user_on_another_node_ends_quietly_when_the_grace_runs_out() -> None:
    hub, w = _hub()
    conn = Conn()
    hub.attach(conn, 1, "alice", ["#lobby"])
    hub.remote_up(1, "alice", ["#lobby"], "b#1")
    token = hub.release(conn, 1)
    assert token is not None
    assert hub.expire(1, token) is None  # online on b: nobody is told
    assert w.presence == [(1, True), (1, False)]
    assert hub.knows(1) and hub.online_in("#lobby") == ["alice"]


def test_forgetting_a_node_takes_only_its_users_offline() -> None:
    hub, _ = _hub()
    hub.remote_up(1, "alice", ["#lobby"], "b#1")
    hub.remote_up(2, "bob", ["#lobby", "#dev"], "b#1")
    hub.remote_up(2, "bob", ["#lobby", "#dev"], "c#1")
    hub.attach(Conn(), 3, "carol", ["#lobby"])
    hub.remote_up(3, "carol", ["#lobby"], "b#1")
    assert hub.forget_node("b#1") == [("alice", ["#lobby"])]
    assert hub.online_in("#lobby") == ["bob", "carol"]


def test_rooms_set_from_the_database_report_what_changed_and_tell_nobody() -> None:
    hub, w = _hub()
    hub.remote_up(1, "alice", ["#lobby", "#old"], "b#1")
    added, dropped = hub.set_rooms(1, ["#lobby", "#new"])
    assert (added, dropped) == (["#new"], ["#old"])
    assert hub.online_in("#new") == ["alice"] and hub.online_in("#old") == []
    assert w.members == []  # set_rooms is the other nodes' news: not sent back
    hub.joined(1, "#x")  # a join made here is news for them
    assert w.members == [1]


def test_reaches_counts_only_connections_here() -> None:
    hub, _ = _hub()
    hub.remote_up(1, "alice", ["#lobby"], "b#1")
    assert not hub.reaches("#lobby") and not hub.reaches(None, (1,))
    hub.attach(Conn(), 2, "bob", ["#lobby"])
    assert hub.reaches("#lobby") and hub.reaches(None, (1, 2)) and not hub.reaches("#dev")


def test_with_a_sequencer_a_message_and_what_follows_it_wait_their_turn() -> None:
    hub = Hub()
    offered: list[tuple[int, int | None, str | None, Callable[[], None] | None]] = []

    class Seq:
        def offer(
            self,
            msg: StoredMessage,
            sender_id: int | None,
            ref: str | None,
            then: Callable[[], None] | None,
        ) -> None:
            offered.append((msg.id, sender_id, ref, then))

    hub.sequencer = Seq()
    conn = Conn()
    hub.attach(conn, 1, "alice", ["#lobby"])
    msg = StoredMessage(
        7,
        datetime(2026, 12, 1),
        "public",
        "#lobby",
        "alice",
        None,
        "hi",
        "c1",
    )
    acked: list[int] = []
    assert hub.deliver_message(msg, 1, "c1", then=lambda: acked.append(7)) == 0
    assert conn.data == [] and acked == []  # nothing until the sequencer says so
    (mid, sender, ref, then) = offered[0]
    assert (mid, sender, ref) == (7, 1, "c1")
    hub.deliver_now(msg, sender, ref)
    assert then is not None
    then()
    assert b'"ref":"c1"' in conn.data[0] and acked == [7]
