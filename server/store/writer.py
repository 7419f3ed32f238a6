"""Store, the owner of the database connections: one
writer thread that group-commits every write, a pool of readers, and the
backlog of bookkeeping writes that wait while the database refuses writes.

Why one writer: SQLite allows one writer at a time anyway, and a commit under
synchronous=FULL costs an fsync; taking every pending write into one
transaction (group commit) gives ~30x the single-row rate. One group at a
time, always: an I/O loop may commit the room messages it read in one turn
itself (gathering()), but only while the writer thread has nothing queued or
in hand, and under the same lock, so groups still commit one after another
and in the order they were submitted.

Isolation: each operation runs in its own SAVEPOINT. Whatever one operation
raises (a conflict, a lone surrogate in a text, an int beyond 64 bits, a bad
parameter type, a bug) fails that operation alone: it is rolled back to its
savepoint and the group goes on. Only a database-wide failure (read-only,
full, I/O error, locked, corrupt) may have aborted SQLite's whole
transaction; then the group is rolled back and re-run one operation per
transaction, so each caller learns the truth about its own write. An
operation may therefore run more than once: it must only touch the database
(writes.py keeps that rule); each job's callback and future complete exactly
once, after COMMIT (or the final failure), in submission order.

Bookkeeping (session rows, resume tokens) must not stop logins when the
database refuses writes: submit_bookkeeping() writes like submit() when it
can, and otherwise keeps the operation, in order, in a bounded backlog that
the writer retries every `retry_interval` seconds and before each group.
Session and token ids come from the store (new_session_id, new_token_id), not
from an INSERT, so a login gets its ids even on a read-only database. A
bookkeeping future resolves (DEFERRED) as soon as its op is queued in the
backlog, possibly before earlier jobs' callbacks; those stay in order.
"""

from __future__ import annotations

import itertools
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.orm import Session

from . import queries, writes
from .engine import database_path, is_postgresql, make_engine
from .errors import StoreConflict, StoreError, StoreRejected, StoreUnwritable
from .models import ChatSession, ResumeToken
from .records import UserRecord

log = logging.getLogger("parley.store")

#: What an op returns (and its future resolves to).
T = TypeVar("T")

#: An op: a function of the writer's session.
Op = Callable[[Session], T]
#: Its callback: (the op's result, None) after COMMIT, (None, the error) on failure.
Done = Callable[[T | None, BaseException | None], None]

#: Bookkeeping writes kept while the database refuses writes; beyond this the
#: newest are dropped (and logged): memory stays bounded through a long outage.
BACKLOG_MAX: Final = 10_000

#: Seconds between retries of the backlog while it is not empty.
RETRY_INTERVAL: Final = 2.0

#: Backlog operations per transaction when catching up.
BACKLOG_CHUNK: Final = 500

#: A group committed on a gathering thread (an I/O loop) slower than this many
#: seconds means a slow disk or a held write lock: the loop must not wait on the
#: next one. Measured here: about 2 ms of wall time for a one-message group.
INLINE_SLOW: Final = 0.05
#: Seconds the gathering threads then leave every group to the writer thread.
INLINE_PAUSE: Final = 10.0

#: A job's write on SQLite's driver connection: the op's result, or None when
#: it stored nothing (the job then runs its op, which says why).
Direct = Callable[[sqlite3.Connection], T | None]


class _Deferred:
    """The type of DEFERRED (one instance; compare with `is`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFERRED"

    def __bool__(self) -> bool:
        return False  # like "0 rows": `if ended:` reads naturally for a count


#: What a submit_bookkeeping() future resolves to when the database refused the
#: write and it waits in the backlog (it will be stored when writes work again).
DEFERRED: Final = _Deferred()


@dataclass(slots=True)
class _Job(Generic[T]):
    op: Op[T]
    on_done: Done[T] | None
    what: str
    bookkeeping: bool = False
    #: Bookkeeping only: runs on the writer thread once the op is committed
    #: (True) or given up (False), whenever that is.
    on_settled: Callable[[bool], None] | None = None
    future: Future[T] = field(default_factory=Future)
    finished: bool = False
    #: Gathered jobs only: the op's common case on the driver's connection.
    direct: Direct[T] | None = None


_STOP = object()

# SQLite primary result codes that concern the database as a whole, not one
# statement: after them SQLite may have rolled the transaction back itself
# (sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction").
_DATABASE_WIDE_CODES = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_ABORT,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)
# The same, by message, for an error without a code (a hand-made one).
_DATABASE_WIDE_TEXT = (
    "readonly database",
    "disk is full",
    "disk i/o error",
    "database is locked",
    "database table is locked",
    "unable to open",
    "malformed",
    "not a database",
    "out of memory",
)


# PostgreSQL SQLSTATEs that say the database cannot write now, whatever the
# statement: connection lost (08), out of disk or memory (53), shut down or
# cancelled by the operator (57), system or I/O error (58), internal error (XX),
# and a read-only transaction or a hot standby (25006).
_PG_DATABASE_WIDE_CLASSES = frozenset({"08", "53", "57", "58", "XX"})
_PG_DATABASE_WIDE_STATES = frozenset({"25006"})


def is_database_wide(exc: BaseException) -> bool:
    """True when *exc* says the database cannot write at all (read-only, full,
    I/O error, locked, corrupt), not that one statement or its input was bad."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):
        if isinstance(orig, sqlite3.InterfaceError | sqlite3.ProgrammingError):
            return False  # binding a parameter failed: the input's fault
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            return (code & 0xFF) in _DATABASE_WIDE_CODES  # extended codes keep the primary low byte
        text = str(orig).lower()
        return any(t in text for t in _DATABASE_WIDE_TEXT)
    # PostgreSQL: by SQLSTATE class. Its OperationalError is about the server too.
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and (
        state in _PG_DATABASE_WIDE_STATES or state[:2] in _PG_DATABASE_WIDE_CLASSES
    ):
        return True
    return isinstance(exc, OperationalError)


