# Every ```sql block of docs/schema.md runs, read-only, through the logs
# tool's query path against a populated database, and finds at least one row:
# the documented examples cannot rot as the schema changes.

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from parley_chat.server import logs
from parley_chat.server.store.queries import fts_query
from tests.server.test_logs import populate

SCHEMA_MD = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
_SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)

#: The docs promise at least this many examples.
MIN_EXAMPLES = 10


def sql_blocks() -> list[str]:
    """The text of every ```sql fenced block in docs/schema.md, in order."""
    return [m.group(1).strip() for m in _SQL_BLOCK.finditer(SCHEMA_MD.read_text("utf-8"))]


BLOCKS = sql_blocks()


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat of tests/server/test_logs.populate: users, rooms, all kinds of
    messages, sessions, a token and a deleted account."""
    path = tmp_path_factory.mktemp("schema-doc") / "parley.db"
    populate(f"sqlite:///{path}")
    return path


def test_the_schema_doc_has_enough_examples():
    assert len(BLOCKS) >= MIN_EXAMPLES


def _first_line(sql: str) -> str:
    return sql.splitlines()[0][:60]


@pytest.mark.parametrize("sql", BLOCKS, ids=[f"{i:02d}-{_first_line(b)}" for i, b in enumerate(BLOCKS)])  # fmt: skip
def test_each_example_runs_read_only_and_finds_rows(sample_db, sql):
    before = sample_db.read_bytes(), sample_db.stat().st_mtime_ns
    out = io.StringIO()
    with logs.ReadOnlyDatabase(sample_db) as db:
        n = logs.run_query(db, sql, out, "json")
    assert n >= 1, f"no rows from:\n{sql}"
    assert (sample_db.read_bytes(), sample_db.stat().st_mtime_ns) == before


def test_the_documented_fts_quoting_is_what_the_code_does():
    assert fts_query(["example.com", '"quoted"', "C++"]) == '"example.com" """quoted""" "C++"'
    assert 'MATCH \'"example.com" """quoted""" "C++"\'' in SCHEMA_MD.read_text("utf-8")
