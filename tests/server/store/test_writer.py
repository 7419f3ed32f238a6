# The writer: durability settings on every connection (SQLite's pragmas,
# PostgreSQL's synchronous_commit), group commit, a failing
# operation failing alone, callbacks after commit and in order.

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from parley_chat.server.store import NickTaken, NoSuchRoom, StoreError, queries, writes
from parley_chat.server.store.engine import make_engine
from tests.server.store.conftest import NOW, post


def test_every_connection_is_wal_with_synchronous_full(sqlite_url):
    db_url = sqlite_url  # PRAGMAs: SQLite's
    for writer in (True, False):
        engine = make_engine(db_url, writer=writer)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        engine.dispose()


def test_every_postgresql_connection_commits_synchronously(pg_url):
    # synchronous_commit on (with fsync): a commit is on disk, as WAL with synchronous=FULL.
    for writer in (True, False):
        engine = make_engine(pg_url, writer=writer)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            isolation = "read committed" if writer else "repeatable read"
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == isolation
        engine.dispose()


def test_the_writer_recovers_when_its_postgresql_connection_is_cut(pg_url):
    # A restarted database server or a killed backend: the next write reconnects.
    from parley_chat.server.store import Store, upgrade_to_head

    upgrade_to_head(pg_url, backup=False)
    store = Store(pg_url)
    store.start()
    try:
        store.submit(lambda s: writes.set_setting(s, "a", "1")).result(10)
        engine = make_engine(pg_url, writer=False)
        with engine.connect() as conn:
            cut = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar()
        engine.dispose()
        assert cut >= 1
        store.submit(lambda s: writes.set_setting(s, "b", "2")).result(10)
        with store.read() as s:
            assert (queries.get_setting(s, "a"), queries.get_setting(s, "b")) == ("1", "2")
        assert store.writable
    finally:
        store.close()


def test_a_url_without_a_driver_means_psycopg_3(pg_url):
    bare = pg_url.replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(bare, writer=False)
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_writes_are_group_committed_and_callbacks_run_in_order(store, users):
    order: list[int] = []
    gate = threading.Event()
    # Hold the writer so the next 50 submissions queue up and share one commit.
    store.submit(lambda s: gate.wait(5))
    futures = [
        store.submit(
            lambda s, i=i: writes.add_message(
                s, kind="public", body=f"m{i}", now=NOW, room="#lobby", sender_id=users["alice"]
            ),
            lambda result, exc, i=i: order.append(i),
        )
        for i in range(50)
    ]
    gate.set()
    ids = [f.result(5)[0].id for f in futures]
    assert order == list(range(50))
    assert ids == sorted(ids)


def test_a_conflict_fails_only_its_own_operation(store, users):
    gate = threading.Event()
    store.submit(lambda s: gate.wait(5))
    ok1 = store.submit(lambda s: writes.create_user(s, "dave", "h", NOW))
    clash = store.submit(lambda s: writes.create_user(s, "ALICE", "h", NOW))
    ok2 = store.submit(lambda s: writes.create_user(s, "erin", "h", NOW))
    gate.set()
    assert ok1.result(5).nick == "dave" and ok2.result(5).nick == "erin"
    with pytest.raises(NickTaken):
        clash.result(5)


def test_a_database_error_reports_a_store_error_and_keeps_the_rest(store, users):
    gate = threading.Event()
    store.submit(lambda s: gate.wait(5))
    good = store.submit(
        lambda s: writes.add_message(s, kind="system", body="ok", now=NOW, room="#lobby")
    )
    bad = store.submit(lambda s: s.execute(text("INSERT INTO no_such_table VALUES (1)")))
    gate.set()
    assert good.result(5)[0].body == "ok"
    with pytest.raises(StoreError, match="no_such_table"):
        bad.result(5)


def test_duplicate_client_id_is_stored_once(store, users):
    def send(s):
        return writes.add_message(
            s,
            kind="public",
            body="once",
            now=NOW,
            room="#lobby",
            sender_id=users["bob"],
            client_msg_id="c1",
        )

    first, second = store.submit(send).result(5), store.submit(send).result(5)
    assert (first[1], second[1]) == (False, True)
    assert first[0].id == second[0].id


def test_closed_store_refuses_writes(db_url, store):
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.submit(lambda s: None).result(1)


def test_nothing_of_a_failed_message_stays(store, users):
    with pytest.raises(NoSuchRoom):
        post(store, kind="public", body="x", room="#nowhere", sender_id=users["alice"])
    with store.read() as s:
        assert queries.search(s, users["alice"], "x")[0] == []


def test_a_client_id_reused_for_another_message_is_refused(store, users):
    from parley_chat.server.store import IdReused

    a, b = users["alice"], users["bob"]

    def send(**kw):
        base = dict(kind="public", body="hello", room="#lobby", sender_id=a, client_msg_id="c7")
        base.update(kw)
        return store.submit(lambda s: writes.add_message(s, now=NOW, **base))

    original, dup = send().result(5)
    assert not dup
    again, dup = send().result(5)  # the same message re-sent: acked as the original
    assert dup and again.id == original.id
    for changed in (
        dict(body="hello!"),  # another text
        dict(room="#dev"),  # another room
        dict(kind="private", room=None, recipient_id=b),  # a private message now
        dict(kind="system"),  # another kind
    ):
        with pytest.raises(IdReused, match="c7"):
            send(**changed).result(5)
    # Another sender may use the same client id for anything.
    other, dup = send(sender_id=b, body="mine").result(5)
    assert not dup and other.id != original.id
    with store.read() as s:
        bodies = [m.body for m in queries.replay_after(s, a, 0, 10)[0]]
    assert bodies == ["hello", "mine"]


def test_a_private_client_id_reused_for_another_recipient_is_refused(store, users):
    from parley_chat.server.store import IdReused

    a = users["alice"]

    def pm(to: int, body: str = "psst"):
        return store.submit(
            lambda s: writes.add_message(
                s, kind="private", body=body, now=NOW, sender_id=a, recipient_id=to,
                client_msg_id="p1",
            )
        )  # fmt: skip

    first, _ = pm(users["bob"]).result(5)
    assert pm(users["bob"]).result(5) == (first, True)
    with pytest.raises(IdReused):
        pm(users["carol"]).result(5)


def test_a_resend_after_leaving_the_room_is_still_acked_and_checked(store, users):
    from parley_chat.server.store import IdReused

    a = users["alice"]

    def send(body: str):
        return store.submit(
            lambda s: writes.add_message(
                s, kind="public", body=body, now=NOW, room="#dev", sender_id=a,
                client_msg_id="d1",
            )
        )  # fmt: skip

    first, _ = send("on dev").result(5)
    assert store.submit(lambda s: writes.leave_room(s, a, "#dev")).result(5)
    assert send("on dev").result(5) == (first, True)
    with pytest.raises(IdReused):
        send("something else").result(5)
