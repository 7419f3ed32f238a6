"""What the tests share: a raw protocol client (real TLS, frames by hand), barriers, waits.

RawClient is used from one test thread only (one thread per TLS socket, as everywhere).
Every read and every wait has a deadline, and waits for a sign: a frame, an event, or
the answer to a request sent for the purpose (a barrier). Nothing here waits for a
quiet period: silence proves nothing on a loaded machine.
"""

from __future__ import annotations

import itertools
import queue
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from parley_chat.client.events import RoomsListed
from parley_chat.protocol import (
    PROTOCOL_VERSION,
    Batch,
    Frame,
    Hello,
    History,
    LineDecoder,
    Message,
    Ping,
    Pong,
    Search,
    Welcome,
    decode_server_line,
    encode,
)

if TYPE_CHECKING:
    from parley_chat.server.chat_server import ChatServer

DEFAULT_TIMEOUT = 10.0


def tcp_connect(
    address: tuple[str, int],
    *,
    source: str | None = None,
    rcvbuf: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> socket.socket:
    """A connected TCP socket to *address* with TCP_NODELAY, as the real clients set it
    (without it, Nagle and delayed ACKs add ~40 ms per exchange)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class RawClient:
    """A TLS connection speaking frames directly, for testing the server."""

    def __init__(
        self,
        address: tuple[str, int],
        ca_file: Path | None = None,
        hostname: str = "localhost",
        *,
        context: ssl.SSLContext | None = None,
        source: str | None = None,
        rcvbuf: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_line: int | None = None,
    ) -> None:
        """Connect and handshake: trusting *ca_file* (or with *context*), from
        *source* if given (another local address), with a receive buffer of *rcvbuf*
        bytes if given (set before connect, so the server sees the small window from
        the start), reading lines of up to *max_line* bytes (the protocol's cap)."""
        if context is None:
            assert ca_file is not None, "give a CA file or a context"
            context = ssl.create_default_context(cafile=str(ca_file))
        raw = tcp_connect(address, source=source, rcvbuf=rcvbuf, timeout=timeout)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=hostname)
        except BaseException:
            raw.close()
            raise
        self._decoder = LineDecoder() if max_line is None else LineDecoder(max_line)
        self._frames: deque[Frame] = deque()
        self.closed = False
        #: Frames login() saw between the welcome and the replay batch.
        self.before_replay: list[Frame] = []
        #: Bytes of TLS plaintext received so far (what the server wrote to us).
        self.received_bytes = 0

    def send(self, frame: Frame | bytes) -> None:
        """Send a frame (or raw bytes, for malformed input)."""
        self.sock.sendall(frame if isinstance(frame, bytes) else encode(frame))

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame; TimeoutError past the deadline, EOFError when the server closed."""
        deadline = time.monotonic() + timeout
        while not self._frames:
            for line in self.read_lines(deadline):
                self._frames.append(decode_server_line(line))
        return self._frames.popleft()

    def read_lines(self, deadline: float) -> list[bytes]:
        """One read from the socket, as the complete lines it gave (maybe none).

        TimeoutError past *deadline*, EOFError when the server closed.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError as exc:
            raise TimeoutError("no frame from the server in time") from exc
        except (ssl.SSLError, ConnectionError) as exc:
            self.closed = True
            raise EOFError(f"connection closed: {exc}") from exc
        if not data:
            self.closed = True
            raise EOFError("connection closed by the server")
        self.received_bytes += len(data)
        return self._decoder.feed(data)

    def recv_until(
        self, predicate: Callable[[Frame], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> list[Frame]:
        """Frames up to and including the first that satisfies *predicate*."""
        deadline = time.monotonic() + timeout
        seen: list[Frame] = []
        while True:
            frame = self.recv(max(0.0, deadline - time.monotonic()))
            seen.append(frame)
            if predicate(frame):
                return seen

    def expect(
        self, frame_type: type[Frame], timeout: float = DEFAULT_TIMEOUT, **fields: object
    ) -> Frame:
        """Skip frames until one of *frame_type* whose fields match; return it."""

        def matches(f: Frame) -> bool:
            return isinstance(f, frame_type) and all(getattr(f, k) == v for k, v in fields.items())

        return self.recv_until(matches, timeout)[-1]

    def expect_closed(self, timeout: float = DEFAULT_TIMEOUT) -> list[Frame]:
        """Read until the server closes the connection; return the frames it sent first."""
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while True:
            try:
                frames.append(self.recv(max(0.0, deadline - time.monotonic())))
            except EOFError:
                return frames

    def login(
        self,
        nick: str,
        password: str = "secret-pw",
        *,
        register: bool = True,
        last_seen: int | None = None,
        token: str | None = None,
    ) -> tuple[Welcome, list[Frame]]:
        """Send hello; return the welcome and the replay batch's frames (open..close).

        What came between the two (the `conversations` list) is kept in
        `self.before_replay`, to be checked by tests that care.
        """
        self.send(
            Hello(
                version=PROTOCOL_VERSION,
                nick=nick,
                password=None if token else password,
                token=token,
                register=register,
                last_seen=last_seen,
            )
        )
        welcome = self.recv()
        if not isinstance(welcome, Welcome):
            raise AssertionError(f"login as {nick} refused: {welcome}")
        batch = self.recv_until(lambda f: f.TYPE == "batch" and f.state == "close")  # type: ignore[attr-defined]
        opened = next(i for i, f in enumerate(batch) if f.TYPE == "batch")
        self.before_replay = batch[:opened]
        return welcome, batch[opened:]

    def close(self) -> None:
        """Close without a bye (like a dropped connection)."""
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def online(server: ChatServer, ca_file: Path, nick: str, **login: Any) -> RawClient:
    """A RawClient of *server* logged in as *nick* (registered on first use), replay read."""
    client = RawClient(server.address, ca_file)
    client.login(nick, **login)
    return client


def barrier(
    client: RawClient, token: str = "barrier", timeout: float = DEFAULT_TIMEOUT
) -> list[Frame]:
    """Send a ping and return every frame up to its pong (the pong excluded).

    The server handles a connection's frames in order (a handler that runs off the
    I/O loop holds the connection's next frames until it is done), so when the pong
    arrives everything queued for this client before the ping was handled has
    arrived too. Asynchronous effects of earlier frames (an ack after COMMIT, a
    fan-out from another connection's send) may still be on their way: wait for
    those by their own sign.
    """
    client.send(Ping(token=token))
    frames = client.recv_until(lambda f: isinstance(f, Pong) and f.token == token, timeout)
    return frames[:-1]


def messages_in(frames: list[Frame]) -> list[Frame]:
    """Only the `message` frames."""
    return [f for f in frames if f.TYPE == "message"]


def read_batch(
    client: RawClient, kind: str | None = None, tag: str | None = None
) -> tuple[Batch, list[Message], Batch]:
    """The next batch of *kind* (any if None) with *tag*: its open frame, the messages
    inside it, its close frame. What came before the open (live messages) is skipped."""

    def ours(f: Frame, state: str) -> bool:
        return (
            isinstance(f, Batch)
            and f.state == state
            and (kind is None or f.kind == kind)
            and f.tag == tag
        )

    frames = client.recv_until(lambda f: ours(f, "close"))
    start = next(i for i, f in enumerate(frames) if ours(f, "open"))
    inside = [f for f in frames[start:] if isinstance(f, Message)]
    return cast(Batch, frames[start]), inside, cast(Batch, frames[-1])


def request_batch(client: RawClient, frame: History | Search) -> tuple[list[Message], Batch]:
    """Send a tagged history or search request; the messages of its answer, and its close."""
    client.send(frame)
    _, messages, close = read_batch(client, tag=frame.tag)
    return messages, close


def db_rows(server: ChatServer, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of *sql* read from the server's SQLite file by a connection of the test's own."""
    con = sqlite3.connect(str(server.store.database_path))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_session_ended(server: ChatServer, nick: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The end reason of *nick*'s latest session, once the store has written its end.

    The server takes a dropped connection offline first and writes its session's end
    through the store's writer afterwards: this waits (with a deadline) for that row,
    asking again each time after a no-op went through the writer (it is FIFO)."""
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT s.ended_at, s.end_reason FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.nick = ? ORDER BY s.id DESC LIMIT 1"
    )
    while True:
        rows = db_rows(server, sql, nick)
        if rows and rows[0][0] is not None:
            return str(rows[0][1])
        assert time.monotonic() < deadline, f"{nick}'s session did not end in time"
        server.store.submit(lambda s: None).result(max(0.1, deadline - time.monotonic()))


# --- waiting on a ChatClient's event queue (every wait has a deadline) -------------


def collect_until(
    client: Any, predicate: Callable[[Any], bool], timeout: float = 15.0
) -> list[Any]:
    """Events from *client* up to and including the first matching *predicate*."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s; saw {seen}")
        try:
            event = client.events.get(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(event)
        if predicate(event):
            return seen


def wait_for_event(client: Any, predicate: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """The first event from *client* matching *predicate* (others are skipped)."""
    return collect_until(client, predicate, timeout)[-1]


_barrier_tags = itertools.count(1)


def barrier_events(client: Any, timeout: float = 15.0) -> list[Any]:
    """Every event from ChatClient *client* up to the answer to a request made now.

    The request is a `rooms` listing with a fresh tag; the server answers a
    connection's requests in order, so every event the server had queued for this
    client before it comes first. The answer itself (RoomsListed with that tag) is
    left out. The client must be connected, or reconnecting (the request waits).
    """
    tag = f"barrier-{next(_barrier_tags)}"
    client.rooms(tag=tag)
    seen = collect_until(client, lambda e: isinstance(e, RoomsListed) and e.tag == tag, timeout)
    return seen[:-1]


def first_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The first line *proc* prints on stdout (without the newline), waited for with a deadline.

    readline() blocks, so it runs on a thread of its own; a process that exits first
    fails the test with what it said on stderr.
    """
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError("the process printed nothing in time") from None
    assert line, f"exited {proc.poll()}: {proc.stderr.read() if proc.stderr else ''}"
    return line.rstrip("\n")
