"""IOLoop, one thread that serves many connections through one
selector.

Rules this module keeps:
1. A connection belongs to exactly one loop from the end of its handshake to
   its close, and only that loop's thread touches its TLS socket (DESIGN.md
   section 3: Python's ssl has no per-socket lock).
2. Other threads never do I/O: they append bytes to a connection's queue and
   call notify(conn). notify() wakes the loop at most once until the loop has
   run again (the `_wake_pending` flag), so a committed group of messages for
   a thousand connections costs one wake-up per loop, not one per delivery.
   notify() takes no lock: it appends to a deque (atomic) that the loop
   empties, because the writer calls it once per connection per committed
   group and a lock shared with the loop made it wait for the loop's turn.
3. A loop never blocks on anything but its selector: no SQL, no password
   hashing, no blocking socket call. Handlers that need those run on a worker
   pool (server/workers.py). One exception, on SQLite: the room messages a
   turn read are committed at the end of its reads on the loop itself, when
   the store's writer thread is idle (the read scope, Store.gathering). It
   saves two thread hand-offs per message, and a commit slower than
   INLINE_SLOW sends the next ones back to the writer thread for a while.
4. A failure in one connection's code closes that connection, never the loop.
5. post(step) runs *step* on the loop thread at the start of its next turn,
   in the order steps were posted: the hub hands a committed group over that
   way (one post per loop instead of one queue append and notify per member,
   done by the writer while the loop waits for the GIL to write).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from threading import get_ident
from typing import TYPE_CHECKING

from .errors import ConnectionClosed

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("parley.loop")

#: Output queued lazily (presence deltas) waits at most this long for a write.
LAZY_FLUSH = 0.05
#: How often every connection's timers (login deadline, idle ping and close,
#: close-flush deadline) are checked. Finer than any of those deadlines needs.
TIMER_TICK = 0.25


class Waker:
    """A socket pair a selector waits on, so another thread can wake it.

    wake() never blocks: when a byte is already waiting, the send fails
    harmlessly. The owner calls drain() when the selector reports it.
    """

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        sel.register(self._r, selectors.EVENT_READ, None)  # data None marks the waker

    def wake(self) -> None:
        """Make the selector return (from any thread)."""
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up byte is already waiting, or we are shutting down

    def drain(self) -> None:
        """Read the wake-up bytes (on the selector's thread)."""
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Close both ends."""
        for sock in (self._r, self._w):
            try:
                sock.close()
            except OSError:
                pass


class IOLoop:
    """One I/O thread, its selector, its wake-up socket pair and its connections."""

    def __init__(
        self,
        name: str,
        on_lazy_flush: Callable[[], None] | None = None,
        read_scope: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        """*on_lazy_flush* runs on this loop at a lazy flush that request_lazy_flush() asked for
        (the hub's gathered presence deltas). *read_scope* is entered around each
        turn's reads (the store's gathering(): the turn's room messages commit
        as one group at its end)."""
        self.name = name
        self._on_lazy_flush = on_lazy_flush
        self._read_scope = read_scope or nullcontext
        self._hook_due = False
        self._sel = selectors.DefaultSelector()
        self._waker = Waker(self._sel)
        self._lock = threading.Lock()
        self._adopted: list[Connection] = []
        # Notified from other threads: appended without a lock, emptied by the loop.
        self._inbox: deque[Connection] = deque()
        # Steps to run on the loop thread (post()), appended without a lock.
        self._posted: deque[Callable[[], None]] = deque()
        # Loop thread only: True while posted steps run, and when they began.
        self._writing_through = False
        self._posted_at = 0.0
        self._dirty: set[Connection] = set()  # notified on the loop thread itself
        self._lazy: set[Connection] = set()  # output queued that can wait LAZY_FLUSH
        self._wake_pending = False
        self._stopping = False
        # Owned by the loop thread.
        self._conns: dict[Connection, int] = {}  # connection -> registered event mask
        self._again: set[Connection] = set()  # must be served next turn without an event
        self._paused: set[Connection] = set()  # flood-paused: read again at paused_until
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # The loop thread's identity once it runs (Thread.ident is a property:
        # handing_over() asks once per member of every hand-over).
        self._ident: int | None = None

    # --- from any thread ----------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop; connections still on it are closed without a flush."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def adopt(self, conn: Connection) -> None:
        """Take over a connection whose TLS handshake is done."""
        with self._lock:
            self._adopted.append(conn)
        self._wake_once()

    def notify(self, conn: Connection) -> None:
        """*conn* has new output or a request: serve it soon. Never blocks, takes no lock."""
        if get_ident() == self._ident:
            if self._writing_through and conn in self._conns:
                # A posted hand-over: write now, so the first member's bytes go
                # out before the last member's are queued.
                self.serve(conn)
                return
            # On the loop thread: the loop looks at _dirty before it sleeps.
            self._dirty.add(conn)
            return
        self._inbox.append(conn)
        self._wake_once()

    def post(self, step: Callable[[], None]) -> None:
        """Run *step* on the loop thread at the start of its next turn, after the
        steps posted before it. Never blocks, takes no lock. A step that raises
        is logged; the steps after it still run."""
        self._posted.append(step)
        if get_ident() != self._ident:
            self._wake_once()

    def handing_over(self) -> bool:
        """True on this loop's thread while it runs the last posted step waiting (a
        hand-over that writes as it goes)."""
        return self._writing_through and get_ident() == self._ident

    def serve(self, conn: Connection) -> None:
        """Serve *conn* now (write what it has queued), on this loop's thread."""
        self._guard(conn, conn.service, self._posted_at)

    def drop(self, conn: Connection, reason: str) -> None:
        """Close *conn* at once (its socket broke), on this loop's thread."""
        self._finish(conn, reason)

    def _wake_once(self) -> None:
        # After the append: the loop clears the flag before it empties the
        # inbox and takes the adopted, so an item is either seen by the turn
        # that cleared the flag or wakes the next one. A race lets two threads
        # both wake; a spare wake-up byte is harmless.
        if not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def notify_lazy(self, conn: Connection) -> None:
        """*conn* has output that may wait up to LAZY_FLUSH. Never blocks, never wakes."""
        with self._lock:
            self._lazy.add(conn)

    def request_lazy_flush(self) -> None:
        """Run on_lazy_flush at the next lazy flush. Never blocks, never wakes."""
        with self._lock:
            self._hook_due = True

    @property
    def thread_ident(self) -> int | None:
        """The loop thread's identity (to tell whether code runs on it)."""
        return self._thread.ident

    def connection_count(self) -> int:
        """Connections on this loop (approximate: read without the loop's help)."""
        return len(self._conns)

    def _wake(self) -> None:
        self._waker.wake()

    # --- the loop thread ------------------------------------------------------------

    def _run(self) -> None:
        self._ident = get_ident()
        next_tick = time.monotonic() + TIMER_TICK
        next_lazy = time.monotonic() + LAZY_FLUSH
        try:
            while True:
                now = time.monotonic()
                with self._lock:
                    queued = bool(self._dirty or self._inbox or self._adopted or self._posted)
                    lazy = bool(self._lazy) or self._hook_due
                if self._again or queued:
                    timeout = 0.0
                else:
                    soonest = min(next_tick, self._next_pause(), next_lazy if lazy else next_tick)
                    timeout = max(0.0, soonest - now)
                events = self._sel.select(timeout)
                readable: set[Connection] = set()
                serve: set[Connection] = set()
                for key, mask in events:
                    conn = key.data
                    if conn is None:
                        self._waker.drain()
                        continue
                    if mask & selectors.EVENT_READ:
                        readable.add(conn)
                    serve.add(conn)
                self._wake_pending = False  # before the inbox and the adopted are read
                dirty, self._dirty = self._dirty, set()
                inbox = self._inbox
                while inbox:
                    dirty.add(inbox.popleft())
                posted = self._posted
                if posted:
                    self._posted_at = time.monotonic()
                    try:
                        while posted:
                            step = posted.popleft()
                            # Write through only in the last step waiting: the
                            # ones before it queue, and the last one's writes
                            # take everything queued for a connection at once.
                            self._writing_through = not posted
                            try:
                                step()
                            except Exception:
                                log.exception("a step posted to %s failed", self.name)
                    finally:
                        self._writing_through = False
                    # What they queued for our own connections (on this thread: _dirty).
                    dirty |= self._dirty
                    self._dirty = set()
                with self._lock:
                    stopping = self._stopping
                    adopted, self._adopted = self._adopted, []
                    flush_lazy = time.monotonic() >= next_lazy
                    hook = False
                    if flush_lazy:
                        dirty |= self._lazy
                        self._lazy = set()
                        hook, self._hook_due = self._hook_due, False
                if stopping:
                    break
                if hook and self._on_lazy_flush is not None:
                    try:
                        self._on_lazy_flush()
                    except Exception:
                        log.exception("the lazy flush of %s failed", self.name)
                    # What it queued for our own connections (on this thread: _dirty).
                    dirty |= self._dirty
                    self._dirty = set()
                for conn in adopted:
                    self._conns[conn] = 0
                    conn.attach_loop(self)
                    readable.add(conn)
                    serve.add(conn)
                if self._again:
                    readable |= self._again
                    serve |= self._again
                    self._again = set()
                serve |= dirty
                now = time.monotonic()
                if flush_lazy:
                    next_lazy = now + LAZY_FLUSH
                for conn in [c for c in self._paused if c.paused_until <= now]:
                    self._paused.discard(conn)
                    readable.add(conn)
                    serve.add(conn)
                if readable:
                    with self._read_scope():
                        for conn in readable:
                            if conn in self._conns:
                                self._guard(conn, conn.on_readable, now)
                for conn in serve:
                    if conn in self._conns:
                        self._guard(conn, conn.service, now)
                if now >= next_tick:
                    next_tick = now + TIMER_TICK
                    # Whatever a timer queues (a ping, a closing error) notifies
                    # the loop, which serves the connection on the next turn.
                    for conn in list(self._conns):
                        self._guard(conn, conn.check_timers, now)
        except Exception:  # a bug in the loop itself: log it, close what it held
            log.exception("I/O loop %s failed", self.name)
        finally:
            for conn in list(self._conns):
                self._finish(conn, "server shutdown")
            self._sel.close()
            self._waker.close()

    def _guard(self, conn: Connection, step: object, now: float) -> None:
        # Runs for every connection the loop serves: the import is at the top
        # (here it cost as much as the rest of the guard).
        try:
            step(now)  # type: ignore[operator]
        except ConnectionClosed as exc:
            self._finish(conn, exc.reason)
            return
        except Exception:
            log.exception("connection %s failed", conn.peer)
            self._finish(conn, "internal server error")
            return
        self._update_interest(conn)

    def _update_interest(self, conn: Connection) -> None:
        if conn.paused_until:
            self._paused.add(conn)
        want = conn.interest()
        have = self._conns.get(conn)
        if have is None or want == have:
            if conn.wants_another_turn():
                self._again.add(conn)
            return
        sock = conn.fileno_obj()
        try:
            if have == 0:
                self._sel.register(sock, want, conn)
            elif want == 0:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, want, conn)
        except (KeyError, ValueError, OSError):
            self._finish(conn, "network error: socket closed")
            return
        self._conns[conn] = want
        if conn.wants_another_turn():
            self._again.add(conn)

    def _finish(self, conn: Connection, reason: str) -> None:
        mask = self._conns.pop(conn, None)
        self._again.discard(conn)
        self._paused.discard(conn)
        if mask:
            try:
                self._sel.unregister(conn.fileno_obj())
            except (KeyError, ValueError, OSError):
                pass
        conn.finish(reason)

    def _next_pause(self) -> float:
        # The earliest time a flood-paused connection may read again.
        soonest = float("inf")
        for conn in self._paused:
            until = conn.paused_until
            if until and until < soonest:
                soonest = until
        return soonest
