"""The presence grace period's clock.

When a user's last connection ends, the hub keeps them listed as online
(lingering) and hands out a token; this module calls back with that token
once the grace has passed, and the caller then asks the hub whether the user
is still gone (Hub.expire) before telling the rooms. A reconnect within the
grace revives the lingering user in the hub, so the callback finds nothing
to do: no `left`, no `joined`, no noise.

One thread and a heap of deadlines serve every lingering user (a server
restart makes hundreds at once); the callback runs on that thread and must
not block for long.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("parley.presence")

Expired = Callable[[int, int], None]


class GraceTimers:
    """Calls `expired(user_id, token)` once each scheduled deadline has passed."""

    def __init__(self, expired: Expired, clock: Callable[[], float] = time.monotonic) -> None:
        self._expired = expired
        self._clock = clock
        self._heap: list[tuple[float, int, int]] = []
        self._cond = threading.Condition()
        self._stopped = False
        #: Deadlines handled so far (their callbacks have returned).
        self.fired = 0
        self._thread = threading.Thread(target=self._run, name="presence-grace", daemon=True)

    def start(self) -> None:
        """Start the timer thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the timer thread; deadlines not yet reached are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def schedule(self, user_id: int, token: int, delay: float) -> None:
        """Call back for (*user_id*, *token*) in *delay* seconds."""
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), user_id, token))
            self._cond.notify()

    def pending(self) -> int:
        """How many deadlines wait (for tests and the log)."""
        with self._cond:
            return len(self._heap)

    def wait_fired(self, count: int, timeout: float) -> bool:
        """Wait until *count* deadlines have been handled; False if *timeout* passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.fired >= count, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    timeout = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, user_id, token = heapq.heappop(self._heap)
            try:
                self._expired(user_id, token)
            except Exception:  # one failed callback must not stop the clock
                log.exception("presence grace callback for user %d failed", user_id)
            with self._cond:
                self.fired += 1
                self._cond.notify_all()
