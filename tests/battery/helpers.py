"""Helpers of the reliability battery (reliability.md section 6): a RawClient
that can bind a source address and keeps what it needs for the cross-cutting
checks, waits that always have a deadline and a sign to wait for, and the
end-of-case invariants (no `internal` error frame, the server still logs a
fresh client in, no traceback in the server log).

Everything here talks to the server over the wire. The only exceptions are
at the bottom: database fillers that set up big states (thousands of rooms,
megabytes of history) faster than the wire could, and chattr for a
read-only database.
"""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert, select

from parley_chat.protocol import (
    Error,
    ErrorCode,
    Frame,
    Presence,
    decode_server_line,
)
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.store import utcnow, writes
from parley_chat.server.store.models import Room, RoomMember
from tests.support import DEFAULT_TIMEOUT, RawClient, barrier

#: Where the end-of-case probe connects from: an address no case uses, so no
#: per-address limit a case exhausted (connections, logins, registrations) applies.
PROBE_SOURCE = "127.0.0.254"
#: "Another machine" for cases that need a second client address.
OTHER_SOURCE = "127.0.0.2"

#: ServerConfig.for_tests relaxes these; a case that is about them restores the defaults.
DEFAULT_CONNECTION_LIMITS: dict[str, Any] = {
    "max_connections_per_ip": 16,
    "max_handshakes": 256,
    "max_handshakes_per_ip": 16,
}
DEFAULT_FLOOD_LIMITS: dict[str, Any] = {"flood_burst": 10, "flood_rate": 5.0}

#: The client reads lines up to this size so an over-long server line is seen
#: and measured instead of breaking the client's decoder.
_CLIENT_MAX_LINE = 16 * 1024 * 1024

T = TypeVar("T")


