"""Per-connection flood control, a token bucket.

Like Ergo's fakelag, an over-eager client is first *delayed* (its
connection stops reading until tokens refill), and only a client that
piles up a large backlog anyway is disconnected. Rates come from
ServerConfig; the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Most keys (users, addresses) a rate table tracks before it prunes or resets
#: (LoginThrottle, RateWindow, the join buckets): memory stays bounded when a
#: flood comes from many addresses, and a reset key starts with a full bucket.
MAX_TRACKED_KEYS = 10_000


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second. One frame costs one token."""

    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def take(self) -> bool:
        """Spend one token if there is one; False means the caller must wait."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self._rate
