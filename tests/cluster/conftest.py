"""Fixtures for cluster tests: several parley nodes sharing one real PostgreSQL database.

Each node is a real ChatServer (its own TLS listener, writer, pools and bus
connections) started in this process with `bus = postgres` and a node name of
its own, against the session's PostgreSQL server (tests/pgserver.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig


@pytest.fixture
def make_node(pg_url: str, certs_dir: Path) -> Iterator[Callable[..., ChatServer]]:
    """Start nodes on one fresh PostgreSQL database; the running ones stop at teardown.

    Nodes start one after another (the first migrates the database)."""
    started: list[ChatServer] = []

    def _make(name: str, **overrides: object) -> ChatServer:
        overrides.setdefault("presence_grace", 0.0)
        cfg = ServerConfig.for_tests(pg_url, certs_dir, bus="postgres", node=name, **overrides)
        server = ChatServer(cfg)
        server.start()
        started.append(server)
        return server

    yield _make
    for server in reversed(started):
        server.stop()
