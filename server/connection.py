"""One client connection: its TLS stream, its bounded
outbound queue, its flood bucket and deadlines. It has no thread of its own:
the handshake stage (server/handshake.py) prepares it, then one IOLoop
(server/loop.py) serves it until it closes.

THE RULE: exactly one thread touches a given TLS socket at a time. Before
adopt() that is the handshake thread; afterwards only the loop's thread. Any
other thread (the store's writer running after-commit callbacks, a worker
answering a history request, another connection's fan-out) only calls
deliver() / send_bytes() / close_soon(), which append under a lock and
notify the loop.

The outbound queue's contract (after Ergo's socket.go):
  1. deliver() MUST NOT block, and MUST NOT reorder frames.
  2. Everything queued when the loop gets to the connection is coalesced into
     one write (one TLS record per 16 KiB, not one per frame).
  3. A peer that stops reading fills its own queue and is dropped with
     "send queue exceeded"; nobody else ever waits for it.
  4. A replay is streamed: the next part is queued only once what was queued
     before has drained below a low-water mark, so a big history never
     overflows the user's own queue; frames queued after it wait behind it.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from parley_chat.protocol import (
    Error,
    ErrorCode,
    Frame,
    Hello,
    LineDecoder,
    Ping,
    RemoteProtocolError,
    StreamError,
    decode_client_line,
    encode,
)
from parley_chat.transport import StreamClosed, TLSStream

from .config import ServerConfig
from .errors import ClosedByServer, PeerGone, SendQueueExceeded
from .flood import TokenBucket

if TYPE_CHECKING:
    from .loop import IOLoop

log = logging.getLogger("parley.connection")

#: Stop reading ahead once this many lines wait to be processed; TCP then
#: pushes back on the client instead of us buffering.
MAX_READ_AHEAD_LINES = 64
#: Bytes read from one connection per loop turn, so one fast sender cannot
#: starve the others on its loop.
READ_BUDGET = 256 * 1024
#: A streamed replay queues its next part when less than this is left to send.
STREAM_LOW_WATER = 64 * 1024
#: How long a closing connection may take to flush its last frames.
CLOSE_FLUSH_DEADLINE = 2.0
#: Unread input dropped before a close, so the close is a FIN and not a reset.
CLOSE_DISCARD_LIMIT = 4 * 1024 * 1024
#: A closing connection whose peer is still sending waits for this much quiet.
CLOSE_LINGER = 0.2
#: The shortest fakelag pause: a bucket a hair from its next token still waits a
#: loop turn instead of spinning on it.
MIN_FAKELAG = 0.001

Dispatch = Callable[["Connection", Frame], None]
Finished = Callable[["Connection", str], None]


class _Replay:
    """A replay being streamed: its parts, and the id it replays up to."""

    __slots__ = ("parts", "up_to")

    def __init__(self, parts: list[bytes], up_to: int) -> None:
        self.parts = deque(parts)
        self.up_to = up_to


class Connection:
    """A client connection. Built on the accept thread, handshaken, then adopted by a loop."""

    # A thousand idle connections: slots instead of a dict, lists (taken whole)
    # instead of deques for the outbound queues, and the closed event made only
    # when someone waits for it save about 4 KB each (tracemalloc and RSS at
    # 1000 idle clients).
    __slots__ = (
        "__weakref__",
        "_backlog",
        "_bad_frames",
        "_bucket",
        "_busy",
        "_cfg",
        "_close_request",
        "_closed",
        "_closing",
        "_closing_deadline",
        "_dead",
        "_decoder",
        "_discarded",
        "_dispatch",
        "_done",
        "_ended",
        "_finished",
        "_held",
        "_held_bytes",
        "_holding",
        "_last_discard",
        "_lock",
        "_loop",
        "_ping_sent",
        "_queue",
        "_queued_bytes",
        "_replay",
        "_stream",
        "_wire_pending",
        "accepted_at",
        "last_rx",
        "nick",
        "paused_until",
        "peer",
        "peer_ip",
        "raw",
        "refuse",
        "session_id",
        "tls_version",
        "user_id",
    )

    def __init__(
        self,
        cfg: ServerConfig,
        raw: socket.socket,
        peer: tuple[str, int],
        *,
        dispatch: Dispatch,
        finished: Finished,
        refuse: ErrorCode | None = None,
    ) -> None:
        self._cfg = cfg
        self.raw = raw
        self.peer_ip = peer[0]
        self.peer = f"{peer[0]}:{peer[1]}"
        self.refuse = refuse
        self._dispatch = dispatch
        self._finished = finished
        self.accepted_at = time.monotonic()
        self.last_rx = self.accepted_at
        self.tls_version: str | None = None

        # Set by the login handler.
        self.user_id: int | None = None
        self.nick: str | None = None
        self.session_id: int | None = None

        # Owned by the loop thread.
        self._stream: TLSStream | None = None
        self._loop: IOLoop | None = None
        self._decoder = self._new_decoder(cfg)
        self._backlog: deque[bytes] = deque()
        self._bucket = TokenBucket(cfg.flood_burst, cfg.flood_rate)
        self.paused_until = 0.0
        self._bad_frames = 0
        self._ping_sent = False
        self._closing: str | None = None
        self._closing_deadline = 0.0
        self._replay: _Replay | None = None
        self._ended = False
        self._discarded = 0
        self._last_discard = 0.0

        # Shared with other threads, under _lock.
        self._lock = threading.Lock()
        self._queue: list[bytes | _Replay] = []
        self._queued_bytes = 0
        self._holding = False
        self._held: list[tuple[int | None, bytes]] = []
        self._held_bytes = 0
        self._close_request: tuple[str, bool] | None = None  # (reason, flush first)
        self._dead = False
        self._busy = False
        #: Bytes the TLS stream still holds, as last seen by the loop (read
        #: without the lock by other threads: an int is read atomically).
        self._wire_pending = 0
        # Made by the first wait_closed() (most connections never have a waiter).
        self._done: threading.Event | None = None
        self._closed = False  # the end has been reported (finish() is done)

    # --- set-up, from the handshake stage -------------------------------------------

    def handshaken(self, sock: ssl.SSLSocket) -> None:
        """The TLS handshake succeeded on *sock* (already non-blocking)."""
        self._stream = TLSStream(sock)
        self.tls_version = sock.version()
        if self.refuse is not None:
            self.close_soon(
                "too many connections from this address",
                Error(code=self.refuse, message="too many connections from your address"),
            )

    def attach_loop(self, loop: IOLoop) -> None:
        """Called by the loop that adopts this connection, on its thread."""
        self._loop = loop

    @property
    def loop(self) -> IOLoop | None:
        """The loop that serves this connection (None until one adopts it)."""
        return self._loop

    def fileno_obj(self) -> socket.socket:
        """The object the loop's selector waits on."""
        assert self._stream is not None
        return self._stream.sock

    # --- called from any thread -----------------------------------------------------

    @property
    def logged_in(self) -> bool:
        """True once a hello was accepted."""
        return self.user_id is not None

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        """Queue unsolicited bytes (fan-out). Never blocks; overflow drops this client.

        *lazy* (presence deltas) queues without waking the loop: the bytes go
        out with the next write to this connection, or at the loop's next lazy
        flush (LAZY_FLUSH), so a storm of logins costs each member one write
        per flush instead of one per login.
        """
        with self._lock:
            if self._dead:
                return
            # Held and queued bytes count against the one limit: both are owed.
            owed = self._queued_bytes + self._held_bytes + self._wire_pending + len(data)
            if owed > self._cfg.send_queue_bytes:
                self._overflow_locked()
            elif self._holding:
                self._held.append((message_id, data))
                self._held_bytes += len(data)
                return
            else:
                self._queue.append(data)
                self._queued_bytes += len(data)
                if lazy and self._loop is not None:
                    self._loop.notify_lazy(self)
                    return
        self._notify()

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue several unsolicited byte strings at once (a committed group's share)."""
        out = [d for _, d in chunks]
        self._deliver_group(chunks, out, sum(map(len, out)))

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue *data*, shared with other connections; *chunks* split it per message
        for a connection that holds deliveries back while it replays."""
        # Once per member per committed group: the hand-over's busiest call, so
        # the write-through is in line here. On the loop thread, inside a
        # hand-over, when nothing waits ahead of *data* (queued, held,
        # replaying, closing, or unwritten in the stream), it is written at
        # once, without the queue and a turn of the loop. Measured at 500
        # members: the Python around each member's TLS write was a third of
        # the hand-over.
        loop = self._loop
        if loop is None or not loop.handing_over():
            self._deliver_group(chunks, [data], len(data))
            return
        stream = self._stream
        assert stream is not None
        with self._lock:
            if self._dead:
                return
            direct = (
                not self._queue
                and not self._holding
                and self._close_request is None
                and self._replay is None
                and self._closing is None
                and not stream.wants_write
                and len(data) <= self._cfg.send_queue_bytes
            )
        if not direct:
            self._deliver_group(chunks, [data], len(data))
            return
        try:
            if stream.write(data):
                return  # all written: nothing waits, the interest is unchanged
        except StreamClosed as exc:
            loop.drop(self, exc.reason)  # as service() would have: the peer is gone
            return
        self._wire_pending = stream.pending_bytes
        loop.serve(self)

    def _deliver_group(
        self, chunks: list[tuple[int | None, bytes]], out: list[bytes], size: int
    ) -> None:
        # *out* is what goes on the queue (the shared blob, or the chunks' bytes;
        # *size* bytes); a replaying connection holds *chunks* instead, to
        # de-duplicate by id.
        with self._lock:
            if self._dead:
                return
            owed = self._queued_bytes + self._held_bytes + self._wire_pending + size
            if owed > self._cfg.send_queue_bytes:
                self._overflow_locked()
            elif self._holding:
                self._held.extend(chunks)
                self._held_bytes += size
                return
            else:
                self._queue.extend(out)
                self._queued_bytes += size
        self._notify()

    def send_frame(self, frame: Frame) -> None:
        """Queue a reply to this client's own request."""
        self.send_bytes(self._encode(frame))

    def send_bytes(self, data: bytes) -> None:
        """Queue solicited bytes (replies, history pages).

        These are bounded by page sizes rather than by the send queue limit,
        but a client that keeps asking without reading is dropped past
        max_reply_queue_bytes.
        """
        with self._lock:
            if self._dead:
                return
            if (
                self._queued_bytes + self._wire_pending + len(data)
                > self._cfg.max_reply_queue_bytes
            ):
                self._overflow_locked()
            else:
                self._queue.append(data)
                self._queued_bytes += len(data)
        self._notify()

    def send_replay(self, parts: list[bytes], replayed_up_to: int) -> None:
        """Stream *parts* (a replay batch, in order), then release held live messages.

        Frames queued after this wait behind the replay. Live messages held
        since hold_live() are sent after it, minus those the replay contained.
        """
        with self._lock:
            if self._dead:
                return
            self._queue.append(_Replay(parts, replayed_up_to))
        self._notify()

    def hold_live(self) -> None:
        """Keep live deliveries back (while a replay is being read and sent)."""
        with self._lock:
            self._holding = True

    def close_soon(self, reason: str, error: Error | None = None) -> None:
        """Close after sending what is queued (and *error*, if given). Any thread.

        Only the first request counts."""
        with self._lock:
            if self._dead or self._close_request is not None:
                return
            if error is not None:
                data = self._encode(error)
                self._queue.append(data)
                self._queued_bytes += len(data)
            self._close_request = (reason, True)
        self._notify()

    def close_after_flush(self, reason: str, error: Error | None = None) -> None:
        """Send *error* (if given), flush, then close. Same as close_soon()."""
        self.close_soon(reason, error)

    def begin_job(self) -> None:
        """A handler runs off the loop for this connection: hold its next frames."""
        with self._lock:
            self._busy = True

    def end_job(self) -> None:
        """The off-loop handler is done: process the connection's next frames."""
        with self._lock:
            self._busy = False
        self._notify()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection has closed. True if it did in time."""
        with self._lock:
            if self._closed:
                return True
            if self._done is None:
                self._done = threading.Event()
            done = self._done
        return done.wait(timeout)

    # --- queue internals (caller holds _lock) -----------------------------------------

    def _overflow_locked(self) -> None:
        self._dead = True
        self._queue.clear()
        self._queued_bytes = 0
        self._held.clear()
        self._held_bytes = 0
        self._close_request = ("send queue exceeded", False)

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None:  # before adoption the loop serves it as it adopts it
            loop.notify(self)

    # --- the loop thread ------------------------------------------------------------------

    def interest(self) -> int:
        """The selector events this connection waits for now (0: none)."""
        if self._ended:
            return 0
        stream = self._stream
        assert stream is not None
        want = 0
        if self._reading_allowed():
            want |= selectors.EVENT_READ
        if stream.wants_write:
            want |= selectors.EVENT_WRITE
        # 0 unregisters the socket: while reading is paused a level-triggered
        # selector would otherwise report it readable on every turn. A hang-up
        # is then noticed as soon as reading resumes.
        return want

    def wants_another_turn(self) -> bool:
        """True if the loop must serve this connection again without waiting for an event."""
        stream = self._stream
        if stream is None or self._ended:
            return False
        if stream.has_buffered and self._reading_allowed():
            return True
        return bool(self._backlog) and not self._is_busy() and not self.paused_until

    def _reading_allowed(self) -> bool:
        if self._closing is not None:
            # Keep draining (and dropping) input while the last frames go out.
            return self._discarded < CLOSE_DISCARD_LIMIT
        return not self.paused_until and len(self._backlog) < MAX_READ_AHEAD_LINES

    def _is_busy(self) -> bool:
        # Read without the lock: a bool is read atomically, and end_job()
        # notifies the loop after clearing it, so a stale True is corrected on
        # the next turn (and a stale False cannot happen: only the loop sets it).
        return self._busy

    def on_readable(self, now: float) -> None:
        """Read what arrived and process the frames it completes."""
        stream = self._stream
        assert stream is not None
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
        if self._reading_allowed():
            try:
                data = stream.read(READ_BUDGET)
            except StreamClosed as exc:
                raise PeerGone(exc.reason) from exc
            if data and self._closing is not None:
                self._discarded += len(data)  # closing: nothing more is processed
                self._last_discard = now
            elif data:
                self.last_rx = now
                self._ping_sent = False
                try:
                    self._backlog.extend(self._decoder.feed(data))
                except StreamError as exc:
                    self._backlog.clear()
                    # The rest of the line is likely still coming: linger for it.
                    self._discarded += len(data)
                    self._last_discard = now
                    self._begin_close("line too long", Error(code=exc.code, message=exc.message))
        self._process_backlog(now)

    def _process_backlog(self, now: float) -> None:
        # Nothing after a close request is processed (a `bye` ends the session
        # even when more frames were pipelined behind it).
        while (
            self._backlog
            and self._closing is None
            and self._close_request is None
            and not self._is_busy()
        ):
            if not self._bucket.take():
                # Fakelag: stop reading until a token is due; TCP pushes back on
                # the client. Applies before login too: a connection that never
                # logs in must not get unlimited answers either.
                self.paused_until = now + max(MIN_FAKELAG, self._bucket.wait_time())
                if len(self._backlog) > self._cfg.flood_backlog:
                    self._begin_close(
                        "flooding", Error(code=ErrorCode.FLOOD, message="too many messages")
                    )
                return
            self.paused_until = 0.0
            self._handle_line(self._backlog.popleft())

    # --- hooks for another line protocol on the same I/O design (server/irc/) ------

    def _new_decoder(self, cfg: ServerConfig) -> Any:
        """The line decoder: its feed(bytes) returns the complete lines."""
        return LineDecoder(cfg.max_line_bytes)

    def _handle_line(self, line: Any) -> None:
        """Decode one line the decoder produced and dispatch it (on the loop thread)."""
        try:
            frame = decode_client_line(line)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        self._dispatch(self, frame)

    def _encode(self, frame: Frame) -> bytes:
        """The bytes of a frame the connection itself sends (errors, pings)."""
        return encode(frame)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self._bad_frames += 1
        error = Error(code=exc.code, message=exc.message, ref=exc.ref)
        if exc.frame_type == Hello.TYPE and not self.logged_in:
            # A hello that fails validation is a refused login: answer, then close.
            self._begin_close(f"login refused: {exc.code}", error)
        elif self._bad_frames > self._cfg.max_bad_frames:
            self._begin_close(
                "too many invalid frames",
                Error(
                    code=exc.code,
                    message=f"{exc.message} (more than {self._cfg.max_bad_frames} invalid "
                    "frames: closing the connection)",
                    ref=exc.ref,
                ),
            )
        else:
            self.send_frame(error)

    def _begin_close(self, reason: str, error: Error | None = None) -> None:
        if error is not None:
            self.send_frame(error)
        if self._closing is None:
            self._closing = reason
            self._closing_deadline = time.monotonic() + CLOSE_FLUSH_DEADLINE

    def service(self, now: float) -> None:
        """Apply close requests, move queued bytes to the stream, write."""
        stream = self._stream
        assert stream is not None
        with self._lock:
            request = self._close_request
            self._move_queued_locked(stream)
        if request is not None:
            reason, flush = request
            if not flush:
                stream.discard_output()
                raise SendQueueExceeded(reason)
            if self._closing is None:
                self._closing = reason
                self._closing_deadline = now + CLOSE_FLUSH_DEADLINE
        try:
            done = stream.flush()
        except StreamClosed as exc:
            raise PeerGone(exc.reason) from exc
        while done and self._replay is not None and stream.pending_bytes < STREAM_LOW_WATER:
            # The stream drained: queue the replay's next part (and what waits
            # behind it), as long as the socket takes it; once it stops, the
            # selector's write readiness brings us back here.
            with self._lock:
                self._move_queued_locked(stream)
            try:
                done = stream.flush()
            except StreamClosed as exc:
                raise PeerGone(exc.reason) from exc
        self._wire_pending = stream.pending_bytes
        if self._closing is not None:
            with self._lock:
                empty = not self._queue
            flushed = done and empty and self._replay is None
            if now >= self._closing_deadline or (flushed and self._input_quiet(now)):
                self._discard_input(stream)
                raise ClosedByServer(self._closing)
        if self._backlog and not self._is_busy() and not self.paused_until:
            self._process_backlog(now)
            with self._lock:
                self._move_queued_locked(stream)
            try:
                stream.flush()
            except StreamClosed as exc:
                raise PeerGone(exc.reason) from exc
            self._wire_pending = stream.pending_bytes

    def _input_quiet(self, now: float) -> bool:
        # A peer still sending (the rest of an over-long line) would get a reset
        # for what arrives after the close, and lose our last frame with it:
        # linger until its input has been quiet for CLOSE_LINGER.
        return not self._discarded or now - self._last_discard >= CLOSE_LINGER

    @staticmethod
    def _discard_input(stream: TLSStream) -> None:
        # Closing with unread bytes makes the kernel answer with a reset, which
        # can destroy our last frame (the error saying why) before the client
        # reads it: read and drop what has arrived first (bounded).
        try:
            stream.read(CLOSE_DISCARD_LIMIT)
        except StreamClosed:
            pass

    def _move_queued_locked(self, stream: TLSStream) -> None:
        # Moves queued bytes into the TLS stream, in order, stopping at a replay
        # that has not finished streaming.
        while True:
            replay = self._replay
            if replay is not None:
                while replay.parts and stream.pending_bytes < STREAM_LOW_WATER:
                    stream.queue(replay.parts.popleft())
                if replay.parts:
                    return
                self._replay = None
                self._release_held_locked(replay.up_to)  # appends to the queue
            queue = self._queue
            if not queue:
                return
            self._queue = []
            for i, item in enumerate(queue):
                if isinstance(item, _Replay):
                    self._replay = item  # streamed on the next pass; the rest waits
                    self._queue = queue[i + 1 :]
                    break
                self._queued_bytes -= len(item)
                stream.queue(item)
            else:
                return

    def _release_held_locked(self, replayed_up_to: int) -> None:
        held, self._held, self._holding = self._held, [], False
        self._held_bytes = 0
        for message_id, data in held:
            if message_id is None or message_id > replayed_up_to:
                self._queue.append(data)
                self._queued_bytes += len(data)

    def check_timers(self, now: float) -> None:
        """Login deadline, idle ping and close, close-flush deadline."""
        if self._closing is not None:
            stream = self._stream
            with self._lock:
                empty = not self._queue
            flushed = stream is not None and not stream.wants_write and empty
            if now >= self._closing_deadline or (
                flushed and self._replay is None and self._discarded and self._input_quiet(now)
            ):
                raise ClosedByServer(self._closing)
            return
        if not self.logged_in and now - self.accepted_at >= self._cfg.login_timeout:
            self._begin_close(
                "login timed out",
                Error(code=ErrorCode.TIMEOUT, message="no successful login in time"),
            )
            return
        idle = now - self.last_rx
        if idle >= self._cfg.idle_close_after:
            self._begin_close(
                "ping timeout", Error(code=ErrorCode.TIMEOUT, message="no data from you in time")
            )
        elif idle >= self._cfg.idle_ping_after and not self._ping_sent:
            self._ping_sent = True
            self.send_frame(Ping(token=str(int(now))))

    def finish(self, reason: str) -> None:
        """Close the socket and report the end (once). On the loop thread, or at shutdown."""
        if self._ended:
            return
        self._ended = True
        with self._lock:
            self._dead = True
            self._queue.clear()
            self._held.clear()
        if self._stream is not None:
            self._stream.close()
        else:
            try:
                self.raw.close()
            except OSError:
                pass
        try:
            self._finished(self, reason)
        except Exception:
            log.exception("cleaning up after %s failed", self.peer)
        finally:
            with self._lock:
                self._closed = True
                done = self._done
            if done is not None:
                done.set()
