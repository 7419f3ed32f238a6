# Writer isolation: whatever one operation raises fails that operation alone.
# Poisoned operations (a lone surrogate, an int beyond 64 bits, a value of an
# unsupported type, a ValueError) interleaved with good ones in one group:
# every good one commits and is told so, every poisoned one is rejected, and
# nothing is logged at ERROR. A database-wide failure re-runs the group one
# operation per transaction without running any callback twice.

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from parley_chat.server.store import (
    DEFERRED,
    NoSuchRoom,
    Store,
    StoreError,
    StoreRejected,
    StoreUnwritable,
    is_database_wide,
    queries,
    upgrade_to_head,
    writes,
)
from tests.server.store.conftest import NOW

WAIT = 10  # seconds: the deadline of every wait below


@pytest.fixture
def big_store(db_url: str) -> Iterator[Store]:
    """A store whose groups hold everything queued (up to 512 operations)."""
    upgrade_to_head(db_url, backup=False)
    s = Store(db_url, group_max=512)
    s.start()
    yield s
    s.close()


def _user(store: Store, nick: str) -> int:
    return store.submit(lambda s: writes.create_user(s, nick, "h", NOW)).result(WAIT).id


def _raise(exc: BaseException) -> Callable[[Any], Any]:
    def op(_s: Any) -> Any:
        raise exc

    return op


def _poisons(uid: int) -> list[tuple[str, Callable[[Any], Any]]]:
    """Operations that fail on their input, each in a different way."""

    def msg(**kw: Any) -> Callable[[Any], Any]:
        base: dict[str, Any] = dict(kind="public", body="x", now=NOW, room="#lobby", sender_id=uid)
        base.update(kw)
        return lambda s: writes.add_message(s, **base)

    return [
        ("surrogate body", msg(body="bad \ud800 text")),
        ("surrogate client id", msg(client_msg_id="\udfff")),
        ("sender beyond 64 bits", msg(sender_id=2**63)),
        ("unsupported type", msg(body=object())),
        ("surrogate room (ORM)", lambda s: writes.join_room(s, uid, "#\ud800", NOW)),
        ("user id beyond 64 bits (ORM)", lambda s: writes.join_room(s, 2**64, "#x", NOW)),
        ("ValueError", _raise(ValueError("not a valid thing"))),
        ("OverflowError", _raise(OverflowError("too big"))),
    ]


def test_poisoned_operations_fail_alone_in_one_group(big_store, caplog):
    store = big_store
    uid = _user(store, "alice")
    poisons = _poisons(uid)
    commits: list[int] = []
    event.listen(store._writer_engine, "commit", lambda _conn: commits.append(1))

    order_lock = threading.Lock()
    submitted: list[str] = []  # queue order: appended under the lock that submits
    called: list[tuple[str, BaseException | None]] = []
    futures: dict[str, Any] = {}
    gate = threading.Event()
    holding = threading.Event()

    def hold(_s: Any) -> None:
        holding.set()
        assert gate.wait(WAIT)

    store.submit(hold)
    assert holding.wait(WAIT)  # the writer is busy: what follows queues up

    def submitter(t: int) -> None:
        for i in range(20):
            key = f"t{t}-{i}"
            if i % 3 == 1:
                what, op = poisons[(t * 7 + i) % len(poisons)]
                key += f" poisoned: {what}"
            else:
                body = f"good {key}"
                op = lambda s, b=body: writes.add_message(  # noqa: E731
                    s, kind="public", body=b, now=NOW, room="#lobby", sender_id=uid
                )
            with order_lock:
                submitted.append(key)
                futures[key] = store.submit(op, lambda result, exc, k=key: called.append((k, exc)))

    caplog.set_level(logging.WARNING, logger="parley.store")
    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    commits_before = len(commits)
    gate.set()
    for key in submitted:
        futures[key].exception(WAIT)  # wait for each outcome

    good = [k for k in submitted if "poisoned" not in k]
    bad = [k for k in submitted if "poisoned" in k]
    assert len(good) == 52 and len(bad) == 28
    for key in good:
        stored, duplicate = futures[key].result(0)
        assert stored.body == f"good {key}" and not duplicate
    for key in bad:
        exc = futures[key].exception(0)
        assert isinstance(exc, StoreRejected), (key, exc)
        assert "could not be stored" in str(exc) or "not a valid thing" in str(exc)
    # Callbacks: once each, in submission order, after the one COMMIT of the group.
    assert [k for k, _ in called] == submitted
    assert all((exc is None) == ("poisoned" not in k) for k, exc in called)
    assert len(commits) - commits_before == 2  # the held group, then the 80 together
    with store.read() as s:
        bodies = {m.body for m in queries.replay_after(s, uid, 0, 1000)[0]}
    assert bodies == {f"good {k}" for k in good}
    # One WARNING per rejected operation, without a traceback, and no ERROR at all.
    store_records = [r for r in caplog.records if r.name == "parley.store"]
    assert not [r for r in store_records if r.levelno >= logging.ERROR]
    rejections = [r for r in store_records if "rejected" in r.getMessage()]
    assert len(rejections) == len(bad)
    assert all(r.exc_info is None for r in rejections)


