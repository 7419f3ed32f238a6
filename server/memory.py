"""Give the heap that a burst of connections freed back to the operating system.

A storm of TLS handshakes and logins allocates and frees many short-lived
buffers; glibc's malloc keeps the freed memory in its arenas, so the server's
resident size stays at the storm's peak (measured: 1000 logins left 94 MB
resident, 75 MB after a collection and a trim). `HeapTrimmer` watches the
connection counts from the maintenance thread and, once a burst is over (a
couple of quiet looks in a row), runs the cyclic collector, freezes what
survives (settle_heap: the collector's own full passes then skip it) and calls
glibc's `malloc_trim(0)`. Elsewhere (macOS, Windows, musl) it collects and
freezes only. At start, `limit_malloc_arenas` caps glibc's per-thread arenas
and `space_young_collections` makes the collector's young passes rarer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import sys
from collections.abc import Callable

log = logging.getLogger("parley.memory")

#: Connections opened, closed or logged in since the last trim that make a
#: trim worth it: a classroom logging in at once is far more, one reconnect is not.
TRIM_AFTER_CHANGES = 64

#: How often the maintenance thread looks (seconds), and how many looks in a
#: row must see nothing change before the burst counts as over.
TRIM_CHECK_INTERVAL = 0.5
QUIET_LOOKS = 2

#: Every how many trims one walks all objects (settle_heap(full=True)); the
#: others walk only what is new since the last. Cyclic garbage among frozen
#: objects waits at most this many bursts.
FULL_SETTLE_EVERY = 8

#: Quiet looks after a burst's trim before one more (8 looks: 4 s): measured
#: after 1000 logins, a trim at once returned 2 MB and one 4 s later 15 MB more
#: (what the burst queued for its clients is freed only once sent and settled).
FOLLOW_UP_LOOKS = 8

#: Looks a due trim waits while chat traffic flows (60 looks: 30 s), then it
#: runs anyway. The first trim after a burst collects everything the burst
#: made, with the GIL held (26-43 ms after 200 logins, measured): traffic
#: that arrives then waits for it, so a lull is the better moment, if one
#: comes soon.
TRAFFIC_DEFER_LOOKS = 60


#: glibc malloc arenas the server may use (M_ARENA_MAX). Left alone, glibc gives
#: each thread that allocates its own arena, up to eight per core, and each keeps
#: the free memory of its thread's bursts (the handshake thread's TLS state, the
#: login workers' reads). Measured at 1000 idle clients: 86.4 MB with glibc's
#: default, 84.3 MB with 2, 83.4 MB with 1; logins no slower. Two keep the I/O
#: loop and the writer from waiting on one arena's lock.
MALLOC_ARENAS = 2

#: mallopt's parameter number for M_ARENA_MAX (glibc's malloc.h).
_M_ARENA_MAX = -8


#: Allocations between two collections of the youngest generation (CPython's
#: default is 700). At 200 clients and 20 msgs/s a message's fan-out allocates
#: enough to trigger several, and every tenth is a pass over the middle
#: generation too (1.7 ms on average, up to 3.5 ms, measured), which the
#: message then waits for. At 10,000, in six alternations: p99 6.4-6.9 ms against
#: 6.5-16 ms (max 7.9-10.4 against 8.9-29 ms), the same CPU and resident size;
#: no change at 1000 clients and 100 msgs/s.
GC_YOUNG_THRESHOLD = 10_000


def space_young_collections(threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Raise the collector's first threshold to *threshold* (never lower it); the
    older generations keep their own."""
    young, middle, old = gc.get_threshold()
    if young < threshold:
        gc.set_threshold(threshold, middle, old)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads started from now on (call it
    before they start). True if the allocator took it; False elsewhere (macOS,
    Windows, musl), where there is nothing to cap."""
    libc = _libc()
    if libc is None:
        return False
    try:
        mallopt = libc.mallopt  # glibc and musl both have it; musl ignores the parameter
    except AttributeError:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library on Linux (None elsewhere, or if it cannot be loaded).

    Looked up once per process: find_library runs `ldconfig -p` in a child
    process, and every server start asks twice (the arena cap, the trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    if libc is None:
        return None
    try:
        trim = libc.malloc_trim  # glibc only; musl has none
    except AttributeError:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Decides, one look at a time, when a burst of connections is over, and trims then."""

    def __init__(
        self,
        threshold: int = TRIM_AFTER_CHANGES,
        quiet_looks: int = QUIET_LOOKS,
        trim: Callable[[int], int] | None = None,
        traffic_defer_looks: int = TRAFFIC_DEFER_LOOKS,
    ) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._threshold = threshold
        self._quiet_looks = quiet_looks
        self._last: tuple[int, int] | None = None
        self._changes = 0
        self._quiet = 0
        self._follow_up = 0  # quiet looks until the burst's second trim; 0: none due
        self._settles = 0  # trims so far, to make every FULL_SETTLE_EVERY-th one full
        self._traffic_defer = traffic_defer_looks
        self._deferred = 0  # looks a due trim has waited for traffic since the last trim
        self.trims = 0

    @property
    def available(self) -> bool:
        """Whether this platform's allocator can be trimmed."""
        return self._trim is not None

    def look(self, connections: int, logged_in: int, busy: bool, traffic: bool = False) -> bool:
        """One look: the open and logged-in connection counts, whether handshakes
        are in flight, and whether chat traffic flowed since the last look (a
        due trim waits for a lull, at most `traffic_defer_looks` looks).
        Returns True if it trimmed."""
        seen = (connections, logged_in)
        if self._last is not None:
            changed = abs(seen[0] - self._last[0]) + abs(seen[1] - self._last[1])
            self._changes += changed
            calm = changed == 0 and not busy
            due = self._follow_up > 0 or self._changes >= self._threshold
            if calm and traffic and due and self._deferred < self._traffic_defer:
                self._deferred += 1
                calm = False
            self._quiet = self._quiet + 1 if calm else 0
        self._last = seen
        if self._follow_up and self._quiet:
            self._follow_up -= 1
            if not self._follow_up:
                return self.trim()
        if self._changes < self._threshold or self._quiet < self._quiet_looks:
            return False
        self._changes = 0
        self._follow_up = FOLLOW_UP_LOOKS
        return self.trim()

    def trim(self) -> bool:
        """Collect and freeze (settle_heap), then give free heap pages back where the
        allocator can. True if pages were given back."""
        before = _rss_mb()
        # The burst's cyclic garbage (sockets, frames, sessions) is freed only by
        # the collector: trimming before it runs returns almost nothing.
        # Not the first (at start-up nothing is frozen yet, so it walks everything
        # anyway; a process that froze its own heap before starting a server, as
        # the test suite does, keeps it frozen).
        self._settles += 1
        self._deferred = 0
        settle_heap(full=self._settles % FULL_SETTLE_EVERY == 0)
        if self._trim is None:
            return False
        self._trim(0)
        self.trims += 1
        log.info("heap trimmed after a burst of connections: %.0f -> %.0f MB", before, _rss_mb())
        return True


def settle_heap(*, full: bool) -> None:
    """Collect, then gc.freeze() everything that survived.

    A collection holds the GIL throughout, so every thread waits for it: over
    all the objects (the modules, SQLAlchemy's mappers and caches, a thousand
    connections: hundreds of thousands) one took up to 92 ms at load b, the
    worst deliveries of the run. Frozen objects are left out of every later
    collection, so a settle after a burst walks only what the burst made.
    *full* unfreezes first and walks everything, so what was frozen and has
    become cyclic garbage since (a connection that closed) is freed then: the
    trimmer does that every FULL_SETTLE_EVERY trims.
    """
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def _rss_mb() -> float:
    """This process's resident size in MB (Linux), NaN elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * _PAGE / 2**20


_PAGE = 4096
try:
    import os as _os

    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    pass
