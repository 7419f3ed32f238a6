"""The server-level suites that exercise the store most (replay and search, moderation,
the key directory, the conversation list and read markers), run again with the server on PostgreSQL: their tests are collected
here too, where `db_url` is a PostgreSQL database, and the moderation suite's row helper
reads PostgreSQL. The few that open the SQLite file themselves are left to the SQLite run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration import test_replay
from tests.server import test_conversations, test_keys, test_moderation


def _is_fixture(obj: object) -> bool:
    return type(obj).__name__ == "FixtureFunctionDefinition" or hasattr(
        obj, "_pytestfixturefunction"
    )


def _collect(module: object) -> dict[str, object]:
    out = {}
    for name in dir(module):
        obj = getattr(module, name)
        if _is_fixture(obj):
            out[name] = obj  # the suite's own fixtures (trio, connect)
            continue
        if not name.startswith("test_"):
            continue
        func = obj
        code = getattr(func, "__code__", None)
        if code is not None and "sqlite3" in (*code.co_names, *code.co_varnames):
            continue  # reads rows through sqlite3: SQLite only
        out[f"{name}__pg"] = func
    return out


for _module in (test_replay, test_moderation, test_keys, test_conversations):
    globals().update(_collect(_module))


@pytest.fixture
def db_url(pg_head_url: str) -> str:
    """Every server of these tests on a fresh PostgreSQL database, at head (a copy of
    the session's migrated template: migrating PostgreSQL from empty is tested in
    test_migrations.py and test_server_on_postgresql.py)."""
    return pg_head_url


def _pg_rows(server: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """test_moderation.rows on PostgreSQL: the same `?` SQL, through the server's store."""
    with server.store.read() as s:
        result = s.connection().exec_driver_sql(sql.replace("?", "%s"), args)
        return [tuple(r) for r in result]


@pytest.fixture(autouse=True)
def _rows_on_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    # The moderation suite checks rows through its helper: read them on PostgreSQL.
    monkeypatch.setattr(test_moderation, "rows", _pg_rows)
    monkeypatch.setattr(test_conversations, "_rows", _pg_rows)
