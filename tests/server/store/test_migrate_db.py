"""`parley-admin migrate-db`: a SQLite database copied into an empty PostgreSQL one.

Every table's rows arrive with their ids, the id sequences and the message counter move
past the copied ids, search works on the copy, and a server on the copy goes on where
the SQLite one stopped. A target that holds data is refused, untouched."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from parley_chat.server import admin
from parley_chat.server.store import Store, queries, upgrade_to_head, writes
from parley_chat.server.store.copy import CopyRefused, copy_database
from parley_chat.server.store.models import Base
from tests.server.store.conftest import NOW
from tests.server.test_logs import populate


def _dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every model table's rows, in primary-key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_chat(tmp_path: Path) -> tuple[str, dict[str, int]]:
    """The logs tests' sample chat (every kind of message, sessions, a deleted account)
    in a SQLite file, plus what it lacks: keys, moderation, an edit, read markers."""
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    ids = populate(url)
    store = Store(url)
    store.start()
    try:
        a, b = ids["alice"], ids["bob"]
        store.submit(
            lambda s: writes.move_read_marker(s, b, peer_id=a, message_id=ids["m5"], now=NOW)
        ).result(10)
        store.submit(lambda s: writes.set_setting(s, "registration_open", "0")).result(10)
    finally:
        store.close()
    return url, ids


def test_every_row_arrives_with_its_id_and_new_ids_follow_on(sqlite_chat, pg_url):
    source, ids = sqlite_chat
    before = _dump(source)
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        ["--db", source, "migrate-db", "--to", pg_url], environ={}, stdout=out, stderr=err
    )
    assert code == 0, err.getvalue()
    assert "copied" in out.getvalue() and "ids kept" in out.getvalue()
    assert _dump(pg_url) == before, "a table differs after the copy"
    assert _dump(source) == before, "the source was changed"
    assert sum(len(rows) for rows in before.values()) > 30 and before["messages"]

    top = max(i for k, i in ids.items() if k.startswith("m"))
    store = Store(pg_url)
    store.start()
    try:
        # The counter and the sequences are past the copied ids: new rows take fresh ones.
        stored, _dup = store.submit(
            lambda s: writes.add_message(
                s,
                kind="public",
                body="first on postgres",
                now=NOW,
                room="#lobby",
                sender_id=ids["alice"],
            )
        ).result(10)
        assert stored.id == top + 1
        user = store.submit(lambda s: writes.create_user(s, "frank", "h", NOW)).result(10)
        assert user.id == max(r[0] for r in before["users"]) + 1
        assert store.new_session_id() > max(r[0] for r in before["sessions"])
        with store.read() as s:
            found, _more = queries.search(s, ids["bob"], "C++ QUEST")
            assert [m.id for m in found] == [ids["m5"]]
            found, _more = queries.search(s, ids["alice"], "example")
            assert [m.id for m in found] == [ids["m3"]]
            assert queries.get_setting(s, "registration_open") == "0"
    finally:
        store.close()


def test_a_target_that_holds_data_is_refused_and_left_alone(sqlite_chat, pg_url):
    source, _ids = sqlite_chat
    upgrade_to_head(pg_url, backup=False)
    store = Store(pg_url)
    store.start()
    store.submit(lambda s: writes.create_user(s, "already", "h", NOW)).result(10)
    store.close()
    before = _dump(pg_url)
    with pytest.raises(CopyRefused, match="already holds"):
        copy_database(source, pg_url)
    assert _dump(pg_url) == before
    err = io.StringIO()
    code = admin.main(["--db", source, "migrate-db", "--to", pg_url], environ={}, stderr=err)
    assert code == 1 and "already holds" in err.getvalue()


def test_the_wrong_kinds_of_database_are_refused(sqlite_chat, tmp_path):
    source, _ids = sqlite_chat
    with pytest.raises(CopyRefused, match="must be a PostgreSQL"):
        copy_database(source, f"sqlite:///{tmp_path / 'other.db'}")
    err = io.StringIO()
    code = admin.main(
        [
            "migrate-db",
            "--from",
            f"sqlite:///{tmp_path / 'missing.db'}",
            "--to",
            "postgresql://x/y",
        ],
        environ={},
        stderr=err,
    )
    assert code == 1 and "no database at" in err.getvalue()


def test_an_empty_source_makes_an_empty_target_with_the_counter_at_zero(tmp_path, pg_url):
    source = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade_to_head(source, backup=False)
    report = copy_database(source, pg_url)
    assert report.max_message_id == 0 and report.rows["rooms"] == 1  # the default room
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pos FROM message_counter")).scalar() == 0
        assert (
            conn.execute(select(func.count()).select_from(Base.metadata.tables["rooms"])).scalar()
            == 1
        )
    engine.dispose()
