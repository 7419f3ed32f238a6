# Every SQL example of docs/schema.md runs, read-only, through the logs tool's
# query path against a populated database, and finds at least one row: the
# documented examples cannot rot as the schema changes. On both dialects: a
# ```sql block is meant to run on SQLite and PostgreSQL alike; an example that
# needs each dialect's own SQL is a ```sql sqlite block followed at once by its
# ```sql postgresql version, and each runs on its own dialect.

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from parley_chat.server import logs
from parley_chat.server.store.node_lock import libpq_params
from parley_chat.server.store.queries import fts_query
from tests.pgserver import PgServer
from tests.server.test_logs import populate

SCHEMA_MD = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
_SQL_BLOCK = re.compile(r"^```sql( sqlite| postgresql)?\n(.*?)^```", re.DOTALL | re.MULTILINE)

#: The docs promise at least this many examples (on each dialect).
MIN_EXAMPLES = 10


def sql_blocks() -> list[tuple[str, str]]:
    """(dialect, text) of every ```sql block of docs/schema.md, in order; the dialect
    is "both", "sqlite" or "postgresql"."""
    return [
        ((m.group(1) or " both").strip(), m.group(2).strip())
        for m in _SQL_BLOCK.finditer(SCHEMA_MD.read_text("utf-8"))
    ]


BLOCKS = sql_blocks()


def examples(dialect: str) -> list[str]:
    """The examples that run on *dialect*, in order."""
    return [sql for d, sql in BLOCKS if d in ("both", dialect)]


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat of tests/server/test_logs.populate: users, rooms, all kinds of
    messages, sessions, a token and a deleted account."""
    path = tmp_path_factory.mktemp("schema-doc") / "parley.db"
    populate(f"sqlite:///{path}")
    return path


def _fingerprint(url: str) -> list[tuple[str, int]]:
    """Every table's row count and the database's committed write transactions."""
    with psycopg.connect(**libpq_params(url), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        counts = []
        for t in tables:
            row = conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()
            assert row is not None
            counts.append((t, int(row[0])))
        return counts


@pytest.fixture(scope="module")
def sample_pg(pg_server: PgServer) -> Iterator[str]:
    """The same chat on a PostgreSQL database of the session's server."""
    name = pg_server.create_database("schema_doc")
    url = pg_server.url(name)
    populate(url)
    before = _fingerprint(url)
    yield url
    assert _fingerprint(url) == before, "an example changed the database"
    pg_server.drop_database(name)


def test_the_schema_doc_has_enough_examples_on_each_dialect():
    assert len(examples("sqlite")) >= MIN_EXAMPLES
    assert len(examples("postgresql")) == len(examples("sqlite"))


def test_each_dialect_specific_example_comes_as_a_pair():
    for i, (dialect, sql) in enumerate(BLOCKS):
        if dialect == "sqlite":
            assert i + 1 < len(BLOCKS) and BLOCKS[i + 1][0] == "postgresql", sql
        if dialect == "postgresql":
            assert i > 0 and BLOCKS[i - 1][0] == "sqlite", sql


def _first_line(sql: str) -> str:
    return sql.splitlines()[0][:60]


SQLITE = examples("sqlite")
POSTGRESQL = examples("postgresql")


@pytest.mark.parametrize("sql", SQLITE, ids=[f"{i:02d}-{_first_line(b)}" for i, b in enumerate(SQLITE)])  # fmt: skip
def test_each_example_runs_read_only_and_finds_rows(sample_db, sql):
    before = sample_db.read_bytes(), sample_db.stat().st_mtime_ns
    out = io.StringIO()
    with logs.ReadOnlyDatabase(sample_db) as db:
        n = logs.run_query(db, sql, out, "json")
    assert n >= 1, f"no rows from:\n{sql}"
    assert (sample_db.read_bytes(), sample_db.stat().st_mtime_ns) == before


@pytest.mark.parametrize("sql", POSTGRESQL, ids=[f"{i:02d}-{_first_line(b)}" for i, b in enumerate(POSTGRESQL)])  # fmt: skip
def test_each_example_runs_read_only_on_postgresql_and_finds_rows(sample_pg, sql):
    out = io.StringIO()
    with logs.PgReadOnlyDatabase(sample_pg) as db:
        n = logs.run_query(db, sql, out, "json")
    assert n >= 1, f"no rows from:\n{sql}"


def test_the_documented_fts_quoting_is_what_the_code_does():
    assert fts_query(["example.com", '"quoted"', "C++"]) == '"example.com" """quoted""" "C++"'
    assert 'MATCH \'"example.com" """quoted""" "C++"\'' in SCHEMA_MD.read_text("utf-8")
