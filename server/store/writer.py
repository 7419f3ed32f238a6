# server/store/writer.py: Store, the owner of the database connections: one
# writer thread that group-commits every write, and a pool of readers.
#
# Why one writer: SQLite allows one writer at a time anyway, and a commit under
# synchronous=FULL costs an fsync; taking every pending write into one
# transaction (group commit) gives ~30x the single-row rate. Each operation
# runs in its own SAVEPOINT, so a conflict (nick taken) fails that operation
# alone. A database error (disk full) may abort the whole transaction, so the
# group is then rolled back and re-run one operation per transaction: each
# caller learns the truth about its own write. Callbacks run after COMMIT, in
# submission order: nothing is acked or delivered before it is durable.

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from .engine import database_path, make_engine
from .errors import StoreConflict, StoreError

log = logging.getLogger("parley.store")

Op = Callable[[Session], Any]
Done = Callable[[Any, BaseException | None], None]


@dataclass(slots=True)
class _Job:
    op: Op
    on_done: Done | None
    future: Future[Any] = field(default_factory=Future)


_STOP = object()


class _GroupFailed(Exception):
    """A database error inside a group: roll back and re-run its jobs one by one."""


def _store_error(exc: BaseException) -> StoreError:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return StoreError(f"database error: {orig}")


class Store:
    """The database: `submit()` writes through the writer thread, `read()` reads."""

    def __init__(self, url: str, *, group_max: int = 512) -> None:
        self.url = url
        self.group_max = group_max
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer_engine: Engine | None = None
        self._reader_engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @property
    def database_path(self) -> Path | None:
        """The SQLite file (None for a non-file database)."""
        return database_path(self.url)

    def start(self) -> None:
        """Open the engines and start the writer thread."""
        self._writer_engine = make_engine(self.url, writer=True)
        self._reader_engine = make_engine(self.url, writer=False)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Finish every submitted write, then stop the writer and close connections."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        for engine in (self._writer_engine, self._reader_engine):
            if engine is not None:
                engine.dispose()

    def submit(self, op: Op, on_done: Done | None = None) -> Future[Any]:
        """Run `op(session)` on the writer thread in a group-committed transaction.

        After COMMIT (or failure), `on_done(result, exc)` runs on the writer
        thread, then the returned future resolves. Errors: StoreConflict (the
        caller's) or StoreError (the database's); nothing of a failed op stays.
        """
        job = _Job(op, on_done)
        with self._lock:
            if self._closed.is_set() or self._thread is None:
                exc = StoreError("the store is closed")
                self._finish(job, None, exc)
                return job.future
            self._queue.put(job)
        return job.future

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
            first = self._queue.get()
            if first is _STOP:
                break
            jobs: list[_Job] = [first]  # type: ignore[list-item]
            while len(jobs) < self.group_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                jobs.append(item)  # type: ignore[arg-type]
            try:
                self._commit_group(jobs)
            except Exception:  # never let the writer die: that would hang every caller
                log.exception("writer failed on a group of %d", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        self._finish(job, None, StoreError("internal store error"))

    def _commit_group(self, jobs: list[_Job]) -> None:
        assert self._writer_engine is not None
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with Session(self._writer_engine, expire_on_commit=False) as s, s.begin():
                for job in jobs:
                    try:
                        with s.begin_nested():
                            outcomes.append((job.op(s), None))
                    except StoreConflict as exc:
                        outcomes.append((None, exc))
                    except IntegrityError as exc:
                        if len(jobs) > 1:
                            raise _GroupFailed from exc
                        outcomes.append(
                            (None, StoreConflict(f"conflicts with stored data: {exc.orig}"))
                        )
                    except SQLAlchemyError as exc:
                        raise _GroupFailed from exc
        except (_GroupFailed, SQLAlchemyError) as exc:
            cause = exc.__cause__ if isinstance(exc, _GroupFailed) else exc
            if len(jobs) > 1:
                log.warning("group of %d failed (%s); retrying one by one", len(jobs), cause)
                for job in jobs:
                    self._commit_group([job])
                return
            log.error("write failed: %s", cause)
            self._finish(jobs[0], None, _store_error(cause or exc))
            return
        for job, (result, exc) in zip(jobs, outcomes, strict=True):
            self._finish(job, result, exc)

    @staticmethod
    def _finish(job: _Job, result: Any, exc: BaseException | None) -> None:
        if job.on_done is not None:
            try:
                job.on_done(result, exc)
            except Exception:
                log.exception("a store callback failed")
        if exc is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(exc)
