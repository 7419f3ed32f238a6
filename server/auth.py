"""Passwords, login throttling and resume tokens.

Rules this module keeps:
1. Passwords are hashed with scrypt; the cost parameters are stored inside
   each hash, so raising the configured cost never breaks existing accounts
   and tests can run cheap while the default stays strong.
2. A failed-login throttle is consulted BEFORE any hashing: a guesser must
   not be able to make the server burn CPU and memory on scrypt at will.
3. Resume tokens are random; only their SHA-256 is ever stored.
4. At most `max_concurrent` scrypt computations run at once (each takes
   128 MiB at the default cost), so twenty simultaneous logins cannot
   exhaust memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from .config import ServerConfig
from .flood import MAX_TRACKED_KEYS

_SCHEME = "scrypt"
#: A password hash: 32 bytes of scrypt output over a 16-byte random salt. A
#: stored hash records n, r and p but not its length, and verify() derives
#: KEY_BYTES again: changing it would fail every stored password.
KEY_BYTES = 32
SALT_BYTES = 16
#: The server's defaults, the one place the scrypt cost is set.
_DEFAULTS = ServerConfig()

#: A resume token carries 32 random bytes (43 URL-safe characters); only its
#: SHA-256 is stored.
TOKEN_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem must cover 128 * n * r bytes plus slack, or hashlib refuses.
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + 1024 * 1024,
        dklen=KEY_BYTES,
    )


class PasswordHasher:
    """scrypt hashing with a bound on concurrent computations.

    Hashes look like `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`.
    """

    def __init__(
        self,
        n: int = _DEFAULTS.scrypt_n,
        r: int = _DEFAULTS.scrypt_r,
        p: int = _DEFAULTS.scrypt_p,
        max_concurrent: int = _DEFAULTS.max_concurrent_hashes,
    ) -> None:
        """The cost (*n*, *r*, *p*) of new hashes, and how many may run at once; the
        defaults are the server's (ServerConfig, the one place they are set)."""
        if n < 2 or n & (n - 1):
            raise ValueError("scrypt n must be a power of two")
        self.n, self.r, self.p = n, r, p
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def hash(self, password: str) -> str:
        """A new salted hash of *password* at the configured cost."""
        salt = secrets.token_bytes(SALT_BYTES)
        with self._slots:
            digest = _scrypt(password, salt, self.n, self.r, self.p)
        return f"{_SCHEME}${self.n}${self.r}${self.p}${_b64(salt)}${_b64(digest)}"

    def verify(self, password: str, stored: str | None) -> bool:
        """True if *password* matches *stored* (constant-time compare; False for malformed)."""
        if not stored:
            return False
        try:
            scheme, n, r, p, salt, digest = stored.split("$")
            if scheme != _SCHEME:
                return False
            salt_b, digest_b = base64.b64decode(salt), base64.b64decode(digest)
            with self._slots:
                actual = _scrypt(password, salt_b, int(n), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, digest_b)


class LoginThrottle:
    """Counts failed logins per key in a sliding window, attempts in flight included.

    `begin(key)` is called before hashing and reserves an attempt: it is refused
    while recorded failures plus attempts still being hashed reach the limit,
    so sixteen concurrent guesses cost at most `max_failures` hashes, not
    sixteen. Each reservation ends with `failed(key)` or `succeeded(key)` (or
    `release(key)` when the attempt ended for another reason). Thread-safe;
    memory is bounded by pruning stale keys whenever the table grows past
    `max_keys`.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        return stamps

    def _used(self, key: tuple[str, str], now: float) -> int:
        return len(self._recent(key, now)) + self._in_flight.get(key, 0)

    def allowed(self, key: tuple[str, str]) -> bool:
        """False while *key* has reached the limit (failures plus attempts in flight)."""
        with self._lock:
            return self._used(key, self._clock()) < self._max

    def begin(self, key: tuple[str, str]) -> bool:
        """Reserve one attempt for *key*; False (nothing reserved) when throttled."""
        with self._lock:
            if self._used(key, self._clock()) >= self._max:
                return False
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            return True

    def _end(self, key: tuple[str, str]) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def retry_after(self, key: tuple[str, str]) -> float:
        """Seconds until *key* may try again (0 if allowed now, or once attempts in flight end)."""
        with self._lock:
            now = self._clock()
            stamps = self._recent(key, now)
            if len(stamps) < self._max:
                return 0.0
            return max(0.0, stamps[0] + self._window - now)

    def failed(self, key: tuple[str, str]) -> None:
        """Record one failed attempt for *key* (ending its reservation, if any)."""
        with self._lock:
            now = self._clock()
            self._end(key)
            self._recent(key, now).append(now)
            if len(self._failures) > self._max_keys:
                for k in [
                    k for k, v in self._failures.items() if not v or v[-1] <= now - self._window
                ]:
                    del self._failures[k]

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of *key* after a successful login (ending its reservation)."""
        with self._lock:
            self._end(key)
            self._failures.pop(key, None)

    def release(self, key: tuple[str, str]) -> None:
        """End a reservation that was neither a failure nor a success."""
        with self._lock:
            self._end(key)


class RateWindow:
    """At most `limit` events per key in a sliding `window` (e.g. accounts created per address).

    Thread-safe; stale keys are pruned when the table grows past `max_keys`.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Record one event for *key* if under the limit; False (nothing recorded) if not."""
        with self._lock:
            now = self._clock()
            stamps = self._events.setdefault(key, deque())
            while stamps and stamps[0] <= now - self._window:
                stamps.popleft()
            if len(stamps) >= self._limit:
                return False
            stamps.append(now)
            if len(self._events) > self._max_keys:
                for k in [
                    k for k, v in self._events.items() if not v or v[-1] <= now - self._window
                ]:
                    del self._events[k]
            return True

    def give_back(self, key: str) -> None:
        """Undo the newest event of *key* (the action it counted did not happen)."""
        with self._lock:
            stamps = self._events.get(key)
            if stamps:
                stamps.pop()

    def retry_after(self, key: str) -> float:
        """Seconds until *key* may act again (0 if it may now)."""
        with self._lock:
            now = self._clock()
            stamps = self._events.get(key)
            if not stamps or len(stamps) < self._limit:
                return 0.0
            return max(0.0, stamps[0] + self._window - now)


def new_token() -> tuple[str, str]:
    """A fresh resume token and the SHA-256 hex digest that is stored in its place."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """The stored form of a resume token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