def _is_bad_input(exc: BaseException) -> bool:
    """True when *exc* says the values could not be bound or encoded."""
    if isinstance(exc, DataError):  # PostgreSQL: a value out of range, a NUL in a text
        return True
    if isinstance(exc, DBAPIError):
        if _is_psycopg(exc.orig):
            # Refused before it reached the server (no SQLSTATE): a value psycopg
            # cannot adapt or encode. The server's own refusals carry one, and a
            # lost connection is an OperationalError (database-wide, not input).
            return (
                getattr(exc.orig, "sqlstate", None) is None
                and type(exc.orig).__name__ in _PSYCOPG_INPUT_ERRORS
            )
        return isinstance(exc.orig, sqlite3.InterfaceError | sqlite3.ProgrammingError)
    if isinstance(exc, sqlite3.InterfaceError | sqlite3.ProgrammingError):
        return True  # from the message insert, which runs on the driver itself
    if isinstance(exc, StatementError):  # a Python error while processing parameters
        return True
    # UnicodeEncodeError (a lone surrogate), OverflowError (> 2**63-1) and
    # ValueError / TypeError from a value the driver cannot take.
    return isinstance(exc, ValueError | OverflowError | TypeError)


#: psycopg's classes for a value it could not send (cannot adapt, cannot encode).
_PSYCOPG_INPUT_ERRORS = frozenset({"ProgrammingError", "DataError", "InterfaceError"})


def _is_psycopg(exc: BaseException | None) -> bool:
    return type(exc).__module__.startswith("psycopg")


def _reason(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError) and exc.orig:
        orig = exc.orig
    return f"{type(orig).__name__}: {orig}"


def _op_name(op: Op[Any]) -> str:
    while isinstance(op, partial):
        op = op.func
    return getattr(op, "__name__", type(op).__name__)


class _RetryIsolated(Exception):
    """One op of an optimistic group failed: run the group again, each op in a SAVEPOINT."""


