# Shared fixtures: certificates from the project's own script, a temp SQLite
# database (or a real PostgreSQL one: pg_server, pg_url), and a real TLS server
# on an ephemeral loopback port.

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import parley_chat.server
from parley_chat.certs import generate
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig
from tests.pgserver import PgServer, PostgresUnavailable

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # An editable install maps parley_chat to one checkout: a venv shared between
    # checkouts (git worktrees) would test the other one's code without a word.
    imported = Path(parley_chat.server.__file__).resolve()
    if not imported.is_relative_to(ROOT):
        raise pytest.UsageError(
            f"parley_chat.server comes from {imported.parent}, not from this checkout "
            f"({ROOT}): this venv's editable install belongs to another checkout. "
            f"Run `{sys.executable} -m pip install --no-deps -e .` here, "
            "or give this checkout its own venv (make test makes one)."
        )


# No test advertises or browses by mDNS on a real network: servers started as
# `python -m parley_chat.server` and desktop windows inherit this. The discovery tests turn
# it back on inside a network namespace of their own (tests/integration/test_mdns.py).
os.environ["PARLEY_MDNS"] = "off"


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/client/gui, so the option works whatever paths pytest is given.
    parser.addoption(
        "--screenshots",
        action="store",
        default=None,
        metavar="DIR",
        help="save the GUI screenshots (PNG) into DIR (make screenshots: artifacts/)",
    )


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and server certificate made by `certs.generate`, once per test session."""
    out = tmp_path_factory.mktemp("certs")
    generate(out)
    return out


@pytest.fixture(scope="session")
def ca_file(certs_dir: Path) -> Path:
    """The CA certificate clients trust."""
    return certs_dir / "ca.pem"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole session (tests/pgserver.py), stopped at the end.

    Skipped where PostgreSQL is not installed, except on CI (CI set), where that fails:
    `make test` installs it, and the store suite must run on both dialects there."""
    try:
        server = PgServer()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file database for one test."""
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def make_server(db_url: str, certs_dir: Path) -> Iterator[Callable[..., ChatServer]]:
    """Start servers with test config overrides (db_url and certs_dir among them);
    all are stopped at teardown."""
    started: list[ChatServer] = []

    def _make(**overrides: object) -> ChatServer:
        url = str(overrides.pop("db_url", db_url))
        certs = Path(str(overrides.pop("certs_dir", certs_dir)))
        cfg = ServerConfig.for_tests(url, certs, **overrides)
        server = ChatServer(cfg)
        server.start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ChatServer]) -> ChatServer:
    """One running server with the test defaults."""
    return make_server()
