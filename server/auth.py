# server/auth.py: passwords, login throttling and resume tokens.
#
# Rules this module keeps:
# 1. Passwords are hashed with scrypt; the cost parameters are stored inside
#    each hash, so raising the configured cost never breaks existing accounts
#    and tests can run cheap while the default stays strong.
# 2. A failed-login throttle is consulted BEFORE any hashing: a guesser must
#    not be able to make the server burn CPU and memory on scrypt at will.
# 3. Resume tokens are random; only their SHA-256 is ever stored.
# 4. At most `max_concurrent` scrypt computations run at once (each takes
#    128 MiB at the default cost), so twenty simultaneous logins cannot
#    exhaust memory.

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

_SCHEME = "scrypt"


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
        dklen=32,
    )


class PasswordHasher:
    """scrypt hashing with a bound on concurrent computations.

    Hashes look like `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`.
    """

    def __init__(self, n: int = 2**17, r: int = 8, p: int = 1, max_concurrent: int = 2) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError("scrypt n must be a power of two")
        self.n, self.r, self.p = n, r, p
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def hash(self, password: str) -> str:
        """A new salted hash of *password* at the configured cost."""
        salt = secrets.token_bytes(16)
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
    """Counts failed logins per key (nick, address) in a sliding window.

    `allowed(key)` is checked before hashing; `failed(key)` records a failure;
    `succeeded(key)` clears the key. Thread-safe; memory is bounded by pruning
    stale keys whenever the table grows past `max_keys`.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        return stamps

    def allowed(self, key: tuple[str, str]) -> bool:
        """False while *key* has reached the failure limit within the window."""
        with self._lock:
            return len(self._recent(key, self._clock())) < self._max

    def retry_after(self, key: tuple[str, str]) -> float:
        """Seconds until *key* may try again (0 if allowed now)."""
        with self._lock:
            now = self._clock()
            stamps = self._recent(key, now)
            if len(stamps) < self._max:
                return 0.0
            return max(0.0, stamps[0] + self._window - now)

    def failed(self, key: tuple[str, str]) -> None:
        """Record one failed attempt for *key*."""
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)
            if len(self._failures) > self._max_keys:
                for k in [
                    k for k, v in self._failures.items() if not v or v[-1] <= now - self._window
                ]:
                    del self._failures[k]

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of *key* after a successful login."""
        with self._lock:
            self._failures.pop(key, None)


def new_token() -> tuple[str, str]:
    """A fresh resume token and the SHA-256 hex digest that is stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """The stored form of a resume token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