class Client(RawClient):
    """A RawClient that records what it received, and reads lines past the cap.

    `errors` keeps every error frame (for the no-`internal` invariant),
    `longest_line` the longest line the server sent, and recv_line() also
    returns the raw line, for byte budgets.
    """

    def __init__(
        self,
        address: tuple[str, int],
        ca_file: Path | None = None,
        *,
        source: str | None = None,
        hostname: str = "localhost",
        context: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            address,
            ca_file,
            hostname,
            context=context,
            source=source,
            rcvbuf=rcvbuf,
            timeout=timeout,
            max_line=_CLIENT_MAX_LINE,
        )
        self._lines: deque[tuple[Frame, bytes]] = deque()
        self.errors: list[Error] = []
        self.longest_line = 0

    def recv_line(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[Frame, bytes]:
        """The next frame and the line it came in (without the newline)."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            for line in self.read_lines(deadline):
                frame = decode_server_line(line)
                self.longest_line = max(self.longest_line, len(line))
                if isinstance(frame, Error):
                    self.errors.append(frame)
                self._lines.append((frame, line))
        return self._lines.popleft()

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame; TimeoutError past the deadline, EOFError when the server closed."""
        return self.recv_line(timeout)[0]


def tcp_socket(source: str | None = None, *, rcvbuf: int | None = None) -> socket.socket:
    """An unconnected IPv4 TCP socket, bound to *source* if given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect(), so the window the peer sees is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    return sock


def silent_socket(address: tuple[str, int], source: str | None = None) -> socket.socket:
    """A plain TCP connection that will never say anything."""
    sock = tcp_socket(source)
    sock.settimeout(DEFAULT_TIMEOUT)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Read until the peer closes *sock* (FIN or reset): what it sent, and after how long."""
    started = time.monotonic()
    deadline = started + timeout
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the server did not close the connection in time")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return bytes(data), time.monotonic() - started
        if not chunk:
            return bytes(data), time.monotonic() - started
        data += chunk


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Wait up to *seconds* for the peer to close *sock*; False if it is still open."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True


def codes(frames: Iterable[Frame]) -> list[str]:
    """The codes of the error frames among *frames*, in order."""
    return [f.code for f in frames if isinstance(f, Error)]


def left_presence(frames: Iterable[Frame], nick: str) -> bool:
    """True if *frames* hold a presence frame saying *nick* left (full list or delta)."""
    return any(isinstance(f, Presence) and f.left == nick for f in frames)


def joined_presence(frame: Frame, room: str, nick: str) -> bool:
    """True if *frame* says *nick* joined *room* (full list or delta)."""
    return (
        isinstance(frame, Presence) and frame.room.lower() == room.lower() and frame.joined == nick
    )


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll *probe* until it returns something other than None (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(interval)


def rss_bytes() -> int:
    """Resident memory of this process (the in-process server included)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def client_hello(hostname: str = "localhost") -> bytes:
    """The bytes of a real TLS ClientHello (made with a memory BIO, sent by hand)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello and hello[0] == 0x16, "not a TLS handshake record"
    return hello


def run_threads(targets: Sequence[Callable[[], None]], timeout: float) -> list[str]:
    """Run each target on its own thread; return the failures (never hang past *timeout*)."""
    failures: list[str] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:  # reported on the test thread
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        failures.append("a client thread did not finish in time")
    return failures


# --- the end-of-case invariants -------------------------------------------------------


class Battery:
    """Makes the clients of one case and checks the invariants every case shares."""

    def __init__(self, ca_file: Path, caplog: pytest.LogCaptureFixture) -> None:
        self.ca_file = ca_file
        self.caplog = caplog
        self.clients: list[Client] = []
        self._probes = 0
        self._lock = threading.Lock()

    def connect(self, server: ChatServer, **kwargs: Any) -> Client:
        """A TLS client of *server* (kwargs as for Client), tracked for the checks."""
        client = Client(server.address, self.ca_file, **kwargs)
        with self._lock:
            self.clients.append(client)
        return client

    def online(
        self,
        server: ChatServer,
        nick: str,
        *,
        source: str | None = None,
        **login: Any,
    ) -> Client:
        """A client logged in as *nick* (registered on first use), its replay read."""
        client = self.connect(server, source=source)
        client.login(nick, **login)
        return client

    def server_records(self) -> list[logging.LogRecord]:
        """What the server's `parley` loggers said during this case."""
        return [r for r in self.caplog.records if r.name.startswith("parley")]

    def wait_for_log(
        self, predicate: Callable[[logging.LogRecord], bool], timeout: float = 5.0
    ) -> logging.LogRecord:
        """The first server log record matching *predicate* (it may be logged a moment later)."""

        def found() -> logging.LogRecord | None:
            return next((r for r in self.server_records() if predicate(r)), None)

        return wait_for(found, timeout, "a server log record")

    def finish(self, server: ChatServer, *, errors_expected: bool = False) -> None:
        """The checks every case ends with.

        1. No client of the case ever received an `internal` error.
        2. The server is up: a fresh client (from an address no case uses)
           registers, logs in and gets its pong.
        3. The server logged no traceback, and nothing at ERROR unless the case
           expects it (a full or read-only disk).
        """
        internal = [
            e.message for c in self.clients for e in c.errors if e.code == ErrorCode.INTERNAL
        ]
        assert internal == [], f"the server answered `internal`: {internal}"
        self._probes += 1
        probe = self.online(server, f"probe{self._probes}", source=PROBE_SOURCE)
        barrier(probe, "alive")
        probe.close()
        tracebacks = [r.getMessage() for r in self.server_records() if r.exc_info]
        assert tracebacks == [], f"tracebacks in the server log: {tracebacks}"
        if not errors_expected:
            errors = [r.getMessage() for r in self.server_records() if r.levelno >= logging.ERROR]
            assert errors == [], f"errors in the server log: {errors}"

    def close_all(self) -> None:
        """Close every client (at teardown, before the servers stop)."""
        for client in self.clients:
            client.close()


# --- filling the database faster than the wire (setup only) ------------------------------


def db_files(server: ChatServer) -> list[Path]:
    """The database file and its WAL and shared-memory companions that exist."""
    path = server.store.database_path
    assert path is not None
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def chattr(paths: Iterable[Path], flag: str) -> None:
    """Run `chattr <flag>` (e.g. "+i", "-i") on *paths*."""
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def chattr_works(directory: Path) -> bool:
    """True if `chattr +i` works on files in *directory* (filesystem and privileges)."""
    probe = directory / ".chattr-probe"
    probe.write_text("x")
    try:
        try:
            chattr([probe], "+i")
        except (OSError, subprocess.CalledProcessError):
            return False
        chattr([probe], "-i")
        return True
    finally:
        probe.unlink(missing_ok=True)


def add_rooms(s: Any, names: Sequence[str], member_ids: Sequence[int] = ()) -> None:
    """Bulk-create rooms (and memberships) inside a store session: setup for big states."""
    now = utcnow()
    s.execute(insert(Room), [{"name": n, "name_key": n.lower(), "created_at": now} for n in names])
    if member_ids:
        keys = [n.lower() for n in names]
        ids = [
            rid
            for chunk in range(0, len(keys), 500)
            for rid in s.scalars(
                select(Room.id).where(Room.name_key.in_(keys[chunk : chunk + 500]))
            )
        ]
        s.execute(
            insert(RoomMember),
            [{"room_id": r, "user_id": u, "joined_at": now} for r in ids for u in member_ids],
        )


def create_account(server: ChatServer, nick: str, password: str = "secret-pw") -> int:
    """An account made in the database, as `python -m parley_chat.server.admin add` does; its id.

    For cases that fill the database for a user: one who has never been online
    has no in-memory state the fill could be out of step with.
    """
    hashed = server.hasher.hash(password)
    record = server.store.submit(
        lambda s: writes.create_user(s, nick=nick, password_hash=hashed, now=utcnow())
    ).result(30)
    return int(record.id)
