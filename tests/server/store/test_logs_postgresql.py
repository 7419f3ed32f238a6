"""parley-logs on a PostgreSQL database: the same subcommands and output as on SQLite,
read-only by its own layers (a read-only transaction, one statement per call, a statement
timeout), and `backup` through pg_dump, restorable with pg_restore."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from parley_chat.server.logs_pg import find_pg_dump
from parley_chat.server.store.node_lock import libpq_params
from tests.pgserver import PgServer
from tests.server.test_logs import populate, run_main


@pytest.fixture
def chat_pg(pg_url: str) -> Iterator[tuple[str, dict[str, int]]]:
    """The logs tests' sample chat on a fresh PostgreSQL database."""
    ids = populate(pg_url)
    yield pg_url, ids


def _count(url: str, sql: str) -> int:
    with psycopg.connect(**libpq_params(url), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_query_search_stats_and_export_read_postgresql(chat_pg):
    url, ids = chat_pg
    code, out, _err = run_main("--db", url, "query", "--format", "json", "SELECT * FROM chat_log")
    rows = (
        [json.loads(line) for line in out.splitlines()]
        if out.lstrip().startswith("{")
        else json.loads(out)
    )
    assert code == 0 and {r["id"] for r in rows} >= {ids["m2"], ids["m5"]}
    # Times read as on SQLite: the store's naive-UTC text.
    assert all(isinstance(r["ts"], str) and len(r["ts"]) == 26 for r in rows)
    code, out, _err = run_main("--db", url, "search", "c++", "QUESTION")
    assert code == 0 and "are you there? C++ question" in out
    code, out, _err = run_main("--db", url, "search", "50%")
    assert code == 0 and "the build is 50% done_ok" in out
    code, out, _err = run_main("--db", url, "stats")
    assert code == 0 and "Messages per room" in out and "#lobby" in out
    code, out, _err = run_main("--db", url, "export", "--format", "jsonl", "--room", "LOBBY")
    exported = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and exported and {r["room"] for r in exported} == {"#lobby"}


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO server_settings (key, value) VALUES ('x', 'y')",
        "DELETE FROM messages",
        "CREATE TABLE sneaky (a int)",
        "SELECT 1; DELETE FROM messages",
        "SELECT 1; COMMIT; DELETE FROM messages",
        "SELECT nextval(pg_get_serial_sequence('users', 'id'))",
        "UPDATE message_counter SET pos = pos + 1",
    ],
)
def test_what_would_change_postgresql_is_refused_and_nothing_changes(chat_pg, sql):
    url, _ids = chat_pg
    before = (
        _count(url, "SELECT count(*) FROM messages"),
        _count(url, "SELECT pos FROM message_counter"),
    )
    code, _out, err = run_main("--db", url, "query", sql)
    assert code == 2 and "refused" in err and "read-only" in err, err
    after = (
        _count(url, "SELECT count(*) FROM messages"),
        _count(url, "SELECT pos FROM message_counter"),
    )
    assert after == before
    assert _count(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'sneaky'") == 0


def test_turning_read_only_off_does_not_let_the_next_statement_write(chat_pg):
    url, _ids = chat_pg
    # Each statement gets its own transaction, begun READ ONLY whatever the session says.
    code, _out, _err = run_main("--db", url, "query", "SET default_transaction_read_only = off")
    assert code == 0
    code, _out, err = run_main("--db", url, "query", "DELETE FROM messages")
    assert code == 2 and "refused" in err


def test_a_bad_query_is_a_clear_error(chat_pg):
    url, _ids = chat_pg
    code, _out, err = run_main("--db", url, "query", "SELECT nope FROM chat_log")
    assert code == 1 and "SQL error" in err and "nope" in err


def test_backup_is_a_pg_dump_that_restores(chat_pg, pg_server: PgServer, tmp_path: Path):
    if find_pg_dump() is None:
        pytest.fail("pg_dump missing: make test installs postgresql")
    url, ids = chat_pg
    target = tmp_path / "parley.dump"
    code, out, err = run_main("--db", url, "backup", str(target))
    assert code == 0, err
    assert "backup of the PostgreSQL database" in out and "12 messages" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    code, _out, err = run_main("--db", url, "backup", str(target))
    assert code == 2 and "already exists" in err
    name = pg_server.create_database("restored")
    try:
        restore = pg_server.bindir / "pg_restore"
        # As root, pg_restore reads the dump as the postgres user: give it the file.
        os.chmod(target, 0o644)
        done = subprocess.run(
            [str(restore), "--no-owner", f"--dbname={pg_server.dsn(name)}", str(target)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        restored = pg_server.url(name)
        assert _count(restored, "SELECT count(*) FROM messages") == 12
        assert _count(restored, "SELECT pos FROM message_counter") == max(
            v for k, v in ids.items() if k.startswith("m")
        )
        assert _count(restored, "SELECT count(*) FROM chat_log") == 12
    finally:
        pg_server.drop_database(name)


OPERATIONS_MD = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def _documented_role_sql() -> str:
    text = OPERATIONS_MD.read_text("utf-8")
    section = text[text.index("### A read-only role for parley-logs") :]
    return section.split("```\n", 2)[1]


def test_the_documented_select_only_role_reads_and_cannot_write(chat_pg, pg_server):
    url, _ids = chat_pg
    dbname = url.rsplit("/", 1)[1]
    # As documented, with this test's database and owner (postgres) and a throw-away password.
    sql = (
        _documented_role_sql()
        .replace("PASSWORD '…'", "PASSWORD 'x'")
        .replace("DATABASE parley ", f'DATABASE "{dbname}" ')
        .replace("FOR ROLE parley ", "FOR ROLE postgres ")
    )
    with psycopg.connect(**libpq_params(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'parley_logs'").fetchone()
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            if exists and statement.startswith("CREATE ROLE"):
                continue  # made by an earlier test of this session (roles are cluster-wide)
            conn.execute(statement)
    as_role = pg_server.url(dbname, user="parley_logs")
    code, out, err = run_main("--db", as_role, "query", "SELECT count(*) AS n FROM chat_log")
    assert code == 0 and "12" in out, err
    with psycopg.connect(**libpq_params(as_role), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM messages")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM messages")
    assert _count(url, "SELECT count(*) FROM messages") == 12
