"""WorkerPool, a small fixed set of threads for handler work
that may block (password hashing, SQL reads, waiting for a commit), so that
no I/O loop ever waits on it.

Rules this module keeps:
1. The pool is bounded: `threads` workers, an unbounded queue of jobs. Each
   connection has at most one job in flight (Connection.begin_job/end_job),
   so the queue is bounded by the number of connections.
2. A job that raises is logged and forgotten; the worker lives on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("parley.workers")

Job = Callable[[], None]
_STOP = object()


class WorkerPool:
    """`threads` worker threads running submitted jobs in submission order per worker."""

    def __init__(self, name: str, threads: int) -> None:
        if threads < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.name = name
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        self._started = False

    def start(self) -> None:
        """Start the worker threads."""
        self._started = True
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> None:
        """Run *job* on a worker. Never blocks."""
        self._jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        """Let queued jobs finish, then stop the workers (bounded by *timeout* each)."""
        if not self._started:
            return
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                job()  # type: ignore[operator]
            except Exception:
                log.exception("a %s job failed", self.name)
