# A read-only or full database must not stop logins: bookkeeping (session rows,
# resume tokens) waits in an ordered, bounded backlog and lands when writes work
# again; reads work meanwhile; session and token ids never depend on an INSERT.
#
# The database refuses writes for real here: `PRAGMA query_only` on the
# writer's connection makes SQLite answer every write with SQLITE_READONLY
# ("attempt to write a readonly database"), and turning it off is the
# recovery. A store opened with `mode=ro` is the read-only file itself.

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from parley_chat.server.store import (
    DEFERRED,
    NoSuchRoom,
    Store,
    StoreRejected,
    StoreUnwritable,
    queries,
    upgrade_to_head,
    writes,
)
from parley_chat.server.store.engine import database_path
from tests.server.store.conftest import NOW, post

WAIT = 10  # seconds: the deadline of every wait below
LATER = NOW + timedelta(days=14)
#: How each dialect says it refuses writes.
READ_ONLY = re.compile("readonly|read-only")


class ReadOnlySwitch:
    """Makes the store's writer connection refuse writes (SQLITE_READONLY) while on.

    BEGIN IMMEDIATE still succeeds and the first write fails, as on a file
    opened read-only. On PostgreSQL the transaction is made READ ONLY, and the
    first write fails with SQLSTATE 25006, as on a read-only database or a
    standby."""

    def __init__(self, store: Store) -> None:
        self.on = False
        engine = store._writer_engine
        assert engine is not None
        self.sqlite = engine.dialect.name == "sqlite"
        # On after BEGIN when asked; off again when the connection goes back to
        # the pool, so the next BEGIN IMMEDIATE works.
        event.listen(engine, "begin", self._after_begin)
        event.listen(engine, "checkin", self._checkin)

    def _after_begin(self, conn: Any) -> None:
        if self.on:
            conn.exec_driver_sql(
                "PRAGMA query_only = ON" if self.sqlite else "SET TRANSACTION READ ONLY"
            )

    def _checkin(self, dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn is not None and self.sqlite:
            dbapi_conn.execute("PRAGMA query_only = OFF")


def wait_for(sign: Callable[[], bool], what: str) -> None:
    """Wait until *sign()* is true, at most WAIT seconds."""
    done = threading.Event()
    for _ in range(WAIT * 100):
        if sign():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def quick_store(db_url: str) -> Iterator[Store]:
    """A store that retries its backlog every 50 ms."""
    upgrade_to_head(db_url, backup=False)
    s = Store(db_url, group_max=64, retry_interval=0.05)
    s.start()
    yield s
    s.close()


def _sessions(store: Store) -> dict[int, tuple[int | None, str | None]]:
    with store.read() as s:
        rows = s.connection().exec_driver_sql("SELECT id, token_id, end_reason FROM sessions")
        return {r[0]: (r[1], r[2]) for r in rows}


def _login(store: Store, uid: int, n: int):  # type: ignore[no-untyped-def]
    return store.record_login(
        user_id=uid,
        peer=f"10.0.0.{n}:5000",
        client="test",
        token_hash=f"{n:064x}",
        now=NOW,
        expires_at=LATER,
    )


def test_logins_and_reads_go_on_while_the_database_refuses_writes(quick_store):
    store = quick_store
    uid = store.submit(lambda s: writes.create_user(s, "alice", "h", NOW)).result(WAIT).id
    post(store, kind="public", body="before the outage", room="#lobby", sender_id=uid)
    crashed = _login(store, uid, 1)  # a session left open by an "earlier run"
    assert crashed.stored.result(WAIT) == crashed.session_id  # stored at once: writes work
    switch = ReadOnlySwitch(store)
    switch.on = True

    # What a restart does on a read-only database: end the sessions left open.
    ended = store.submit_bookkeeping(lambda s: writes.end_open_sessions(s, "server restart", NOW))
    assert ended.result(WAIT) is DEFERRED
    assert not store.writable and READ_ONLY.search(store.last_write_error or "")
    first, second = _login(store, uid, 2), _login(store, uid, 3)
    assert first.stored.result(WAIT) is DEFERRED and second.stored.result(WAIT) is DEFERRED
    assert first.session_id > crashed.session_id and second.session_id == first.session_id + 1
    assert second.token_id == first.token_id + 1
    sid = second.session_id
    store.submit_bookkeeping(lambda s: writes.end_session(s, sid, "bye", NOW)).result(WAIT)
    store.submit_bookkeeping(lambda s: writes.touch_sessions(s, [first.session_id], NOW))
    assert store.pending_bookkeeping == 4

    # Messages are refused, clearly; reads all work.
    failed = store.submit(
        lambda s: writes.add_message(
            s, kind="public", body="during", now=NOW, room="#lobby", sender_id=uid
        )
    )
    with pytest.raises(StoreUnwritable, match=READ_ONLY):
        failed.result(WAIT)
    # A transaction that wrote nothing commits even now; it proves nothing.
    nowhere = store.submit(
        lambda s: writes.add_message(s, kind="system", body="x", now=NOW, room="#nowhere")
    )
    assert isinstance(nowhere.exception(WAIT), NoSuchRoom)
    assert not store.writable
    with store.read() as s:
        assert queries.get_user(s, "alice") is not None
        assert [m.body for m in queries.replay_after(s, uid, 0, 10)[0]] == ["before the outage"]
        assert len(queries.history(s, uid, room="#lobby")[0]) == 1
        assert len(queries.search(s, uid, "outage")[0]) == 1
    # The token of a login made during the outage resumes a session already.
    found = store.user_by_token(f"{2:064x}", NOW)
    assert found is not None and found[0].nick == "alice" and found[1] == first.token_id
    assert store.user_by_token(f"{2:064x}", LATER) is None  # expired
    assert first.session_id not in _sessions(store)

    # Writes work again: the backlog lands by itself, in order.
    switch.on = False
    wait_for(lambda: store.pending_bookkeeping == 0, "the backlog to land")
    assert store.writable
    rows = _sessions(store)
    assert rows[crashed.session_id] == (crashed.token_id, "server restart")
    # Opened after the restart's end_open_sessions, so still open; the second
    # was ended after it was opened.
    assert rows[first.session_id] == (first.token_id, None)
    assert rows[second.session_id] == (second.token_id, "bye")
    with store.read() as s:
        assert queries.user_by_token(s, f"{2:064x}", NOW) == found  # the database answers now
    assert store.user_by_token(f"{3:064x}", NOW) is not None


def test_the_backlog_lands_before_the_next_group(db_url):
    upgrade_to_head(db_url, backup=False)
    store = Store(db_url, retry_interval=600)  # no periodic retry during this test
    store.start()
    try:
        uid = store.submit(lambda s: writes.create_user(s, "bob", "h", NOW)).result(WAIT).id
        switch = ReadOnlySwitch(store)
        switch.on = True
        login = _login(store, uid, 7)
        assert login.stored.result(WAIT) is DEFERRED
        switch.on = False
        store.submit(lambda s: writes.set_setting(s, "k", "v")).result(WAIT)
        assert store.pending_bookkeeping == 0
        assert _sessions(store) == {login.session_id: (login.token_id, None)}
    finally:
        store.close()


def test_the_backlog_is_bounded(db_url):
    upgrade_to_head(db_url, backup=False)
    store = Store(db_url, retry_interval=0.05, backlog_max=3)
    store.start()
    try:
        switch = ReadOnlySwitch(store)
        switch.on = True
        futures = [
            store.submit_bookkeeping(lambda s, i=i: writes.set_setting(s, f"k{i}", "v"))
            for i in range(5)
        ]
        assert [f.result(WAIT) for f in futures[:3]] == [DEFERRED] * 3
        for f in futures[3:]:
            assert isinstance(f.exception(WAIT), StoreUnwritable)
        switch.on = False
        wait_for(lambda: store.pending_bookkeeping == 0, "the backlog to land")
        with store.read() as s:
            stored = [queries.get_setting(s, f"k{i}") for i in range(5)]
        assert stored == ["v", "v", "v", None, None]
    finally:
        store.close()


def test_a_bad_bookkeeping_write_is_dropped_and_does_not_block_the_rest(quick_store):
    store = quick_store
    switch = ReadOnlySwitch(store)
    switch.on = True
    a = store.submit_bookkeeping(lambda s: writes.set_setting(s, "a", "1"))
    bad = store.submit_bookkeeping(lambda s: writes.set_setting(s, "\ud800", "x"))
    b = store.submit_bookkeeping(lambda s: writes.set_setting(s, "b", "2"))
    assert [f.result(WAIT) for f in (a, bad, b)] == [DEFERRED] * 3
    switch.on = False
    wait_for(lambda: store.pending_bookkeeping == 0, "the backlog to land")
    with store.read() as s:
        assert (queries.get_setting(s, "a"), queries.get_setting(s, "b")) == ("1", "2")
    # When writes work, a bad bookkeeping write fails at once like any other.
    again = store.submit_bookkeeping(lambda s: writes.set_setting(s, "\ud800", "x"))
    assert isinstance(again.exception(WAIT), StoreRejected)


def test_bookkeeping_runs_at_once_when_writes_work(store, users):
    login = _login(store, users["alice"], 9)
    assert login.stored.result(WAIT) == login.session_id
    assert _sessions(store) == {login.session_id: (login.token_id, None)}
    with store.read() as s:
        assert queries.user_by_token(s, f"{9:064x}", NOW)[1] == login.token_id
    assert store.user_by_token(f"{9:064x}", NOW) is not None
    assert store.user_by_token("f" * 64, NOW) is None


def test_a_revoked_token_is_not_revived_by_the_pending_list(quick_store):
    store = quick_store
    uid = store.submit(lambda s: writes.create_user(s, "carol", "h", NOW)).result(WAIT).id
    switch = ReadOnlySwitch(store)
    switch.on = True
    login = _login(store, uid, 4)
    assert login.stored.result(WAIT) is DEFERRED
    assert store.user_by_token(f"{4:064x}", NOW) is not None
    switch.on = False
    wait_for(lambda: store.pending_bookkeeping == 0, "the backlog to land")
    store.submit(lambda s: writes.set_password(s, "carol", "new", NOW)).result(WAIT)
    assert store.user_by_token(f"{4:064x}", NOW) is None


def test_ids_stay_above_rows_inserted_without_one(store, users):
    given = store.new_session_id()
    plain = store.submit(
        lambda s: writes.open_session(
            s, user_id=users["bob"], peer="p", client=None, token_id=None, now=NOW
        )
    ).result(WAIT)
    following = store.new_session_id()
    if store.shared:
        # PostgreSQL: every node's ids come from the one sequence (a block at a
        # time), so none is handed out twice, in whatever order.
        assert len({given, plain, following}) == 3
    else:
        assert following > max(given, plain)
    stored = store.submit(
        lambda s: writes.open_session(
            s,
            user_id=users["bob"],
            peer="p",
            client=None,
            token_id=None,
            now=NOW,
            session_id=following,
        )
    ).result(WAIT)
    assert stored == following


def test_ids_from_two_stores_on_one_postgresql_database_never_collide(pg_url):
    # Two nodes: each takes blocks of the sequence, neither reads max(id) + 1.
    upgrade_to_head(pg_url, backup=False)
    a, b = Store(pg_url, node="a"), Store(pg_url, node="b")
    a.start()
    b.start()
    try:
        ids = [st.new_session_id() for _ in range(100) for st in (a, b)]
        assert len(set(ids)) == len(ids)
        tokens = [st.new_token_id() for _ in range(100) for st in (a, b)]
        assert len(set(tokens)) == len(tokens)
    finally:
        a.close()
        b.close()


def test_a_store_on_a_read_only_file_starts_and_serves_reads(sqlite_url, tmp_path):
    db_url = sqlite_url  # a read-only file: SQLite's
    # The whole database opened read-only (as on a file the server may not
    # write): startup bookkeeping waits, logins get ids, reads work.
    upgrade_to_head(db_url, backup=False)
    setup = Store(db_url)
    setup.start()
    uid = setup.submit(lambda s: writes.create_user(s, "dave", "h", NOW)).result(WAIT).id
    post(setup, kind="public", body="kept", room="#lobby", sender_id=uid)
    left_open = _login(setup, uid, 5).stored.result(WAIT)
    setup.close()
    path = database_path(db_url)
    store = Store(f"sqlite:///file:{path}?mode=ro&uri=true", retry_interval=600)
    store.start()
    try:
        assert (
            store.submit_bookkeeping(
                lambda s: writes.end_open_sessions(s, "server restart", NOW)
            ).result(WAIT)
            is DEFERRED
        )
        login = _login(store, uid, 6)
        assert login.session_id == left_open + 1 and login.stored.result(WAIT) is DEFERRED
        assert not store.writable
        with store.read() as s:
            assert [m.body for m in queries.replay_after(s, uid, 0, 10)[0]] == ["kept"]
            assert queries.get_user(s, "dave").id == uid
        assert store.user_by_token(f"{6:064x}", NOW) is not None
    finally:
        store.close()


def test_a_read_only_database_not_in_wal_mode_still_serves_reads(sqlite_url):
    db_url = sqlite_url  # a read-only file: SQLite's
    # A backup restored onto a read-only mount is in rollback-journal mode and
    # cannot be switched to WAL: connections must still open, and reads work.
    upgrade_to_head(db_url, backup=False)
    setup = Store(db_url)
    setup.start()
    uid = setup.submit(lambda s: writes.create_user(s, "erin", "h", NOW)).result(WAIT).id
    setup.close()
    path = database_path(db_url)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    con.close()
    store = Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    store.start()
    try:
        with store.read() as s:
            assert queries.user_by_id(s, uid).nick == "erin"
        failed = store.submit(lambda s: writes.set_setting(s, "k", "v"))
        assert isinstance(failed.exception(WAIT), StoreUnwritable)
        assert (
            store.submit_bookkeeping(lambda s: writes.set_setting(s, "k", "v")).result(WAIT)
            is DEFERRED
        )
    finally:
        store.close()
