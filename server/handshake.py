"""Handshaker, the thread that takes fresh TCP sockets
through plaintext detection and the TLS handshake, non-blocking, under one
deadline each, then hands them to an I/O loop.

Rules this module keeps:
1. Never on the accept path and never on an I/O loop: a handshake costs a key
   exchange and a signature (about a millisecond of CPU; OpenSSL releases the
   GIL meanwhile), and a client that never finishes one must not hold anyone
   else up.
2. Non-blocking throughout: a silent or trickling client costs a descriptor
   and a deadline, never a thread. The deadline runs from the TCP accept and
   bounds the whole handshake (reliability.md: slowloris).
3. A client whose first byte is not a TLS handshake record gets one plaintext
   line saying the port speaks TLS only, then a close, without blocking.
4. Only this thread touches a socket until it is handed on (DESIGN.md
   section 3); after `on_ready` it never touches it again.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .connection import Connection
from .loop import Waker

log = logging.getLogger("parley.handshake")

#: Sent in plaintext to a client that does not start a TLS handshake.
PLAINTEXT_REFUSAL = (
    b'{"type":"error","code":"tls-required","message":"this port speaks TLS only: '
    b"connect with a parley client that trusts the server's ca.pem\"}\n"
)
_TLS_HANDSHAKE_RECORD = 0x16
#: After the plaintext refusal, read (and drop) what the client sent for this
#: long before closing: closing with unread bytes makes the kernel send RST,
#: and the client would see "connection reset" instead of our message.
_REFUSAL_LINGER = 0.5
_REFUSAL_READ_LIMIT = 64 * 1024


class _Stage(StrEnum):
    """Where a pending connection is: PEEK -> TLS -> handed on; or PEEK -> REFUSING."""

    PEEK = "peek"
    TLS = "tls"
    REFUSING = "refusing"


@dataclass(eq=False)
class _Pending:
    conn: Connection
    deadline: float
    stage: _Stage = _Stage.PEEK
    sock: socket.socket | ssl.SSLSocket | None = None
    drained: int = 0
    mask: int = field(default=0)


class Handshaker:
    """Drives handshakes; `on_ready(conn)` or `on_failed(conn, reason)` ends each one."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        timeout: float,
        on_ready: Callable[[Connection], None],
        on_failed: Callable[[Connection, str], None],
    ) -> None:
        self._ctx = ctx
        self._timeout = timeout
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._sel = selectors.DefaultSelector()
        self._waker = Waker(self._sel)
        self._lock = threading.Lock()
        self._incoming: list[Connection] = []
        self._stopping = False
        self._pending: set[_Pending] = set()
        self._thread = threading.Thread(target=self._run, name="handshake", daemon=True)

    def start(self) -> None:
        """Start the handshake thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; sockets still in a handshake are closed and reported failed."""
        with self._lock:
            self._stopping = True
        self._wake()
        self._thread.join(timeout)

    def add(self, conn: Connection) -> None:
        """Start the handshake of a freshly accepted connection (any thread)."""
        with self._lock:
            self._incoming.append(conn)
        self._wake()

    def _wake(self) -> None:
        self._waker.wake()

    # --- the handshake thread ---------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                timeout = self._next_timeout()
                for key, _mask in self._sel.select(timeout):
                    item = key.data
                    if item is None:
                        self._waker.drain()
                    else:
                        self._step(item)
                with self._lock:
                    stopping = self._stopping
                    incoming, self._incoming = self._incoming, []
                if stopping:
                    for conn in incoming:
                        self._fail(_Pending(conn, 0.0, sock=conn.raw), "server shutdown")
                    break
                now = time.monotonic()
                for conn in incoming:
                    conn.raw.setblocking(False)
                    item = _Pending(conn, conn.accepted_at + self._timeout, sock=conn.raw)
                    self._pending.add(item)
                    self._step(item)
                for item in [p for p in self._pending if p.deadline <= now]:
                    if item.stage is _Stage.REFUSING:
                        self._fail(item, "plaintext client refused")
                    else:
                        log.info(
                            "%s: no TLS handshake within %.0f s", item.conn.peer, self._timeout
                        )
                        self._fail(item, "TLS handshake timed out")
        except Exception:
            log.exception("the handshake thread failed")
        finally:
            for item in list(self._pending):
                self._fail(item, "server shutdown")
            self._sel.close()
            self._waker.close()

    def _next_timeout(self) -> float:
        if not self._pending:
            return 1.0
        soonest = min(p.deadline for p in self._pending)
        return max(0.0, min(1.0, soonest - time.monotonic()))

    def _step(self, item: _Pending) -> None:
        try:
            if item.stage is _Stage.PEEK:
                self._peek(item)
            if item.stage is _Stage.TLS:
                self._handshake(item)
            elif item.stage is _Stage.REFUSING:
                self._drain_refused(item)
        except OSError as exc:
            self._fail(item, f"network error during handshake: {exc}")

    def _peek(self, item: _Pending) -> None:
        raw = item.conn.raw
        try:
            first = raw.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            self._want(item, selectors.EVENT_READ)
            return
        if not first:
            self._fail(item, "closed before the TLS handshake")
            return
        if first[0] != _TLS_HANDSHAKE_RECORD:
            log.info("%s: plaintext client on the TLS port, refused", item.conn.peer)
            try:
                # small: fits in any empty socket buffer. Another line protocol
                # (the IRC listener) says it in its own words.
                raw.send(getattr(item.conn, "plaintext_refusal", PLAINTEXT_REFUSAL))
                raw.shutdown(socket.SHUT_WR)
            except OSError:
                self._fail(item, "plaintext client refused")
                return
            item.stage = _Stage.REFUSING
            item.deadline = min(item.deadline, time.monotonic() + _REFUSAL_LINGER)
            return
        item.sock = self._ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        item.stage = _Stage.TLS

    def _handshake(self, item: _Pending) -> None:
        sock = item.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(item, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._want(item, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as exc:
            log.info("%s: TLS handshake failed: %s", item.conn.peer, exc.reason or exc)
            self._fail(item, f"TLS handshake failed: {exc.reason or exc}")
            return
        self._forget(item)
        item.conn.handshaken(sock)
        try:
            self._on_ready(item.conn)
        except Exception:
            log.exception("could not hand %s to an I/O loop", item.conn.peer)
            item.conn.finish("internal server error")

    def _drain_refused(self, item: _Pending) -> None:
        raw = item.conn.raw
        while True:
            try:
                data = raw.recv(4096)
            except BlockingIOError:
                self._want(item, selectors.EVENT_READ)
                return
            if not data or item.drained + len(data) > _REFUSAL_READ_LIMIT:
                self._fail(item, "plaintext client refused")
                return
            item.drained += len(data)

    def _want(self, item: _Pending, mask: int) -> None:
        sock = item.sock if item.sock is not None else item.conn.raw
        if item.mask == mask:
            return
        if item.mask:
            self._sel.modify(sock, mask, item)
        else:
            self._sel.register(sock, mask, item)
        item.mask = mask

    def _forget(self, item: _Pending) -> None:
        self._pending.discard(item)
        if item.mask:
            sock = item.sock if item.sock is not None else item.conn.raw
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
            item.mask = 0

    def _fail(self, item: _Pending, reason: str) -> None:
        self._forget(item)
        if item.sock is not None:
            try:
                # After wrap_socket the raw socket is detached: close the TLS one.
                item.sock.close()
            except OSError:
                pass
        try:
            self._on_failed(item.conn, reason)
        except Exception:
            log.exception("cleaning up after a failed handshake from %s failed", item.conn.peer)