def test_a_callback_runs_after_commit_and_sees_its_row(store, users):
    seen: list[list[str]] = []

    def check(result: Any, exc: BaseException | None) -> None:
        with store.read() as s:  # another connection: only committed rows
            seen.append([m.body for m in queries.replay_after(s, users["bob"], 0, 10)[0]])

    store.submit(
        lambda s: writes.add_message(
            s, kind="public", body="durable", now=NOW, room="#lobby", sender_id=users["alice"]
        ),
        check,
    ).result(WAIT)
    assert seen == [["durable"]]


def _database_error(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return exc


def test_a_database_wide_failure_reruns_the_group_without_running_anything_twice(big_store, caplog):
    store = big_store
    uid = _user(store, "alice")
    gate, holding = threading.Event(), threading.Event()
    failed_once = threading.Event()
    runs: dict[str, int] = {}
    called: list[str] = []

    def hold(_s: Any) -> None:
        holding.set()
        assert gate.wait(WAIT)

    def message(key: str) -> Callable[[Any], Any]:
        def op(s: Any) -> Any:
            runs[key] = runs.get(key, 0) + 1
            return writes.add_message(
                s, kind="public", body=key, now=NOW, room="#lobby", sender_id=uid
            )

        return op

    def disk_full_once(s: Any) -> Any:
        # A transient database-wide failure in the middle of the group: SQLite
        # may have aborted the whole transaction, so the group is re-run.
        if not failed_once.is_set():
            failed_once.set()
            raise _database_error(sqlite3.SQLITE_FULL, "database or disk is full")
        return message("after the disk was freed")(s)

    store.submit(hold)
    assert holding.wait(WAIT)
    keys = [f"m{i}" for i in range(10)]
    futures = [store.submit(message(k), lambda r, e, k=k: called.append(k)) for k in keys[:5]]
    futures.append(store.submit(disk_full_once, lambda r, e: called.append("full")))
    poisoned = store.submit(_raise(ValueError("bad")), lambda r, e: called.append("poisoned"))
    futures += [store.submit(message(k), lambda r, e, k=k: called.append(k)) for k in keys[5:]]
    caplog.set_level(logging.WARNING, logger="parley.store")
    gate.set()
    results = [f.result(WAIT)[0] for f in futures]
    assert isinstance(poisoned.exception(WAIT), StoreRejected)
    assert [m.body for m in results] == [*keys[:5], "after the disk was freed", *keys[5:]]
    assert called == [*keys[:5], "full", "poisoned", *keys[5:]]
    # The ops before the failure ran twice (rolled back, then alone); each stored once.
    assert all(runs[k] == 2 for k in keys[:5]) and all(runs[k] == 1 for k in keys[5:])
    with store.read() as s:
        bodies = [m.body for m in queries.replay_after(s, uid, 0, 100)[0]]
    assert sorted(bodies) == sorted([*keys, "after the disk was freed"])
    assert store.writable
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "rejected" in r.msg]


def test_a_failing_op_of_its_own_transaction_reports_the_database(store, users):
    # A database-wide error that persists: the op is told StoreUnwritable and the
    # store says writes fail; the next good write says they work again.
    bad = store.submit(_raise(_database_error(sqlite3.SQLITE_IOERR, "disk I/O error")))
    with pytest.raises(StoreUnwritable, match="refuses writes"):
        bad.result(WAIT)
    assert not store.writable and "disk I/O error" in (store.last_write_error or "")
    store.submit(lambda s: writes.set_setting(s, "k", "v")).result(WAIT)
    assert store.writable and store.last_write_error is None


def test_a_bug_in_an_op_fails_alone_with_its_own_exception(store, users):
    gate = threading.Event()
    store.submit(lambda s: gate.wait(WAIT))
    good = store.submit(lambda s: writes.set_setting(s, "a", "1"))
    buggy = store.submit(lambda s: {}["missing"])
    conflict = store.submit(
        lambda s: writes.add_message(s, kind="public", body="x", now=NOW, room="#none")
    )
    gate.set()
    good.result(WAIT)
    assert isinstance(buggy.exception(WAIT), KeyError)
    assert isinstance(conflict.exception(WAIT), NoSuchRoom)


