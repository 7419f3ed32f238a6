# server/connection.py: one client connection: one I/O thread that owns the
# TLS socket, and a bounded send queue.
#
# THE RULE: exactly one thread touches a given TLS socket. Python 3.11's ssl
# module has no per-socket lock; a recv in one thread while another thread
# sends on the same SSLSocket corrupts the TLS stream or crashes the process
# (DESIGN.md section 3). So:
#   1. The connection's own thread does the handshake, every recv and every send.
#   2. Other threads (the writer's commit callbacks, other connections' fan-out)
#      only call deliver()/send_frame(), which append bytes to a queue under a
#      lock and wake the I/O thread through a socketpair.
#
# The send queue's contract (after Ergo's socket.go):
#   1. deliver() MUST NOT block, and MUST NOT reorder frames.
#   2. Queued frames are coalesced into one write.
#   3. A peer that stops reading fills its own queue and is dropped with
#      "send queue exceeded"; nobody else ever waits for it.

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from protocol import (
    Error,
    ErrorCode,
    Frame,
    LineDecoder,
    Ping,
    RemoteProtocolError,
    StreamError,
    decode_client_line,
    encode,
)

from .errors import ClosedByServer, ConnectionClosed, PeerGone, SendQueueExceeded
from .flood import TokenBucket

if TYPE_CHECKING:
    from .app import ChatServer

log = logging.getLogger("parley.connection")

#: Sent in plaintext to a client that does not start a TLS handshake.
PLAINTEXT_REFUSAL = (
    b'{"type":"error","code":"tls-required","message":"this port speaks TLS only: '
    b"connect with a parley client that trusts the server's ca.pem\"}\n"
)
_TLS_HANDSHAKE_RECORD = 0x16
_READ_CHUNK = 64 * 1024
_WRITE_CHUNK = 256 * 1024
# Stop reading ahead once this many lines wait to be processed; TCP then
# pushes back on the client instead of us buffering.
_MAX_READ_AHEAD_LINES = 64
_CLOSE_FLUSH_DEADLINE = 2.0


def _refuse_plaintext(raw: socket.socket) -> None:
    # Send the refusal, then read (bounded) what the client already sent before
    # closing: closing with unread bytes makes the kernel send RST, and the
    # client would see "connection reset" instead of our message.
    try:
        raw.sendall(PLAINTEXT_REFUSAL)
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(0.5)
        for _ in range(16):
            if not raw.recv(4096):
                break
    except OSError:
        pass


