"""Store.gathering(): a thread's room messages committed at the end of its scope,
on that thread while the writer is idle, and by the writer, in order, otherwise."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from parley_chat.server.store import (
    NotVisible,
    Store,
    StoreError,
    StoreRejected,
    StoreUnwritable,
    queries,
    writes,
)
from tests.server.store.conftest import NOW
from tests.server.store.test_bookkeeping import ReadOnlySwitch


def _message(users: dict[str, int], body: str, seen: list[tuple[str, int]]) -> Any:
    def op(s: Any) -> Any:
        seen.append((body, threading.get_ident()))
        return writes.add_message(
            s, kind="public", body=body, now=NOW, room="#lobby", sender_id=users["alice"]
        )

    return op


def _record(done: list[tuple[str, int]], body: str) -> Callable[[Any, Any], None]:
    return lambda result, exc: done.append((body, threading.get_ident()))


def test_gathered_messages_commit_on_the_gathering_thread_as_one_group(sqlite_store, users):
    seen: list[tuple[str, int]] = []
    done: list[tuple[str, int]] = []
    with sqlite_store.gathering():
        futures = [
            sqlite_store.submit_gathered(_message(users, b, seen), _record(done, b))
            for b in ("one", "two", "three")
        ]
        assert seen == [] and not any(f.done() for f in futures)  # nothing before the end
    me = threading.get_ident()
    # Committed before gathering() returned, here, in order, callbacks included.
    assert all(f.done() for f in futures)
    assert seen == [("one", me), ("two", me), ("three", me)]
    assert done == [("one", me), ("two", me), ("three", me)]
    ids = [f.result(0)[0].id for f in futures]
    assert ids == sorted(ids)


def test_while_the_writer_is_busy_gathered_messages_queue_behind_its_work(sqlite_store, users):
    gate = threading.Event()
    busy = sqlite_store.submit(lambda s: gate.wait(5))
    seen: list[tuple[str, int]] = []
    with sqlite_store.gathering():
        late = sqlite_store.submit_gathered(_message(users, "late", seen), lambda r, e: None)
    assert seen == []  # not run here: the writer had work in hand
    gate.set()
    assert busy.result(5) is True
    assert late.result(5)[0].body == "late"
    assert seen[0][1] != threading.get_ident()


def test_a_plain_submit_in_the_scope_goes_after_what_was_gathered(sqlite_store, users):
    ran: list[tuple[str, int]] = []
    done: list[tuple[str, int]] = []
    with sqlite_store.gathering():
        first = sqlite_store.submit_gathered(
            _message(users, "gathered", ran), _record(done, "gathered")
        )
        second = sqlite_store.submit(
            lambda s: ran.append(("plain", threading.get_ident())), _record(done, "plain")
        )
        second.result(5)  # a plain submit is not held by the scope
    assert first.result(5)[0].body == "gathered"
    # Queued for the writer ahead of the plain one: ops and callbacks in that order.
    assert [body for body, _ in ran] == ["gathered", "plain"]
    assert [body for body, _ in done] == ["gathered", "plain"]


def test_what_was_gathered_can_be_queued_ahead_of_another_threads_write(sqlite_store, users):
    # An I/O loop hands a job to a pool after gathering room messages: the
    # job's write, submitted on the pool's thread, must commit after them.
    ran: list[tuple[str, int]] = []
    with sqlite_store.gathering():
        first = sqlite_store.submit_gathered(_message(users, "gathered", ran), lambda r, e: None)
        sqlite_store.queue_gathered()
        results: list[Any] = []
        other = threading.Thread(
            target=lambda: results.append(
                sqlite_store.submit(_message(users, "other", ran)).result(5)
            )
        )
        other.start()
        other.join(5)
        assert first.done()  # committed by the writer, not held to the scope's end
    assert [body for body, _ in ran] == ["gathered", "other"]
    assert first.result(5)[0].id < results[0][0].id


def test_a_slow_group_leaves_the_next_ones_to_the_writer(sqlite_url, to_head, users_of):
    # inline_slow=0: every group counts as slow.
    with _started(sqlite_url, to_head, inline_slow=0.0) as store:
        users = users_of(store)
        seen: list[tuple[str, int]] = []
        for body in ("first", "second"):
            with store.gathering():
                f = store.submit_gathered(_message(users, body, seen), lambda r, e: None)
            f.result(5)
        me = threading.get_ident()
        assert seen[0] == ("first", me)
        assert seen[1][0] == "second" and seen[1][1] != me


def test_while_the_database_refuses_writes_the_writer_commits_what_is_gathered(sqlite_store, users):
    switch = ReadOnlySwitch(sqlite_store)
    switch.on = True
    with pytest.raises(StoreUnwritable):
        sqlite_store.submit(lambda s: writes.create_user(s, "dave", "h", NOW)).result(5)
    seen: list[tuple[str, int]] = []
    with sqlite_store.gathering():
        refused = sqlite_store.submit_gathered(_message(users, "refused", seen), lambda r, e: None)
    with pytest.raises(StoreUnwritable):
        refused.result(5)
    assert seen and all(thread != threading.get_ident() for _, thread in seen)
    # Writable again once a commit works; then gathered groups commit here again.
    switch.on = False
    sqlite_store.submit(lambda s: writes.create_user(s, "dave", "h", NOW)).result(5)
    seen.clear()
    with sqlite_store.gathering():
        ok = sqlite_store.submit_gathered(_message(users, "ok", seen), lambda r, e: None)
    assert ok.result(0)[0].body == "ok"
    assert seen == [("ok", threading.get_ident())]


def test_on_postgresql_the_writer_commits_what_is_gathered(pg_store, users_of):
    users = users_of(pg_store)
    seen: list[tuple[str, int]] = []
    with pg_store.gathering():
        f = pg_store.submit_gathered(_message(users, "pg", seen), lambda r, e: None)
    assert f.result(5)[0].body == "pg"
    assert seen[0][1] != threading.get_ident()


def test_a_closed_store_refuses_what_was_gathered(sqlite_store, users):
    with sqlite_store.gathering():
        f = sqlite_store.submit_gathered(_message(users, "x", []), lambda r, e: None)
        sqlite_store.close()
    with pytest.raises(StoreError, match="closed"):
        f.result(1)


# --- the direct path: a group's room messages on the driver's connection ---------------


def _both(
    users: dict[str, int],
    body: str,
    ran: list[tuple[str, str]],
    *,
    sender: str = "alice",
    **kw: Any,
) -> tuple[Any, Any]:
    """A room message as an op (through the ORM session) and as its direct call,
    each recording (path, body) when it runs."""
    args: dict[str, Any] = {
        "kind": "public",
        "body": body,
        "now": NOW,
        "room": "#lobby",
        "sender_id": users[sender],
        "client_msg_id": body,
    }
    args.update(kw)

    def op(s: Any) -> Any:
        ran.append(("op", body))
        return writes.add_message(s, **args)

    def direct(raw: Any) -> Any:
        ran.append(("direct", body))
        return writes.add_room_message_direct(raw, **args)

    return op, direct


def _gather(store: Store, pairs: list[tuple[Any, Any]], done: list[Any]) -> list[Any]:
    with store.gathering():
        return [
            store.submit_gathered(op, lambda r, e: done.append((r, e)), direct=direct)
            for op, direct in pairs
        ]


def test_a_group_whose_jobs_all_have_direct_calls_commits_through_them(sqlite_store, users):
    ran: list[tuple[str, str]] = []
    done: list[Any] = []
    futures = _gather(sqlite_store, [_both(users, b, ran) for b in ("one", "two")], done)
    assert ran == [("direct", "one"), ("direct", "two")]  # no op ran
    results = [f.result(0) for f in futures]
    assert [(m.body, m.room, m.sender, m.kind, dup) for m, dup in results] == [
        ("one", "#lobby", "alice", "public", False),
        ("two", "#lobby", "alice", "public", False),
    ]
    assert [r for r, _ in done] == results  # callbacks in order, after the commit
    # Committed: a reader sees the same rows, and a re-send is recognised.
    with sqlite_store.read() as s:
        stored = [queries.get_message(s, m.id) for m, _ in results]
    assert [(m.body, m.sender, m.client_msg_id) for m in stored if m] == [
        ("one", "alice", "one"),
        ("two", "alice", "two"),
    ]


def test_a_direct_call_that_stores_nothing_hands_its_job_to_the_op(sqlite_store, users):
    bob = sqlite_store.submit(lambda s: writes.create_user(s, "bob", "scrypt$x", NOW)).result(5).id
    sqlite_store.submit(lambda s: writes.join_room(s, users["alice"], "#dev", NOW)).result(5)
    users = {**users, "bob": bob}
    ran: list[tuple[str, str]] = []
    first = _gather(sqlite_store, [_both(users, "hello", ran)], [])[0].result(0)[0]
    ran.clear()
    done: list[Any] = []
    futures = _gather(
        sqlite_store,
        [
            _both(users, "hello", ran),  # a re-send of the message above
            _both(users, "fresh", ran),
            _both(users, "intruder", ran, sender="bob", room="#dev"),  # bob is not in #dev
        ],
        done,
    )
    again, duplicate = futures[0].result(0)
    assert (again.id, duplicate) == (first.id, True)
    assert futures[1].result(0)[0].body == "fresh"
    with pytest.raises(NotVisible):
        futures[2].result(0)
    # Only the ones the direct calls did not store ran their ops (the group's
    # retry with savepoints may run an op twice); the stored one's callback
    # comes first.
    assert {body for path, body in ran if path == "op"} == {"hello", "intruder"}
    assert done[0][0][0].body == "fresh"


def test_a_failing_direct_call_keeps_nothing_and_every_job_runs_its_op(sqlite_store, users):
    ran: list[tuple[str, str]] = []
    done: list[Any] = []
    broken = "bad \udc80 text"  # a lone surrogate: the driver cannot bind it
    pairs = [_both(users, "good", ran), _both(users, broken, ran, client_msg_id="bad")]
    futures = _gather(sqlite_store, pairs, done)
    assert futures[0].result(0)[0].body == "good"
    with pytest.raises(StoreRejected):
        futures[1].result(0)
    assert ("op", "good") in ran  # the direct call's insert was rolled back: stored once
    with sqlite_store.read() as s:
        page, _ = queries.history(s, users["alice"], room="#lobby")
    assert [m.body for m in page] == ["good"]


def test_a_refused_direct_group_is_reported_by_the_ops_and_stops_the_direct_path(
    sqlite_store, users
):
    # The writer's connection refuses writes from its checkout on, as a file
    # turned read-only would: the direct transaction fails, and the ops' path
    # reports it and marks the database unwritable.
    refusing = {"on": True}
    engine = sqlite_store._writer_engine

    def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA query_only = {'ON' if refusing['on'] else 'OFF'}")

    event.listen(engine, "checkout", checkout)
    ran: list[tuple[str, str]] = []
    refused = _gather(sqlite_store, [_both(users, "refused", ran)], [])[0]
    with pytest.raises(StoreUnwritable):
        refused.result(5)
    assert ran == []  # refused at BEGIN IMMEDIATE, on both paths: nothing ran
    assert not sqlite_store.writable
    # Writable again once a commit works; then the direct path is taken again.
    refusing["on"] = False
    sqlite_store.submit(lambda s: writes.create_user(s, "dave", "h", NOW)).result(5)
    ran.clear()
    ok = _gather(sqlite_store, [_both(users, "ok", ran)], [])[0]
    assert ok.result(0)[0].body == "ok"
    assert ran == [("direct", "ok")]


# --- fixtures -------------------------------------------------------------------------


@contextmanager
def _started(url: str, to_head: Callable[[str], None], **options: Any) -> Iterator[Store]:
    to_head(url)
    store = Store(url, **options)
    store.start()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_store(sqlite_url: str, to_head: Callable[[str], None]) -> Iterator[Store]:
    with _started(sqlite_url, to_head) as store:
        yield store


@pytest.fixture
def pg_store(pg_url: str, to_head: Callable[[str], None]) -> Iterator[Store]:
    with _started(pg_url, to_head) as store:
        yield store


@pytest.fixture
def users(sqlite_store: Store, users_of: Callable[[Store], dict[str, int]]) -> dict[str, int]:
    return users_of(sqlite_store)


@pytest.fixture
def users_of() -> Callable[[Store], dict[str, int]]:
    def make(store: Store) -> dict[str, int]:
        uid = store.submit(lambda s: writes.create_user(s, "alice", "scrypt$x", NOW)).result(5).id
        return {"alice": uid}

    return make