def test_an_op_that_breaks_the_transaction_cannot_commit_its_neighbours_alone(store, users):
    # An op that ends the transaction itself (COMMIT inside a savepoint) must not
    # leave the neighbours after it running outside any transaction.
    gate = threading.Event()
    store.submit(lambda s: gate.wait(WAIT))
    first = store.submit(lambda s: writes.set_setting(s, "first", "1"))
    breaker = store.submit(lambda s: s.connection().exec_driver_sql("ROLLBACK"))
    after = store.submit(lambda s: writes.set_setting(s, "after", "1"))
    gate.set()
    first.result(WAIT)
    after.result(WAIT)
    assert isinstance(breaker.exception(WAIT), StoreError)  # alone, it fails itself only
    with store.read() as s:
        assert queries.get_setting(s, "first") == "1" and queries.get_setting(s, "after") == "1"


def test_database_wide_errors_are_told_from_bad_input(tmp_path):
    # Real SQLite errors: disk full (max_page_count) and read-only are the
    # database's; a missing table or a bad parameter type is the statement's.
    path = tmp_path / "c.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE b (x)")
    con.commit()
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.Error) as full:
        con.execute("INSERT INTO b VALUES (zeroblob(100000))")
    assert is_database_wide(full.value)
    con.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as readonly:
        ro.execute("INSERT INTO b VALUES (1)")
    assert is_database_wide(readonly.value)
    with pytest.raises(sqlite3.Error) as missing:
        ro.execute("SELECT * FROM nowhere")
    assert not is_database_wide(missing.value)
    with pytest.raises(sqlite3.Error) as binding:
        ro.execute("SELECT ?", (object(),))
    assert not is_database_wide(binding.value)
    ro.close()
    wrapped = OperationalError("INSERT", {}, readonly.value)
    assert is_database_wide(wrapped)
    assert is_database_wide(sqlite3.OperationalError("attempt to write a readonly database"))


def test_sql_errors_of_one_op_are_store_errors_and_fail_alone(store, users):
    gate = threading.Event()
    store.submit(lambda s: gate.wait(WAIT))
    bad = store.submit(lambda s: s.execute(text("UPDATE no_such_table SET x = 1")))
    good = store.submit(lambda s: writes.set_setting(s, "b", "2"))
    gate.set()
    good.result(WAIT)
    exc = bad.exception(WAIT)
    assert isinstance(exc, StoreError) and not isinstance(exc, StoreUnwritable)
    assert store.writable


def test_when_begin_is_refused_no_op_runs_and_bookkeeping_waits_in_order(sqlite_url):
    db_url = sqlite_url  # query_only at BEGIN IMMEDIATE: SQLite's
    # The database refuses even BEGIN IMMEDIATE (here: query_only stays on):
    # nobody's operation ran, so all are told at once, none is re-run.
    upgrade_to_head(db_url, backup=False)
    store = Store(db_url, retry_interval=600)
    store.start()
    refuse = threading.Event()

    def checkin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA query_only = {'ON' if refuse.is_set() else 'OFF'}")

    event.listen(store._writer_engine, "checkin", checkin)
    try:
        gate, holding = threading.Event(), threading.Event()
        ran: list[str] = []

        def hold(_s: Any) -> None:
            holding.set()
            assert gate.wait(WAIT)

        store.submit(hold)
        assert holding.wait(WAIT)
        refuse.set()  # from the held group's end on, BEGIN IMMEDIATE is refused
        futures = [
            store.submit(lambda s, i=i: ran.append(f"w{i}")) if i % 2 else
            store.submit_bookkeeping(lambda s, i=i: writes.set_setting(s, f"b{i}", "v"))
            for i in range(6)
        ]  # fmt: skip
        gate.set()
        for i, f in enumerate(futures):
            if i % 2:
                assert isinstance(f.exception(WAIT), StoreUnwritable)
            else:
                assert f.result(WAIT) is DEFERRED
        assert ran == [] and store.pending_bookkeeping == 3 and not store.writable
        refuse.clear()  # takes effect when the connection next goes back to the pool
        for _ in range(2):  # each group first retries the backlog
            store.submit(lambda s: None).result(WAIT)
        assert store.pending_bookkeeping == 0 and store.writable
        with store.read() as s:
            assert [queries.get_setting(s, f"b{i}") for i in (0, 2, 4)] == ["v"] * 3
    finally:
        store.close()


def test_postgresql_errors_are_told_apart_by_sqlstate():
    import psycopg.errors as pg

    for wide in (pg.ReadOnlySqlTransaction(), pg.DiskFull(), pg.AdminShutdown(), pg.IoError()):
        assert is_database_wide(_dbapi(wide)), type(wide).__name__
    for own in (pg.UniqueViolation(), pg.NumericValueOutOfRange(), pg.UndefinedTable()):
        assert not is_database_wide(_dbapi(own)), type(own).__name__


def _dbapi(exc: Exception) -> Exception:
    """*exc* as SQLAlchemy raises it from a statement (its DBAPIError subclass)."""
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance("INSERT", {}, exc, Exception)
