"""Unit tests of server/bus_order.py (delivery strictly by id) and the bus events."""

from __future__ import annotations

import json

import pytest

from parley_chat.server.bus import MAX_PAYLOAD_BYTES, Event, pack, unpack
from parley_chat.server.bus_order import Order, Read


def test_in_order_offers_come_out_at_once() -> None:
    order: Order[str] = Order(last=10, hold=0.05)
    order.offer(11, "a")
    order.offer(12, "b")
    assert order.take(now=0.0) == ["a", "b"]
    assert order.last == 12
    assert order.to_read(now=100.0) is None
    assert order.deadline() is None


def test_a_later_id_waits_for_the_gap_then_the_gap_is_read() -> None:
    order: Order[str] = Order(last=10, hold=0.05)
    order.offer(12, "b")
    assert order.take(now=1.0) == []
    assert order.deadline() == pytest.approx(1.05)
    assert order.to_read(now=1.01) is None  # still within the hold
    # The notification of 11 arrives in time: no read at all.
    order.offer(11, "a")
    assert order.take(now=1.02) == ["a", "b"]
    assert order.to_read(now=2.0) is None


def test_a_gap_past_the_hold_is_read_up_to_the_highest_committed_id() -> None:
    order: Order[str] = Order(last=10, hold=0.05)
    order.offer(13, "c")
    order.take(now=1.0)
    assert order.to_read(now=1.06) == Read(10, 13)
    order.filled(13, {11: "a", 12: "b", 13: "ignored: 13 is in hand"})
    assert order.take(now=1.07) == ["a", "b", "c"]
    assert order.last == 13


def test_an_id_the_database_does_not_have_is_skipped() -> None:
    order: Order[str] = Order(last=0, hold=0.05)
    order.offer(3, "c")
    order.take(now=0.0)
    order.filled(3, {1: "a"})  # 2 was rolled back (SQLite) or removed
    assert order.take(now=0.1) == ["a", "c"]


def test_needed_ids_are_read_at_once_and_skipped_ones_not_at_all() -> None:
    order: Order[str] = Order(last=5, hold=10.0)
    order.skip(6)
    order.need(7)
    assert order.take(now=0.0) == []  # 6 is passed without a read
    assert order.last == 6
    assert order.deadline() == float("-inf")
    assert order.to_read(now=0.0) == Read(6, 7)
    order.filled(7, {7: "seven"})
    assert order.take(now=0.0) == ["seven"]


def test_duplicates_and_old_ids_are_ignored() -> None:
    order: Order[str] = Order(last=5, hold=0.05)
    order.offer(5, "old")
    order.offer(6, "first")
    order.offer(6, "second")
    order.need(6)
    assert order.take(now=0.0) == ["first"]
    order.offer(6, "again")
    order.skip(4)
    assert order.take(now=0.0) == []
    assert order.waiting == 0


def test_ids_arriving_in_any_order_come_out_once_each_in_order() -> None:
    import random

    rng = random.Random(7)
    ids = list(range(1, 501))
    rng.shuffle(ids)
    order: Order[int] = Order(last=0, hold=1.0)
    out: list[int] = []
    for mid in ids:
        order.offer(mid, mid)
        out += order.take(now=0.0)
    assert out == list(range(1, 501))


def test_events_round_trip_and_payloads_stay_under_the_cap() -> None:
    events = [Event("message", i, room="#lobby") for i in range(1, 2000)]
    events.append(Event("message", 2000, users=(3, 4)))
    payloads = pack("node-a", events)
    assert len(payloads) > 1
    back: list[Event] = []
    for p in payloads:
        assert len(p.encode()) < MAX_PAYLOAD_BYTES
        node, got = unpack(p)
        assert node == "node-a"
        back += got
    assert back == events


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        json.dumps({"n": "a"}),
        json.dumps({"n": "a", "e": [{"k": "nope"}]}),
        json.dumps({"n": "a", "e": [{"k": "message", "i": "1"}]}),
        json.dumps({"n": "a", "e": [{"k": "message", "u": [True]}]}),
    ],
)
def test_malformed_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        unpack(payload)


def test_this_nodes_own_copy_replaces_a_row_read_before_it_arrived() -> None:
    order: Order[str] = Order(last=0, hold=0.05)
    order.need(2)
    order.filled(2, {1: "row 1", 2: "row 2"})
    assert order.offer(1, "own 1", replace=True)  # not delivered yet: it takes the place
    assert order.take(now=0.0) == ["own 1", "row 2"]
    assert not order.offer(2, "own 2", replace=True)  # too late: the caller does the rest