class Connection:
    """A client connection. Create it on the accept thread, then start() it."""

    def __init__(
        self,
        server: ChatServer,
        raw: socket.socket,
        peer: tuple[str, int],
        refuse: ErrorCode | None = None,
    ) -> None:
        self._server = server
        self._cfg = server.config
        self._raw = raw
        self._sock: ssl.SSLSocket | None = None
        self.peer_ip = peer[0]
        self.peer = f"{peer[0]}:{peer[1]}"
        self._refuse = refuse
        self.accepted_at = time.monotonic()
        self.last_rx = self.accepted_at
        self.tls_version: str | None = None

        # Set by the login handler.
        self.user_id: int | None = None
        self.nick: str | None = None
        self.session_id: int | None = None

        self._decoder = LineDecoder(self._cfg.max_line_bytes)
        self._backlog: deque[bytes] = deque()
        self._bucket = TokenBucket(self._cfg.flood_burst, self._cfg.flood_rate)
        self._paused_until = 0.0
        self._bad_frames = 0
        self._ping_sent = False

        # Shared with other threads, under _lock.
        self._lock = threading.Lock()
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._holding = False
        self._held: list[tuple[int | None, bytes]] = []
        self._held_bytes = 0
        self._close_request: tuple[type[ConnectionClosed], str] | None = None
        self._dead = False

        # Owned by the I/O thread.
        self._wbuf = b""
        self._wpos = 0
        self._closing: str | None = None
        self._closing_deadline = 0.0

        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"conn-{self.peer}", daemon=True)

    # --- called from any thread ---------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread (handshake, then the loop)."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the I/O thread to end."""
        self._thread.join(timeout)

    @property
    def logged_in(self) -> bool:
        """True once a hello was accepted."""
        return self.user_id is not None

    def deliver(self, data: bytes, message_id: int | None = None) -> None:
        """Queue unsolicited bytes (fan-out). Never blocks; overflow drops this client."""
        with self._lock:
            if self._dead:
                return
            # Held bytes count against the same limit as queued ones: both are
            # owed to this client.
            if self._out_bytes + self._held_bytes + len(data) > self._cfg.send_queue_bytes:
                self._overflow_locked()
                return
            if self._holding:
                self._held.append((message_id, data))
                self._held_bytes += len(data)
                return
            wake = self._append_locked(data)
        if wake:
            self._wake()

    def send_frame(self, frame: Frame) -> None:
        """Queue a reply to this client's own request."""
        self.send_bytes(encode(frame))

    def send_bytes(self, data: bytes) -> None:
        """Queue solicited bytes (replies, history pages).

        These are bounded by page sizes rather than by the send queue limit,
        but a client that keeps asking without reading is dropped past 8x it.
        """
        with self._lock:
            if self._dead:
                return
            if self._out_bytes + len(data) > 8 * self._cfg.send_queue_bytes:
                self._overflow_locked()
                return
            wake = self._append_locked(data)
        if wake:
            self._wake()

    def hold_live(self) -> None:
        """Keep live deliveries back (while a replay is being sent)."""
        with self._lock:
            self._holding = True

    def release_held(self, replayed_up_to: int) -> None:
        """Send what was held, skipping messages the replay already contained."""
        with self._lock:
            held, self._held, self._holding = self._held, [], False
            self._held_bytes = 0
            wake = False
            for message_id, data in held:
                if message_id is None or message_id > replayed_up_to:
                    wake = self._append_locked(data) or wake
        if wake:
            self._wake()

    def close_soon(self, reason: str, error: Error | None = None) -> None:
        """Ask the I/O thread to close (after sending *error*, if given).

        From any thread; only the first request counts."""
        with self._lock:
            if self._dead or self._close_request is not None:
                return
            if error is not None:
                self._append_locked(encode(error))
            self._close_request = (ClosedByServer, reason)
        self._wake()

    # --- queue internals (caller holds _lock) ---------------------------------------

    def _append_locked(self, data: bytes) -> bool:
        was_empty = not self._out
        self._out.append(data)
        self._out_bytes += len(data)
        # Waking is needed only when the I/O thread may be asleep with nothing
        # to write, and never from the I/O thread itself (it flushes next).
        return was_empty and threading.get_ident() != self._thread.ident

    def _overflow_locked(self) -> None:
        self._dead = True
        self._out.clear()
        self._held.clear()
        self._held_bytes = 0
        self._close_request = (SendQueueExceeded, "send queue exceeded")
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up byte is already pending, or we are closing

    # --- the I/O thread ------------------------------------------------------------------

    def _run(self) -> None:
        reason = "connection closed"
        try:
            self._handshake()
            if self._refuse is not None:
                self._refuse_and_close()
            else:
                self._loop()
        except ConnectionClosed as exc:
            reason = exc.reason
        except Exception:
            log.exception("connection %s failed", self.peer)
            reason = "internal server error"
        finally:
            with self._lock:
                self._dead = True
            self._server.connection_finished(self, reason)
            for s in (self._sock, self._raw, self._wake_r, self._wake_w):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _handshake(self) -> None:
        raw = self._raw
        deadline = self.accepted_at + self._cfg.handshake_timeout
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            raw.settimeout(max(0.01, deadline - time.monotonic()))
            first = raw.recv(1, socket.MSG_PEEK)
            if not first:
                raise PeerGone("closed before the TLS handshake")
            if first[0] != _TLS_HANDSHAKE_RECORD:
                # Not TLS: say so in plaintext, once, and hang up.
                log.info("%s: plaintext client on the TLS port, refused", self.peer)
                _refuse_plaintext(raw)
                raise ClosedByServer("plaintext client refused")
            sock = self._server.ssl_context.wrap_socket(
                raw, server_side=True, do_handshake_on_connect=False
            )
            self._sock = sock
            # Since Python 3.5 the timeout bounds the whole handshake, not each byte.
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.do_handshake()
        except TimeoutError as exc:
            log.info("%s: no TLS handshake within %.0f s", self.peer, self._cfg.handshake_timeout)
            raise ClosedByServer("TLS handshake timed out") from exc
        except ssl.SSLError as exc:
            log.info("%s: TLS handshake failed: %s", self.peer, exc.reason or exc)
            raise PeerGone(f"TLS handshake failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise PeerGone(f"network error during handshake: {exc}") from exc
        finally:
            self._server.handshake_done(self)
        self.tls_version = sock.version()
        sock.setblocking(False)

    def _refuse_and_close(self) -> None:
        code = self._refuse or ErrorCode.TOO_MANY_CONNECTIONS
        self.send_frame(Error(code=code, message="too many connections from your address"))
        self._begin_close("too many connections from this address")
        self._loop()

    def _begin_close(self, reason: str) -> None:
        if self._closing is None:
            self._closing = reason
            self._closing_deadline = time.monotonic() + _CLOSE_FLUSH_DEADLINE

    def close_after_flush(self, reason: str, error: Error | None = None) -> None:
        """From the I/O thread (command handlers): send *error*, flush, then close."""
        if error is not None:
            self.send_frame(error)
        self._begin_close(reason)

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        registered = 0
        try:
            while True:
                now = time.monotonic()
                self._check_requests()
                if self._closing is not None and (
                    not self._has_output() or now >= self._closing_deadline
                ):
                    raise ClosedByServer(self._closing)
                want = 0
                reading = self._closing is None and now >= self._paused_until
                if reading and len(self._backlog) < _MAX_READ_AHEAD_LINES:
                    want |= selectors.EVENT_READ
                if self._has_output():
                    want |= selectors.EVENT_WRITE
                if want != registered:
                    if registered:
                        if want:
                            sel.modify(sock, want)
                        else:
                            sel.unregister(sock)
                    elif want:
                        sel.register(sock, want)
                    registered = want
                for key, _mask in sel.select(self._next_timeout(now)):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                if reading:
                    self._read()
                self._process_backlog()
                self._flush()
                self._check_timers()
        finally:
            sel.close()

    def _has_output(self) -> bool:
        return bool(self._wbuf) or bool(self._out)

    def _check_requests(self) -> None:
        with self._lock:
            request = self._close_request
        if request is not None:
            cls, reason = request
            if cls is SendQueueExceeded:
                raise SendQueueExceeded(reason)
            self._begin_close(reason)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _next_timeout(self, now: float) -> float:
        deadlines = []
        if not self.logged_in:
            deadlines.append(self.accepted_at + self._cfg.login_timeout)
        deadlines.append(self.last_rx + self._cfg.idle_ping_after)
        deadlines.append(self.last_rx + self._cfg.idle_close_after)
        if self._paused_until > now:
            deadlines.append(self._paused_until)
        if self._closing is not None:
            deadlines.append(self._closing_deadline)
        future = [d for d in deadlines if d > now]
        return max(0.0, min(future) - now) if future else 0.05

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        # Drain everything readable, including bytes OpenSSL already decrypted
        # into its own buffer (sock.pending()), which select() cannot see.
        while len(self._backlog) < _MAX_READ_AHEAD_LINES:
            try:
                data = sock.recv(_READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except ssl.SSLZeroReturnError as exc:
                raise PeerGone("client closed the connection") from exc
            except (ssl.SSLError, OSError) as exc:
                raise PeerGone(f"network error: {exc}") from exc
            if not data:
                raise PeerGone("client closed the connection")
            self.last_rx = time.monotonic()
            self._ping_sent = False
            try:
                self._backlog.extend(self._decoder.feed(data))
            except StreamError as exc:
                self._backlog.clear()
                self.close_after_flush("line too long", Error(code=exc.code, message=exc.message))
                return

    def _process_backlog(self) -> None:
        while self._backlog and self._closing is None:
            if self.logged_in and not self._bucket.take():
                # Fakelag: stop reading until a token is due; TCP pushes back on the client.
                self._paused_until = time.monotonic() + self._bucket.wait_time()
                if len(self._backlog) > self._cfg.flood_backlog:
                    self.close_after_flush(
                        "flooding", Error(code=ErrorCode.FLOOD, message="too many messages")
                    )
                return
            line = self._backlog.popleft()
            try:
                frame = decode_client_line(line)
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                continue
            self._server.commands.dispatch(self, frame)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self._bad_frames += 1
        self.send_frame(Error(code=exc.code, message=exc.message, ref=exc.ref))
        if self._bad_frames > self._cfg.max_bad_frames:
            self.close_after_flush("too many invalid frames")

    def _flush(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            if not self._wbuf:
                with self._lock:
                    if not self._out:
                        return
                    self._wbuf = b"".join(self._out)
                    self._out.clear()
                    self._out_bytes = 0
                self._wpos = 0
            try:
                # After SSLWantWriteError OpenSSL needs the same bytes again;
                # Python allows the buffer to move, and we resend from _wpos.
                sent = sock.send(memoryview(self._wbuf)[self._wpos : self._wpos + _WRITE_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except (ssl.SSLError, OSError) as exc:
                raise PeerGone(f"network error: {exc}") from exc
            self._wpos += sent
            if self._wpos >= len(self._wbuf):
                self._wbuf = b""

    def _check_timers(self) -> None:
        now = time.monotonic()
        if self._closing is not None:
            return
        if not self.logged_in and now - self.accepted_at >= self._cfg.login_timeout:
            self.close_after_flush(
                "login timed out",
                Error(code=ErrorCode.TIMEOUT, message="no successful login in time"),
            )
            return
        idle = now - self.last_rx
        if idle >= self._cfg.idle_close_after:
            self.close_after_flush(
                "ping timeout", Error(code=ErrorCode.TIMEOUT, message="no data from you in time")
            )
        elif idle >= self._cfg.idle_ping_after and not self._ping_sent:
            self._ping_sent = True
            self.send_frame(Ping(token=str(int(now))))
