"""Fixtures of the client tests: servers of a test's own, on certificates it can renew."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from parley_chat.server.chat_server import ChatServer


@pytest.fixture
def own_server(tmp_path: Path, make_server: Callable[..., ChatServer]) -> Callable[..., ChatServer]:
    """start(port=0, certs=None) -> a running server (stopped at teardown).

    Its certificates are tmp_path/certs unless *certs* names others: the test makes
    them (certs.generate), so it can renew or replace them between starts. Its
    database is tmp_path/own.db, kept across starts on the same port.
    """

    def start(port: int = 0, certs: Path | None = None) -> ChatServer:
        return make_server(
            db_url=f"sqlite:///{tmp_path / 'own.db'}",
            certs_dir=certs or tmp_path / "certs",
            port=port,
        )

    return start
