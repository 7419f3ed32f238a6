# Fixtures for store tests: a migrated temp database and a started Store, on
# both dialects: every test here that takes db_url (or store) runs once on a
# SQLite file and once on a database of the session's PostgreSQL server.

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from parley_chat.server.store import Store, writes

NOW = datetime(2026, 11, 25, 12, 0, 0)


DIALECTS = ("sqlite", "postgresql")


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file, for the tests of what only SQLite does (read-only files,
    a full disk, its file lock)."""
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def store(db_url: str, to_head: Callable[[str], None]) -> Iterator[Store]:
    """A started Store on a fresh database at head (a copy of the session's migrated
    template: the migrations themselves are tested from empty in test_migrations.py)."""
    to_head(db_url)
    s = Store(db_url, group_max=64)
    s.start()
    yield s
    s.close()


@pytest.fixture
def users(store: Store) -> dict[str, int]:
    """alice, bob and carol, all in #lobby; alice and bob also in #dev."""
    ids = {}
    for nick in ("alice", "bob", "carol"):
        ids[nick] = (
            store.submit(lambda s, n=nick: writes.create_user(s, n, "scrypt$x", NOW)).result(5).id
        )
    for nick in ("alice", "bob"):
        store.submit(lambda s, n=nick: writes.join_room(s, ids[n], "#dev", NOW)).result(5)
    return ids


def post(store: Store, **kw: object):
    """Store one message and return its record."""
    return store.submit(lambda s: writes.add_message(s, now=NOW, **kw)).result(5)[0]
