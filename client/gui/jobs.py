"""Blocking work (connect, rejoin, close, the certificate
probe) on short-lived worker threads, with the result handed back to the Tk
thread.

Rules this module keeps:
1. A worker thread runs only the work function and puts (job, result, error)
   on a queue; the callback that uses the result stays on the Tk thread and
   runs from finish(), which the app's pump calls.
2. The work function must not reference any Tk object, and the worker never
   gets the callback: so the last reference to a widget or window can never
   be dropped on a worker thread. (Tcl aborts the whole process when an
   interpreter is freed by a thread other than its own.)
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("parley.gui")

#: Called on the Tk thread with (result, None) or (None, exception).
Done = Callable[[Any, BaseException | None], None]


class Jobs:
    """Background jobs whose callbacks run on the thread that calls finish()."""

    def __init__(self) -> None:
        self._results: queue.Queue[tuple[int, Any, BaseException | None]] = queue.Queue()
        self._callbacks: dict[int, Done] = {}
        self._seq = 0

    def start(self, name: str, work: Callable[[], Any], done: Done) -> None:
        """Run *work* on a new daemon thread; *done* runs later, from finish()."""
        self._seq += 1
        self._callbacks[self._seq] = done
        threading.Thread(
            target=_run,
            args=(self._seq, work, self._results),
            name=f"parley-gui-{name}",
            daemon=True,
        ).start()

    def finish(self, wait: float = 0.0) -> int:
        """Run the callbacks of the jobs that ended; returns how many ran. With
        *wait* (seconds), first wait that long at most for one to end (scripts
        and tests; the app's pump never waits)."""
        ran = 0
        block = wait > 0
        while True:
            try:
                if block:
                    block = False
                    job, result, error = self._results.get(timeout=wait)
                else:
                    job, result, error = self._results.get_nowait()
            except queue.Empty:
                return ran
            done = self._callbacks.pop(job, None)
            if done is None:
                continue
            ran += 1
            try:
                done(result, error)
            except Exception:
                log.exception("a background result could not be applied")

    @property
    def pending(self) -> int:
        """Jobs started whose callbacks have not run yet."""
        return len(self._callbacks)


def _run(
    job: int, work: Callable[[], Any], results: queue.Queue[tuple[int, Any, BaseException | None]]
) -> None:
    try:
        results.put((job, work(), None))
    except BaseException as exc:
        results.put((job, None, exc))
