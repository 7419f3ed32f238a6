"""The one place SQLAlchemy engines are built, with the
durability settings every connection needs (see reliability.md section 3):
WAL, synchronous=FULL, busy_timeout, foreign keys; SQLAlchemy (not pysqlite's
legacy mode) emits BEGIN, and the writer's is BEGIN IMMEDIATE so it never
meets SQLITE_BUSY_SNAPSHOT half-way through a transaction. A read-only
database still opens (reads must keep working when writes cannot).
"""

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
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    if writer:
        kwargs.update(pool_size=1, max_overflow=0)
    else:
        kwargs.update(pool_size=5, max_overflow=20)
    engine = create_engine(url, **kwargs)

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
