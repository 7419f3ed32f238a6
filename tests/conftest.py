"""Shared fixtures: certificates from the project's own script, a temp SQLite
database (or a real PostgreSQL one: pg_server, pg_url), and a real TLS server
on an ephemeral loopback port.

Databases at head: the real migrations run once per session (per xdist worker) into a
template, SQLite file and PostgreSQL database alike, and a test that only needs a fresh
database at head gets a copy (`to_head`; make_server's default database). Migrating
from empty stays tested where it is the point: tests/server/store/test_migrations.py,
the store tests that take db_url, and every server started as a process.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The desktop client's package imports customtkinter without rewriting the
# font files in ~/.fonts (client/gui/fonts.py): imported here, before any test
# module, so no worker's import truncates a font another worker's window maps.
import parley_chat.client.gui
import parley_chat.server
from parley_chat.certs import generate
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig
from parley_chat.server.store import upgrade_to_head
from parley_chat.server.store.engine import database_path, is_postgresql
from tests import budget
from tests.pgserver import PgServer, PostgresUnavailable

ROOT = Path(__file__).resolve().parents[1]

budget.load()  # the hypothesis profile, before any test module builds its settings


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


#: Tests that take seconds of wall time each (measured, docs/decisions.md "The suite's
#: time"), by node id prefix: a whole file, or one test (and its parameters). On several
#: workers they run first, longest first, so none is left to run alone at the end while
#: the other workers have finished; most of them wait on processes and sockets, so the
#: short CPU-bound tests fill the cores meanwhile. Only the order depends on this list:
#: a test missing from it (or a figure gone stale) still runs, only later.
START_FIRST: dict[str, float] = {
    "tests/packaging/test_wheel.py": 30.0,  # one worker builds and installs the wheel
    "tests/battery/test_accounts.py::test_a_hundred_wrong_passwords_cost_five": 8.0,
    "tests/integration/test_mdns.py": 10.0,
    "tests/client/gui/test_connect_page.py::test_trust_on_first_use": 6.0,
    "tests/integration/test_scale.py::test_300_connections": 9.0,
    "tests/cluster/test_nodes.py": 5.0,
    "tests/client/test_cli_e2e.py": 4.0,
    "tests/client/test_cli_trust.py": 4.0,
    "tests/server/test_main.py": 4.0,
    "tests/client/gui/test_e2e_window.py": 4.0,
    "tests/client/gui/test_conversations.py": 4.0,
    "tests/client/gui/test_connect_lan.py": 4.0,
    "tests/client/test_cli.py": 3.0,
    "tests/server/test_admin.py": 3.0,
    "tests/client/gui/test_screenshots.py": 3.0,
    "tests/cluster/test_presence.py": 2.5,
    "tests/client/test_cli_terminal.py": 2.5,
    "tests/server/store/test_commit_order.py": 2.5,
    "tests/integration/test_stress.py": 2.5,
    "tests/battery/test_load.py": 2.5,
    "tests/server/test_announce.py": 2.0,
    "tests/server/test_presence_grace.py": 2.0,
    "tests/client/gui/test_chat_window.py": 2.0,
    "tests/client/gui/test_chat_features.py": 1.5,
}


def _expected_seconds(item: pytest.Item) -> float:
    """The START_FIRST figure of the longest prefix of *item*'s node id (0 if none)."""
    best, figure = -1, 0.0
    for prefix, seconds in START_FIRST.items():
        if item.nodeid.startswith(prefix) and len(prefix) > best:
            best, figure = len(prefix), seconds
    return figure


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only on xdist workers (and the same on each: the controller checks every worker
    # collected one order). The sort is stable: a file keeps its tests in order and
    # together, so its module-scoped fixtures are made once per worker, not per test.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: -_expected_seconds(item))


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every server a test starts collects garbage at start (server/memory.py: its
    # heap trim), and a full collection walks everything this process holds: the
    # collected tests and every imported module, tens of milliseconds a server.
    # Frozen, they are left out of every later collection (objects made after this
    # are collected as before).
    gc.collect()
    gc.freeze()


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


@pytest.fixture(scope="session")
def sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the real migrations brought to head, once per session: the template
    `to_head` copies (closed: one self-contained file, no WAL beside it)."""
    path = tmp_path_factory.mktemp("template") / "head.db"
    upgrade_to_head(f"sqlite:///{path}", backup=False)
    return path


@pytest.fixture(scope="session")
def pg_at_head(pg_server: PgServer) -> str:
    """A PostgreSQL database the real migrations brought to head, once per session:
    the template `to_head` and pg_head_url copy (CREATE DATABASE ... TEMPLATE)."""
    name = pg_server.create_database("head")
    upgrade_to_head(pg_server.url(name), backup=False)
    return name


@pytest.fixture
def to_head(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Put a fresh database (a SQLite file not yet there, or an empty PostgreSQL database
    of pg_server) at head, as upgrade_to_head would, by copying the session's template."""

    def _to_head(url: str) -> None:
        path = database_path(url)
        if path is not None:
            assert not path.exists(), f"{path} is not fresh: migrate it instead"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("sqlite_at_head"), path)
        elif is_postgresql(url):
            pg: PgServer = request.getfixturevalue("pg_server")
            name = url.rsplit("/", 1)[1]
            pg.replace_database(name, request.getfixturevalue("pg_at_head"))
        else:
            upgrade_to_head(url, backup=False)

    return _to_head


@pytest.fixture
def pg_head_url(pg_server: PgServer, pg_at_head: str) -> Iterator[str]:
    """A fresh PostgreSQL database at head for one test (a copy of the template, dropped
    afterwards)."""
    name = pg_server.create_database(template=pg_at_head)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file database for one test (not there yet: empty)."""
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def make_server(
    db_url: str, certs_dir: Path, to_head: Callable[[str], None]
) -> Iterator[Callable[..., ChatServer]]:
    """Start servers with test config overrides (db_url and certs_dir among them);
    all are stopped at teardown. The default database, if no file is there yet when
    the first server starts, starts as a copy of the session's template at head (the
    server then finds nothing to migrate); a db_url given as an override is used as is."""
    started: list[ChatServer] = []

    def _make(**overrides: object) -> ChatServer:
        if "db_url" not in overrides:
            path = database_path(db_url)
            if path is not None and not path.exists():
                to_head(db_url)
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
