"""PgBus on a real PostgreSQL server: what one bus publishes every bus receives, in
order, however many events; a lost listening connection is made again and the node is
asked to resync; a malformed payload is ignored."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import psycopg
import pytest

from parley_chat.server.bus import Event
from parley_chat.server.bus_postgres import CHANNEL, PgBus, libpq_url

TIMEOUT = 30.0


class Inbox:
    """What one bus delivered: (node, event) in order, and the resyncs it asked for."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Event]] = queue.Queue()
        self.resynced = threading.Event()

    def receive(self, node: str, events: list[Event]) -> None:
        for e in events:
            self.events.put((node, e))

    def resync(self) -> None:
        self.resynced.set()

    def take(self, count: int) -> list[tuple[str, Event]]:
        return [self.events.get(timeout=TIMEOUT) for _ in range(count)]


@pytest.fixture
def buses(pg_url: str) -> Iterator[tuple[tuple[PgBus, Inbox], tuple[PgBus, Inbox]]]:
    pairs = []
    for name in ("a#1", "b#1"):
        bus, inbox = PgBus(pg_url, name), Inbox()
        bus.start(inbox.receive, inbox.resync)
        pairs.append((bus, inbox))
    yield pairs[0], pairs[1]
    for bus, _ in pairs:
        bus.stop()


def test_every_bus_receives_what_one_publishes_in_order(buses) -> None:
    (a, a_in), (_b, b_in) = buses
    events = [Event("message", i, room="#lobby") for i in range(1, 5001)]  # many payloads
    a.publish(events)
    for inbox in (a_in, b_in):  # the publisher hears itself too (it tells them apart by name)
        got = inbox.take(len(events))
        assert [e for _, e in got] == events
        assert {node for node, _ in got} == {"a#1"}


def test_a_lost_listener_comes_back_and_asks_for_a_resync(buses, pg_url: str) -> None:
    (a, _a_in), (b, b_in) = buses
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as admin:
        done = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (b.listen_application_name,),
        ).fetchall()
    assert done == [(True,)]
    assert b_in.resynced.wait(TIMEOUT)  # listening again, and told to read the database
    assert b.reconnects == 1
    a.publish([Event("alive")])
    assert b_in.take(1) == [("a#1", Event("alive"))]


def test_a_malformed_payload_is_ignored(buses, pg_url: str) -> None:
    (a, _a_in), (_b, b_in) = buses
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as other:
        other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "not json"))
        other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, '{"n": "x", "e": [{"k": "nope"}]}'))
    a.publish([Event("sync")])
    assert b_in.take(1) == [("a#1", Event("sync"))]  # the bad ones were skipped


def test_the_bus_refuses_a_database_that_is_not_postgresql() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        PgBus("sqlite:///x.db", "a#1")
