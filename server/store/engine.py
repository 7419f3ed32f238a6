# server/store/engine.py: the one place SQLAlchemy engines are built, with the
# durability settings every connection needs (see reliability.md section 3).
#
# SQLite: WAL, synchronous=FULL, busy_timeout, foreign keys; SQLAlchemy (not
# pysqlite's legacy mode) emits BEGIN, and the writer's is BEGIN IMMEDIATE so it
# never meets SQLITE_BUSY_SNAPSHOT half-way through a transaction. A read-only
# database still opens (reads must keep working when writes cannot).
#
# PostgreSQL (psycopg 3): synchronous_commit on (its default, set explicitly so
# a server-wide "off" cannot weaken it: with fsync that is what WAL with
# synchronous=FULL gives), READ COMMITTED for the writer and REPEATABLE READ
# (one snapshot) for readers, pre-ping so a restarted database
# server costs one failed write, not a dead writer connection. No PRAGMAs and no
# BEGIN IMMEDIATE: the driver begins transactions itself, and row locks (the
# message counter, see models.MessageCounter) order the writers of several nodes.

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger("parley.store")

BUSY_TIMEOUT_MS = 5000
_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    f"busy_timeout={BUSY_TIMEOUT_MS}",
    "foreign_keys=ON",
)


def _code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of *exc* (None if it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    return sqlite3.SQLITE_READONLY if "readonly" in str(exc) else None


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL (file or memory)."""
    return make_url(url).get_backend_name() == "sqlite"


def is_postgresql(url: str) -> bool:
    """True for a PostgreSQL URL (any driver)."""
    return make_url(url).get_backend_name() == "postgresql"


def normalized_url(url: str) -> str:
    """*url* with psycopg 3 as the PostgreSQL driver when none is named.

    SQLAlchemy's default PostgreSQL driver is psycopg2, which parley does not use:
    `postgresql://host/db` means psycopg 3 here, as the docs say."""
    u = make_url(url)
    if u.drivername == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def display_url(url: str) -> str:
    """*url* for logs and messages: a PostgreSQL password shows as ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show it as given
        return url


def database_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory or other databases)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    db = u.database
    if db.startswith("file:"):
        db = db[5:].split("?", 1)[0]
    return Path(db)


def make_engine(url: str, *, writer: bool) -> Engine:
    """An engine for the writer thread (one connection, BEGIN IMMEDIATE) or for readers."""
    url = normalized_url(url)
    if is_postgresql(url):
        return _postgresql_engine(url, writer=writer)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    if writer:
        kwargs.update(pool_size=1, max_overflow=0)
    else:
        kwargs.update(pool_size=5, max_overflow=20)
    engine = create_engine(url, **kwargs)
    if not is_sqlite(url):
        return engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy decides when to BEGIN
        cur = dbapi_conn.cursor()
        try:
            for pragma in _PRAGMAS:
                try:
                    cur.execute("PRAGMA " + pragma)
                except sqlite3.OperationalError as exc:
                    # A read-only file not in WAL mode (a restored backup on a
                    # read-only mount) cannot be switched to WAL; reads work in
                    # its own journal mode, and writes fail clearly anyway.
                    if pragma != _PRAGMAS[0] or _code(exc) != sqlite3.SQLITE_READONLY:
                        raise
                    log.warning("cannot switch a read-only database to WAL mode: %s", exc)
        finally:
            cur.close()

    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # On the driver itself: every transaction starts here, and SQLAlchemy's
        # statement machinery cost more than the BEGIN (its errors are the
        # driver's own, which the writer classifies the same way).
        conn.connection.dbapi_connection.execute(begin)

    return engine


def _postgresql_engine(url: str, *, writer: bool) -> Engine:
    options = "-c synchronous_commit=on"
    kwargs: dict[str, Any] = {
        "connect_args": {"options": options, "application_name": "parley-server"},
        "pool_pre_ping": True,
        # The writer: READ COMMITTED, so a writer that waited for the message
        # counter's row lock goes on with the committed row instead of failing
        # with a serialization error. Readers: one snapshot per Store.read(), as
        # a SQLite read transaction gives (a read-only transaction there never
        # fails to serialize).
        "isolation_level": "READ COMMITTED" if writer else "REPEATABLE READ",
    }
    if writer:
        kwargs.update(pool_size=1, max_overflow=0)
    else:
        kwargs.update(pool_size=5, max_overflow=20)
    engine = create_engine(url, **kwargs)
    if writer:

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # psycopg sends BEGIN lazily, with the first statement. The writer begins
            # at once, as on SQLite: a refused connection then fails before any op
            # runs, and an op that ends the transaction (ROLLBACK) is told from one
            # that ran no SQL (the writer checks the transaction status after each).
            conn.connection.dbapi_connection.execute("SELECT 1")

    return engine
