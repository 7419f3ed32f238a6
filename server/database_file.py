"""The server's hold on its database file: one server per database, on every OS.

A server takes an exclusive lock on ``<database>.lock`` beside the SQLite file for as long
as it runs (filelock: flock on Linux and macOS, LockFileEx on Windows; the OS drops the lock
when the process dies, so a crash never leaves a stale lock behind). A second server on the
same file is refused with the holder's pid. The lock file is left in place on release.

An in-memory URL (``sqlite://``, ``sqlite:///:memory:``) cannot serve a threaded server:
SQLite gives every connection its own empty in-memory database, so the migration, the
writer and the readers would each see a different one. Such a server gets a fresh SQLite
file in a temporary directory instead, removed when it stops: the same lifetime as memory,
with one database every thread shares.

A PostgreSQL database may be shared by several servers (nodes), one per node name: a
server holds an advisory lock keyed by its node name (server/store/node_lock.py) instead,
and a second server with the same name is refused with the holder's node, pid and host.
Other non-file URLs are used as they are, unlocked.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy.engine import make_url

from .errors import DatabaseLocked, DatabaseUnavailable
from .store.engine import database_path, display_url, is_postgresql, normalized_url
from .store.errors import database_said
from .store.node_lock import NodeLock, NodeLockTaken

log = logging.getLogger("parley.server")


def is_memory_url(url: str) -> bool:
    """True for a SQLite URL that names no file (each connection would get its own database)."""
    return make_url(url).get_backend_name() == "sqlite" and database_path(url) is None


class DatabaseFile:
    """The database a server uses: *url* as given, or a temporary file for a memory URL.

    ``url`` is what the store opens; ``acquire()`` locks it (raising DatabaseLocked when
    another server holds it) and ``release()`` unlocks it and removes a temporary database.
    """

    def __init__(self, url: str, *, node: str = "main") -> None:
        self.requested_url = url
        self.node = node
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if is_memory_url(url):
            # TemporaryDirectory cleans up at exit too, should release() never run.
            self._tmp = tempfile.TemporaryDirectory(prefix="parley-memory-")
            url = f"sqlite:///{Path(self._tmp.name) / 'parley.db'}"
        self.url = normalized_url(url)
        self.path = database_path(url)
        self._lock: FileLock | None = None
        self._node_lock: NodeLock | None = None

    @property
    def lock_path(self) -> Path | None:
        """The lock file beside the database (None when there is no file to lock)."""
        return None if self.path is None else self.path.with_name(self.path.name + ".lock")

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseLocked naming the server that holds it."""
        if is_postgresql(self.url):
            self._acquire_node_lock()
            return
        lock_path = self.lock_path
        if lock_path is None:
            log.warning(
                "%s is not a SQLite file: one server per database is not enforced", self.url
            )
            return
        # thread_local=False: stop() may run on another thread than start().
        lock = FileLock(lock_path, timeout=0, thread_local=False, on_acquired=_write_pid)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout as exc:
            # filelock also times out when the file cannot be made at all: say that instead.
            problem = _cannot_create(lock_path)
            if problem is not None:
                raise DatabaseUnavailable(_unwritable(lock_path, problem)) from exc
            raise DatabaseLocked(
                f"another parley server ({_holder(lock_path)}) is already using {self.path}; "
                "stop it first, or give this one its own --db"
            ) from exc
        except OSError as exc:
            raise DatabaseUnavailable(_unwritable(lock_path, exc)) from exc
        self._lock = lock

    def _acquire_node_lock(self) -> None:
        import psycopg

        lock = NodeLock(self.url, self.node)
        try:
            lock.acquire()
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database {display_url(self.url)}: {database_said(exc)}; "
                "check that PostgreSQL runs there and that --db (or PARLEY_DB, db_url) is right"
            ) from exc
        except NodeLockTaken as exc:
            raise DatabaseLocked(
                f"another parley server ({exc}) is already serving node {self.node!r} of this "
                "database; stop it first, or give this one its own --node"
            ) from exc
        self._node_lock = lock

    def release(self) -> None:
        """Unlock, and remove the temporary database of a memory URL. Safe to call twice."""
        if self._node_lock is not None:
            self._node_lock.release()
            self._node_lock = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _write_pid(fd: int) -> None:
    # Written through the locked descriptor, so only the holder ever writes it.
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"pid {os.getpid()}\n".encode())


def _cannot_create(lock_path: Path) -> OSError | None:
    """Why *lock_path* cannot be created, or None when it exists or can be."""
    if lock_path.exists():
        return None
    try:
        os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        return exc
    return None


def _unwritable(lock_path: Path, exc: OSError) -> str:
    return (
        f"cannot create {lock_path} beside the database: {exc.strerror or exc}; the "
        "database's folder must be one the server can write in (check --db or PARLEY_DB)"
    )


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as its file says ("another process" when it cannot be read)."""
    try:
        text = lock_path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:  # Windows refuses to read a locked range
        text = ""
    return text or "another process"
