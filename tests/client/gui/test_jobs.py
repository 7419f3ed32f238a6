"""Blocking work on worker threads, callbacks on the caller's thread."""

from __future__ import annotations

import threading
import time

from parley_chat.client.gui.jobs import Jobs


def finish_all(jobs: Jobs, timeout: float = 5.0) -> None:
    """Run callbacks as their jobs end (each wait is for one to end), until none is left."""
    deadline = time.monotonic() + timeout
    while jobs.pending:
        left = deadline - time.monotonic()
        assert left > 0, "jobs did not finish in time"
        jobs.finish(wait=left)


def test_results_and_errors_come_back_on_the_thread_that_calls_finish():
    jobs = Jobs()
    seen: list[tuple[object, object, str]] = []
    workers: list[str] = []

    def work() -> int:
        workers.append(threading.current_thread().name)
        return 42

    def fail() -> None:
        raise OSError("boom")

    jobs.start("answer", work, lambda r, e: seen.append((r, e, threading.current_thread().name)))
    jobs.start("broken", fail, lambda r, e: seen.append((r, e, threading.current_thread().name)))
    finish_all(jobs)
    here = threading.current_thread().name
    assert workers == ["parley-gui-answer"]
    results = sorted(seen, key=lambda item: item[0] is None)
    assert results[0] == (42, None, here)
    assert results[1][0] is None and isinstance(results[1][1], OSError) and results[1][2] == here


def test_a_failing_callback_does_not_stop_the_others():
    jobs = Jobs()
    ran: list[int] = []

    def bad(_r: object, _e: object) -> None:
        raise RuntimeError("bug in a callback")

    jobs.start("a", lambda: 1, bad)
    jobs.start("b", lambda: 2, lambda r, _e: ran.append(r))
    finish_all(jobs)
    assert ran == [2]