class _GroupFailed(Exception):
    """A transaction could not be completed; nothing of it was committed."""

    def __init__(self, cause: BaseException, *, database_wide: bool, at_begin: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.database_wide = database_wide
        #: The failure came before any operation ran (BEGIN was refused).
        self.at_begin = at_begin

    def error(self) -> StoreError:
        """What each caller whose operation was in the failed transaction is told."""
        orig = self.cause.orig if isinstance(self.cause, DBAPIError) else self.cause
        if self.database_wide:
            return StoreUnwritable(f"the database refuses writes: {orig}")
        return StoreError(f"database error: {orig}")


def _original_error(exc: BaseException) -> BaseException:
    """The error that started it all, when SQLite's own rollback hid it.

    SQLITE_FULL (and other database-wide errors) roll back the whole
    transaction; SQLAlchemy's ROLLBACK TO SAVEPOINT then fails with "no such
    savepoint", which would be reported instead of "database or disk is full".
    """
    while "no such savepoint" in str(exc) and exc.__context__ is not None:
        exc = exc.__context__
    return exc


#: libpq's PQtransactionStatus values for "a command runs" and "idle in a transaction".
_PQ_ACTIVE, _PQ_INTRANS = 1, 2


def _transaction_usable(s: Session) -> bool:
    """Whether the group's transaction is still open in SQLite.

    SQLite rolls a transaction back by itself after some errors; statements
    after that would run outside any transaction (each committing alone), so
    the group must stop and be retried instead."""
    try:
        if not s.in_transaction():
            return False
        raw = s.connection().connection.dbapi_connection
        info = getattr(raw, "info", None)
        status = getattr(info, "transaction_status", None)
        if status is not None:  # psycopg: in a transaction, and not an aborted one
            return int(status) in (_PQ_ACTIVE, _PQ_INTRANS)
        return raw is None or bool(getattr(raw, "in_transaction", True))
    except Exception:
        return False


#: How long an _IdSource trusts its counter before it reads max(id) again.
_ID_REREAD = 1.0

#: Ids a PostgreSQL _IdSource takes from the sequence at once.
_ID_BLOCK = 64


class _IdSource:
    """Ids for rows the store inserts later (sessions, resume tokens).

    SQLite: above both the table's largest id and every id handed out before;
    the server is the only writer of these tables (one server per file: the
    lock). PostgreSQL: from the table's sequence, shared by every node."""

    def __init__(self, store: Store, column: Any) -> None:
        self._store = store
        self._column = column
        self._last = 0
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self._block: deque[int] = deque()

    def next(self) -> int:
        if self._store.shared:
            return self._next_from_sequence()
        with self._lock:
            fresh = time.monotonic() - self._read_at < _ID_REREAD
        stored = 0
        if not fresh:
            try:
                # Re-read now and then: rows inserted without an explicit id
                # (tests, older callers) take max(id) + 1 from SQLite; never hand
                # that out. Not on every call: a login storm paid two reads a login.
                with self._store.read() as s:
                    stored = s.scalar(select(func.max(self._column))) or 0
            except Exception as exc:  # a read failure must not stop a login
                log.warning("could not read the largest %s: %s", self._column, exc)
        with self._lock:
            if not fresh:
                self._read_at = time.monotonic()
            self._last = max(self._last, stored) + 1
            return self._last

    def _next_from_sequence(self) -> int:
        """PostgreSQL: several nodes insert these rows, so max(id) + 1 would collide;
        ids come from the table's own sequence instead, a block at a time (a login
        storm would otherwise pay a round trip per id), and a database that cannot be
        reached only stops logins once the block is used up."""
        with self._lock:
            if self._block:
                return self._block.popleft()
            table = self._column.table.name
            try:
                with self._store.read() as s:
                    ids = s.scalars(
                        text(
                            "SELECT nextval(pg_get_serial_sequence(:t, 'id'))"
                            " FROM generate_series(1, :n)"
                        ),
                        {"t": table, "n": _ID_BLOCK},
                    ).all()
            except Exception as exc:
                # Without the database no id is known to be free on every node.
                raise StoreUnwritable(f"cannot take a new {table} id: {exc}") from exc
            self._block.extend(int(i) for i in ids)
            return self._block.popleft()


@dataclass(frozen=True, slots=True)
class _PendingToken:
    user_id: int
    token_id: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LoginRecord:
    """What record_login() returns: the session's and the token's ids at once,
    and a future that resolves when the rows are stored (DEFERRED if they wait
    for the database to accept writes again)."""

    session_id: int
    token_id: int
    stored: Future[int | _Deferred]


class Store:
    """The database: `submit()` writes through the writer thread, `read()` reads,
    `submit_bookkeeping()` writes what may wait for a writable database."""

    def __init__(
        self,
        url: str,
        *,
        group_max: int = 512,
        retry_interval: float = RETRY_INTERVAL,
        backlog_max: int = BACKLOG_MAX,
        callback_scope: Callable[[], AbstractContextManager[object]] = nullcontext,
        node: str = "main",
        inline_slow: float = INLINE_SLOW,
    ) -> None:
        self.url = url
        #: The server node this store writes for (sessions.node).
        self.node = node
        #: True on PostgreSQL: several nodes may share the database.
        self.shared = is_postgresql(url)
        #: Entered around each committed group's callbacks (the server passes
        #: Hub.batch, so a group's fan-out reaches each connection at once).
        self._callback_scope = callback_scope
        self.group_max = group_max
        self.retry_interval = retry_interval
        self.backlog_max = backlog_max
        self._queue: queue.SimpleQueue[_Job[Any] | object] = queue.SimpleQueue()
        self._writer_engine: Engine | None = None
        self._reader_engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # Writer-thread state.
        self._backlog: deque[_Job[Any]] = deque()
        self._dropped = 0
        self._writable = True
        self._last_write_error: str | None = None
        # Ids and tokens of logins whose rows may not be stored yet.
        self._session_ids = _IdSource(self, ChatSession.id)
        self._token_ids = _IdSource(self, ResumeToken.id)
        self._pending_tokens: dict[str, _PendingToken] = {}
        self._pending_lock = threading.Lock()
        # Held around every group, on the writer thread or on a thread that
        # commits its own gathered group (gathering()).
        self._group_lock = threading.Lock()
        # Jobs enqueued and jobs handled (under self._lock): equal when the
        # writer has nothing in hand or queued.
        self._submitted = 0
        self._handled = 0
        self._local = threading.local()
        #: A gathered group slower than this (seconds) pauses committing on the
        #: gathering thread (see gathering()).
        self.inline_slow = inline_slow
        self._inline_after = 0.0  # monotonic time before which gathered groups go to the writer

    @property
    def database_path(self) -> Path | None:
        """The SQLite file (None for a non-file database)."""
        return database_path(self.url)

    @property
    def writable(self) -> bool:
        """Whether the last write attempt succeeded (True until one fails).

        False while the database refuses writes (read-only, full, I/O error,
        locked); it turns True again with the next successful commit, for
        example the backlog's periodic retry. Reads work either way."""
        return self._writable

    @property
    def last_write_error(self) -> str | None:
        """Why writes fail, while `writable` is False (None otherwise)."""
        return None if self._writable else self._last_write_error

    @property
    def jobs_submitted(self) -> int:
        """Writes submitted so far: a count that rises with chat traffic (and
        logins' rows), for a caller that wants to know whether any flowed."""
        return self._submitted

    @property
    def pending_bookkeeping(self) -> int:
        """How many bookkeeping writes wait in the backlog for a writable database."""
        return len(self._backlog)

    def start(self) -> None:
        """Open the engines and start the writer thread."""
        self._writer_engine = make_engine(self.url, writer=True)
        self._reader_engine = make_engine(self.url, writer=False)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Finish every submitted write, try the backlog once more, then stop the
        writer and close connections."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        # A group a gathering thread began before the close ends first.
        if self._group_lock.acquire(timeout=timeout):
            self._group_lock.release()
        for engine in (self._writer_engine, self._reader_engine):
            if engine is not None:
                engine.dispose()

    def submit(
        self, op: Op[T], on_done: Done[T] | None = None, *, what: str | None = None
    ) -> Future[T]:
        """Run `op(session)` on the writer thread in a group-committed transaction.

        After COMMIT (or failure), `on_done(result, exc)` runs on the writer
        thread, then the returned future resolves. Errors: StoreConflict or
        StoreRejected (the caller's: the request contradicts the stored state,
        or the input cannot be stored), StoreError (the database's;
        StoreUnwritable when it refuses writes). Nothing of a failed op stays,
        and no other caller's op fails with it. *what* names the op in logs.
        `op` may run more than once (see the module comment): database only.
        """
        return self._enqueue(_Job(op, on_done, what or _op_name(op)))

    def submit_gathered(
        self,
        op: Op[T],
        on_done: Done[T],
        *,
        what: str | None = None,
        direct: Direct[T] | None = None,
    ) -> Future[T]:
        """submit(), but inside gathering() on this thread the op waits for the end
        of the scope and commits with the others gathered there, as one group.

        For callers that never wait on the future (they would wait for the end
        of their own scope): the room messages an I/O loop reads. *direct* is
        the op's common case as one call on SQLite's driver connection
        (writes.add_room_message_direct): a group committed on the gathering
        thread whose jobs all have one runs them without an ORM session, a
        quarter of a millisecond of CPU less a group. A job whose direct call
        stored nothing then runs *op*, which says why; if any direct call or
        the commit fails, nothing is kept and the whole group runs its ops."""
        job = _Job(op, on_done, what or _op_name(op), direct=direct)
        gathered: list[_Job[Any]] | None = getattr(self._local, "gathered", None)
        if gathered is None:
            return self._enqueue(job)
        gathered.append(job)
        return job.future

    def queue_gathered(self) -> None:
        """Queue for the writer thread what this thread gathered so far.

        For a gathering thread about to hand work to another thread that may
        submit writes (an I/O loop dispatching a handler to a pool): those
        writes then commit after the ops gathered before them, so one
        connection's messages get ids in the order it sent them. Outside
        gathering(), or with nothing gathered, it does nothing."""
        gathered: list[_Job[Any]] | None = getattr(self._local, "gathered", None)
        if gathered:
            jobs = gathered[:]
            gathered.clear()
            self._enqueue_all(jobs)

    @contextmanager
    def gathering(self) -> Iterator[None]:
        """Gather this thread's submit_gathered() ops until the scope ends, then
        commit them as one group on this thread if the writer is idle (nothing
        queued or in hand), or queue them for the writer, in order.

        An I/O loop wraps each turn's reads in it (SQLite only: on PostgreSQL a
        commit is a round trip, which a loop must not wait for). A room message
        is then committed and handed to the hub in the turn that read it,
        without waking the writer thread and waiting for it to get the GIL.
        A group that took longer than `inline_slow` seconds (a slow disk,
        another process holding the write lock) sends the next ones to the
        writer for INLINE_PAUSE seconds, so a loop waits on a slow disk once."""
        if self.shared or getattr(self._local, "gathered", None) is not None:
            yield
            return
        gathered: list[_Job[Any]] = []
        self._local.gathered = gathered
        try:
            yield
        finally:
            self._local.gathered = None
            if gathered:
                self._commit_here(gathered)

    def _commit_here(self, jobs: list[_Job[Any]]) -> None:
        if time.monotonic() >= self._inline_after and self._group_lock.acquire(blocking=False):
            try:
                if self._claim_idle(len(jobs)):
                    self._commit_claimed(jobs)
                    return
            finally:
                self._group_lock.release()
        self._enqueue_all(jobs)

    def _claim_idle(self, count: int) -> bool:
        """Whether the writer thread has nothing queued or in hand (and the
        database takes writes); if so, count *count* jobs as submitted."""
        with self._lock:
            # A database refusing writes stays the writer thread's business:
            # its failures can take the busy timeout.
            idle = (
                self._handled == self._submitted
                and self._writable
                and not self._backlog
                and not self._closed.is_set()
                and self._thread is not None
            )
            if idle:
                self._submitted += count
            return idle

    def _commit_claimed(self, jobs: list[_Job[Any]]) -> None:
        began = time.monotonic()
        try:
            if all(job.direct is not None for job in jobs) and not self._backlog:
                self._guarded(self._process_direct, jobs)
            else:
                self._guarded(self._process, jobs)
        finally:
            self._count_handled(len(jobs))
        took = time.monotonic() - began
        if took > self.inline_slow:
            self._inline_after = time.monotonic() + INLINE_PAUSE
            log.info(
                "a group took %.0f ms: the writer thread commits alone for %g s",
                took * 1000,
                INLINE_PAUSE,
            )

    def _process_direct(self, jobs: list[_Job[Any]]) -> None:
        """Commit *jobs* through their direct calls in one transaction on the
        writer's driver connection (under the group lock, the writer idle)."""
        assert self._writer_engine is not None
        results: list[Any] | None = None
        fairy = self._writer_engine.raw_connection()
        try:
            raw: sqlite3.Connection = fairy.dbapi_connection  # type: ignore[assignment]
            try:
                raw.execute("BEGIN IMMEDIATE")
                results = [job.direct(raw) for job in jobs if job.direct is not None]
                raw.execute("COMMIT")
            except Exception:  # nothing is kept: the ops' own path classifies it
                results = None
                try:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.warning("rolling back a failed write transaction failed: %s", exc)
        finally:
            fairy.close()
        if results is None:
            self._process(jobs)  # nothing was kept: the ops' own path classifies it
            return
        stored = [(job, r) for job, r in zip(jobs, results, strict=True) if r is not None]
        rest = [job for job, r in zip(jobs, results, strict=True) if r is None]
        if stored:
            self._note_success()
            with self._callback_scope():
                for job, result in stored:
                    self._finish(job, result, None)
        if rest:
            self._process(rest)  # a re-send, a missing room or membership: their ops say so

    def _count_handled(self, count: int) -> None:
        with self._lock:
            self._handled += count

    def submit_bookkeeping(self, op: Op[T], *, what: str | None = None) -> Future[T | _Deferred]:
        """Write *op* now if the database accepts writes, or later, in order.

        For writes no caller must wait on to go on working (session rows,
        resume tokens). Operations run in submission order, also relative to
        each other across an outage: while any wait, a new one queues behind
        them. The future resolves to the op's result once committed, or to
        DEFERRED when the database refused (read-only, full, I/O error,
        locked) and the op waits in the backlog; the writer retries the
        backlog every `retry_interval` seconds and before each group until it
        is stored. Errors: StoreConflict / StoreRejected / StoreError as for
        submit() when the op itself fails (it is then dropped, not retried),
        StoreUnwritable when the backlog is full (the op is dropped).
        """
        job: _Job[T | _Deferred] = _Job(op, None, what or _op_name(op), bookkeeping=True)
        return self._enqueue(job)

    def new_session_id(self) -> int:
        """An id for a session row not stored yet (writes.open_session(session_id=...))."""
        return self._session_ids.next()

    def new_token_id(self) -> int:
        """An id for a resume token row not stored yet (writes.issue_token(token_id=...))."""
        return self._token_ids.next()

    def record_login(
        self,
        *,
        user_id: int,
        peer: str,
        client: str | None,
        token_hash: str,
        now: datetime,
        expires_at: datetime,
    ) -> LoginRecord:
        """Issue a resume token and open a session row, as one bookkeeping write.

        Returns the ids at once, whether or not the database accepts writes;
        until the rows are stored, user_by_token() knows the token, so the
        client can resume with it even during the outage.
        """
        session_id, token_id = self.new_session_id(), self.new_token_id()
        with self._pending_lock:
            self._pending_tokens[token_hash] = _PendingToken(user_id, token_id, expires_at)

        def login(s: Session) -> int:
            writes.issue_token(s, user_id, token_hash, now, expires_at, token_id=token_id)
            return writes.open_session(
                s,
                user_id=user_id,
                peer=peer,
                client=client,
                token_id=token_id,
                now=now,
                session_id=session_id,
                node=self.node,
            )

        def settled(_stored: bool) -> None:
            # Stored: the database answers from now on. Given up: forget it.
            with self._pending_lock:
                self._pending_tokens.pop(token_hash, None)

        job: _Job[int | _Deferred] = _Job(
            login, None, "login", bookkeeping=True, on_settled=settled
        )
        return LoginRecord(session_id, token_id, self._enqueue(job))

    def user_by_token(self, token_hash: str, now: datetime) -> tuple[UserRecord, int] | None:
        """The user a valid resume token belongs to, and the token's id, or None.

        queries.user_by_token, plus the tokens record_login() issued that are
        not stored yet (the database refused writes): a client can resume with
        the token of a login made during an outage."""
        with self._pending_lock:
            pending = self._pending_tokens.get(token_hash)  # before the read: see below
        with self.read() as s:
            found = queries.user_by_token(s, token_hash, now)
            if found is not None or pending is None or pending.expires_at <= now:
                return found
            # Taken before this snapshot: if the row is stored (and perhaps
            # revoked since), this snapshot shows it and the database decides.
            if queries.token_exists(s, token_hash):
                return None
            user = queries.user_by_id(s, pending.user_id)
        if user is None or user.deleted:
            return None
        return user, pending.token_id

    def _enqueue(self, job: _Job[T]) -> Future[T]:
        gathered: list[_Job[Any]] | None = getattr(self._local, "gathered", None)
        if gathered:
            # This thread gathered ops before this one: they go first (FIFO).
            jobs = [*gathered, job]
            gathered.clear()
            self._enqueue_all(jobs)
        else:
            self._enqueue_all([job])
        return job.future

    def _enqueue_all(self, jobs: list[_Job[Any]]) -> None:
        with self._lock:
            if self._closed.is_set() or self._thread is None:
                for job in jobs:
                    self._finish(job, None, StoreError("the store is closed"))
                return
            for job in jobs:
                self._queue.put(job)
            self._submitted += len(jobs)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session on its own pooled connection, one snapshot throughout."""
        if self._reader_engine is None:
            raise StoreError("the store is not started")
        with Session(self._reader_engine, expire_on_commit=False) as s:
            try:
                yield s
            finally:
                s.rollback()

    # --- the writer thread ------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.retry_interval if self._backlog else None)
            except queue.Empty:
                with self._group_lock:
                    self._guarded(self._drain_backlog, [])
                continue
            if first is _STOP:
                break
            jobs: list[_Job[Any]] = [first]  # type: ignore[list-item]
            while len(jobs) < self.group_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                jobs.append(item)  # type: ignore[arg-type]
            with self._group_lock:
                self._guarded(self._process, jobs)
            self._count_handled(len(jobs))
        if self._backlog:
            self._guarded(self._drain_backlog, [])
        if self._backlog:
            log.error(
                "closing with %d bookkeeping write(s) the database refused (%s); they are "
                "lost: sessions left open are ended at the next start",
                len(self._backlog),
                self._last_write_error,
            )
            for job in self._backlog:
                self._settle(job, False)
            self._backlog.clear()

    def _guarded(self, step: Callable[[list[_Job[Any]]], None], jobs: list[_Job[Any]]) -> None:
        try:
            step(jobs)
        except Exception:  # never let the writer die: that would hang every caller
            log.exception("the store writer failed (a bug)")
            for job in jobs:
                if not job.finished:  # a deferred one still waits in the backlog
                    self._settle(job, False)
                    self._finish(job, None, StoreError("internal store error"))

    def _process(self, jobs: list[_Job[Any]]) -> None:
        if self._backlog:
            self._drain_backlog([])  # older bookkeeping first, when writes work again
        now: list[_Job[Any]] = []
        for job in jobs:
            if job.bookkeeping and self._backlog:
                self._defer(job)  # behind the ones already waiting: order is kept
            else:
                now.append(job)
        if now:
            self._commit_group(now)

    def _attempt(
        self, jobs: list[_Job[Any]], *, savepoints: bool = False
    ) -> list[tuple[Any, BaseException | None]]:
        """Run *jobs* in one transaction and commit.

        Optimistically first (*savepoints* False): the ops one after another
        with no SAVEPOINT, which at a login storm's or a busy room's group
        sizes cost more than the ops themselves. If one op of several fails,
        _RetryIsolated is raised (nothing was committed) and the caller runs
        the group again with *savepoints*, each op in its own, so the failure
        stays that op's. A lone op needs none: its failure rolls back only it.

        Returns each job's (result, exception); an exception here is the job's
        own and was rolled back. _GroupFailed if the transaction as a whole
        failed: then nothing was committed. A commit that changed rows marks
        the database writable again.
        """
        assert self._writer_engine is not None
        outcomes: list[tuple[Any, BaseException | None]] = []
        s = Session(self._writer_engine, expire_on_commit=False)
        try:
            try:
                s.begin()
                # BEGIN IMMEDIATE now: a refusal here means no op ran.
                raw = s.connection().connection.dbapi_connection
                before = getattr(raw, "total_changes", None)
            except Exception as exc:
                raise _GroupFailed(exc, database_wide=is_database_wide(exc), at_begin=True) from exc
            for job in jobs if not savepoints else ():
                try:
                    result = job.op(s)
                except Exception as raised:
                    error = _original_error(raised)
                    wide = is_database_wide(error)
                    if wide:
                        raise _GroupFailed(error, database_wide=wide, at_begin=False) from error
                    if len(jobs) > 1:
                        raise _RetryIsolated from error  # close() below rolls it all back
                    # A lone op: rolling the transaction back undoes that op alone.
                    s.rollback()
                    return [(None, error)]
                if not _transaction_usable(s):
                    # An op ended the transaction itself: nothing it did counts.
                    if len(jobs) > 1:
                        raise _RetryIsolated
                    s.rollback()
                    return [(None, StoreError("the write ended its own transaction"))]
                outcomes.append((result, None))
            for job in jobs if savepoints else ():
                try:
                    with s.begin_nested():
                        result = job.op(s)
                except Exception as raised:
                    error = _original_error(raised)
                    wide = is_database_wide(error)
                    if wide or not _transaction_usable(s):
                        raise _GroupFailed(error, database_wide=wide, at_begin=False) from error
                    outcomes.append((None, error))
                else:
                    outcomes.append((result, None))
            # Only a commit that changed rows proves writes work: on a read-only
            # database a group of conflicts and reads commits fine too.
            after = getattr(raw, "total_changes", None)
            try:
                s.commit()
            except Exception as exc:
                raise _GroupFailed(
                    exc, database_wide=is_database_wide(exc), at_begin=False
                ) from exc
            if before is None or after is None or after > before:
                self._note_success()
        finally:
            try:
                s.close()  # rolls back whatever was not committed
            except Exception as exc:
                log.warning("rolling back a failed write transaction failed: %s", exc)
        return outcomes

    def _commit_group(self, jobs: list[_Job[Any]]) -> None:
        try:
            try:
                outcomes = self._attempt(jobs)
            except _RetryIsolated:
                outcomes = self._attempt(jobs, savepoints=True)
        except _GroupFailed as failure:
            self._note_failure(failure)
            if failure.at_begin or len(jobs) == 1:
                # Nothing ran, or nothing is left to tell apart: the same answer for all.
                for job in jobs:
                    self._fail(job, failure)
                return
            # A database-wide failure was logged once, when writes stopped working.
            log.log(
                logging.DEBUG if failure.database_wide else logging.WARNING,
                "a group of %d writes failed (%s); retrying one per transaction",
                len(jobs),
                _reason(failure.cause),
            )
            for job in jobs:
                if job.bookkeeping and self._backlog:
                    self._defer(job)
                else:
                    self._commit_group([job])
            return
        # One scope around the whole group's callbacks: the hub gathers their
        # deliveries and hands each connection its share once (server/hub.py).
        with self._callback_scope():
            for job, (result, exc) in zip(jobs, outcomes, strict=True):
                if exc is None:
                    self._settle(job, True)
                    self._finish(job, result, None)
                else:
                    self._settle(job, False)
                    self._finish(job, None, self._op_error(job, exc))

    def _fail(self, job: _Job[Any], failure: _GroupFailed) -> None:
        if job.bookkeeping and failure.database_wide:
            self._defer(job)
            return
        if not failure.database_wide:  # database-wide ones were logged once by _note_failure
            log.error("write failed (%s): %s", job.what, _reason(failure.cause))
        self._settle(job, False)
        self._finish(job, None, failure.error())

    def _op_error(self, job: _Job[Any], exc: BaseException) -> BaseException:
        """The error the caller of a failed (rolled back) operation gets, logged once."""
        if isinstance(exc, StoreConflict):
            return exc  # routine: nick taken, not a member; the caller says so
        if isinstance(exc, IntegrityError | sqlite3.IntegrityError):
            log.warning("write refused (%s): %s", job.what, _reason(exc))
            orig = exc.orig if isinstance(exc, IntegrityError) else exc
            return StoreConflict(f"conflicts with stored data: {orig}")
        if isinstance(exc, StoreRejected) or _is_bad_input(exc):
            log.warning("write rejected (%s): %s", job.what, _reason(exc))
            if isinstance(exc, StoreRejected):
                return exc
            rejected = StoreRejected(f"the input could not be stored: {_reason(exc)}")
            rejected.__cause__ = exc
            return rejected
        if isinstance(exc, StoreError | SQLAlchemyError):
            # The database refused this statement alone (no such table: a bug
            # or a schema mismatch). The server's fault, not the input's.
            log.error("write failed (%s): %s", job.what, _reason(exc))
            if isinstance(exc, StoreError):
                return exc
            return StoreError(f"database error: {exc.orig if isinstance(exc, DBAPIError) else exc}")
        # A bug in the operation: its own exception, so the caller sees what it was.
        log.error("write failed (%s) with an unexpected error", job.what, exc_info=exc)
        return exc

    def _note_failure(self, failure: _GroupFailed) -> None:
        if not failure.database_wide:
            return
        reason = _reason(failure.cause)
        if self._writable:
            log.error(
                "the database refuses writes (%s): writes fail, reads still work, and "
                "bookkeeping waits in a backlog retried every %g s",
                reason,
                self.retry_interval,
            )
        self._writable = False
        self._last_write_error = reason

    def _note_success(self) -> None:
        if not self._writable:
            log.warning("the database accepts writes again")
        self._writable = True
        self._last_write_error = None

    # --- the bookkeeping backlog --------------------------------------------------

    def _defer(self, job: _Job[Any]) -> None:
        if len(self._backlog) >= self.backlog_max:
            self._dropped += 1
            if self._dropped == 1:
                log.error(
                    "the bookkeeping backlog is full (%d writes); dropping new ones until "
                    "the database accepts writes again",
                    self.backlog_max,
                )
            self._settle(job, False)
            self._finish(job, None, StoreUnwritable("the database refuses writes, backlog full"))
            return
        self._backlog.append(job)
        self._finish(job, DEFERRED, None)

    def _drain_backlog(self, _jobs: list[_Job[Any]]) -> None:
        """Store the backlog, oldest first, as far as the database lets us."""
        stored = 0
        while self._backlog:
            chunk = list(itertools.islice(self._backlog, BACKLOG_CHUNK))
            outcomes = self._attempt_backlog(chunk)
            for _result, exc in outcomes:
                job = self._backlog.popleft()
                if exc is not None:
                    log.warning("bookkeeping write dropped (%s): %s", job.what, _reason(exc))
                self._settle(job, exc is None)
                stored += exc is None
            if len(outcomes) < len(chunk):
                break  # the database refused again: the rest waits for the next retry
        if stored and not self._backlog:
            dropped, self._dropped = self._dropped, 0
            log.warning(
                "caught up %d deferred bookkeeping write(s)%s",
                stored,
                f"; {dropped} were dropped while the backlog was full" if dropped else "",
            )

    def _attempt_backlog(self, chunk: list[_Job[Any]]) -> list[tuple[Any, BaseException | None]]:
        """The outcomes of the leading jobs of *chunk* that the database answered
        (all of them, or fewer when it refused writes again)."""
        try:
            try:
                outcomes = self._attempt(chunk)
            except _RetryIsolated:
                outcomes = self._attempt(chunk, savepoints=True)
        except _GroupFailed as failure:
            if failure.database_wide or failure.at_begin:
                self._note_failure(failure)
                return []  # still refused: keep them all, in order
        else:
            return outcomes
        # One op broke the whole transaction (not the database): one at a time.
        outcomes = []
        for job in chunk:
            try:
                outcomes.extend(self._attempt([job]))
            except _GroupFailed as single:
                if single.database_wide or single.at_begin:
                    self._note_failure(single)
                    break
                outcomes.append((None, single.cause))
        return outcomes

    @staticmethod
    def _settle(job: _Job[Any], stored: bool) -> None:
        if job.on_settled is None:
            return
        callback, job.on_settled = job.on_settled, None
        try:
            callback(stored)
        except Exception:
            log.exception("a bookkeeping callback failed")

    @staticmethod
    def _finish(job: _Job[Any], result: Any, exc: BaseException | None) -> None:
        if job.finished:  # exactly once, whatever path the job took
            return
        job.finished = True
        if job.on_done is not None:
            try:
                job.on_done(result, exc)
            except Exception:
                log.exception("a store callback failed")
        if exc is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(exc)
