# Fixtures for store tests: a migrated temp SQLite file and a started Store.

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from parley_chat.server.store import Store, upgrade_to_head, writes

NOW = datetime(2026, 11, 25, 12, 0, 0)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A started Store on a freshly migrated database."""
    upgrade_to_head(db_url, backup=False)
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
