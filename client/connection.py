"""ChatClient, the network client library. It owns the TLS
socket and its one I/O thread, turns frames into events (client/events.py) on
a queue.Queue, and keeps the promises of the protocol on the client side:
client message ids, acks, de-duplication, resume with replay, reconnect with
backoff. It imports no GUI; the terminal client, the desktop app and the
benchmarks all drive it the same way.

THE RULE: exactly one thread touches a TLS socket at any time. Python 3.11's
ssl module has no per-socket lock, and a recv in one thread while another
sends corrupts the stream (DESIGN.md section 3). So:
  1. connect() opens the socket, does the handshake and the login on the
     caller's thread, while nothing else can reach the socket, and then hands
     it to a new I/O thread. From then on only that thread uses it; automatic
     reconnects also happen on that thread.
  2. The I/O thread waits (selectors) on the socket and on a wake-up
     socketpair; it reads everything available (including bytes OpenSSL has
     already decrypted, which select() cannot see), turns frames into events,
     and writes queued bytes non-blocking.
  3. Public methods, called from any thread, only encode a frame, append the
     bytes to a deque under a lock, and wake the I/O thread (only when the
     deque goes from empty to non-empty). No lock is ever held across I/O.

Delivery rules (docs/protocol.md):
  - Every send gets a fresh client id and stays in `pending` until an `ack`,
    or a `message` carrying that id as `ref`, proves it was stored. After any
    new login every pending send is sent again with its ORIGINAL id; the server
    stores each id once and answers a resend with the original ack.
  - Live and replayed messages are delivered once: ids strictly increase, and
    ids already delivered are dropped. History and search pages always pass.
  - `last_seen` is the greatest id delivered live or by replay; a re-login
    sends it so the server replays exactly what was missed.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import queue
import random
import selectors
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from parley_chat.protocol import (
    DEFAULT_ROOM,
    MAX_TEXT_CHARS,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Bye,
    Conversations,
    Error,
    ErrorCode,
    Frame,
    Hello,
    History,
    Join,
    Keys,
    Leave,
    LineDecoder,
    Link,
    ListConversations,
    ListRooms,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    Presence,
    Read,
    RemoteProtocolError,
    RoomList,
    Search,
    Send,
    StreamError,
    Welcome,
    Who,
    decode_server_line,
    encode,
    fold,
    valid_nick,
)
from parley_chat.transport import PeerClosed, StreamClosed, TLSStream

from .errors import (
    CertificateExpired,
    CertificateNotTrusted,
    ClientError,
    ConnectionLost,
    HostnameMismatch,
    LoginRefused,
    ServerUnreachable,
    TLSVerificationFailed,
)
from .events import (
    Acked,
    BatchEnded,
    BatchStarted,
    ClientEvent,
    Connected,
    ConversationsListed,
    ConversationSummary,
    Disconnected,
    MessageReceived,
    PresenceChanged,
    ReadMoved,
    Reconnecting,
    RoomJoined,
    RoomLeft,
    RoomsListed,
    ServerError,
)
from .moderation import event_for as _moderation_event
from .moderation import request as _moderation_request
from .tls import client_context, fingerprint_sha256, probe_server_certificate

log = logging.getLogger("parley.client")

_READ_CHUNK = 64 * 1024
# Bytes read per loop turn before writes get their turn; the loop comes
# straight back for the rest (TLSStream.has_buffered).
_READ_BUDGET = 4 * 1024 * 1024
# Delivered ids remembered for de-duplication; older ones fold into a floor.
_SEEN_IDS_KEPT = 10_000
# A send the server could not store (store-failed) is tried again after this.
_STORE_RETRY_DELAY = 5.0
# close() always leaves the bye this long to go out, even past its deadline.
_BYE_GRACE = 0.5
# OpenSSL verify codes for a certificate that is valid but names another host/IP.
_NAME_MISMATCH_CODES = frozenset({62, 64})
#: X509_V_ERR_CERT_NOT_YET_VALID (9) and X509_V_ERR_CERT_HAS_EXPIRED (10).
_EXPIRED_CODES = frozenset({9, 10})
# Server error codes that announce the server is about to close the connection.
_CLOSING_CODES = frozenset(
    {
        ErrorCode.SHUTDOWN,
        ErrorCode.TIMEOUT,
        ErrorCode.FLOOD,
        ErrorCode.LINE_TOO_LONG,
        ErrorCode.TOO_MANY_CONNECTIONS,
        ErrorCode.DISCONNECTED,
    }
)


def backoff_delay(attempt: int, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds to wait before reconnect *attempt* (1, 2, ...): exponential, capped, jittered.

    The ceiling doubles from *base* up to *cap*; the delay is a random point in
    its upper half, so clients dropped together (a server restart) do not all
    come back in the same instant, yet none waits much less than the schedule.
    """
    ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
    r = random.random() if rand is None else rand
    return ceiling * (0.5 + 0.5 * r)


class _Dropped(Exception):
    """The current link ended (I/O thread internal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SeenIds:
    """Ids already delivered, for de-duplication, in bounded memory.

    Ids at or below `floor` count as seen: the initial floor is the `last_seen`
    a session started from, and the oldest remembered ids fold into it when
    more than *keep* are held.
    """

    def __init__(self, floor: int = 0, keep: int = _SEEN_IDS_KEPT) -> None:
        self.floor = floor
        self._keep = keep
        self._ids: set[int] = set()
        self._heap: list[int] = []

    def add(self, message_id: int) -> bool:
        """Record *message_id*; False if it was already delivered."""
        if message_id <= self.floor or message_id in self._ids:
            return False
        self._ids.add(message_id)
        heapq.heappush(self._heap, message_id)
        while len(self._heap) > self._keep:
            oldest = heapq.heappop(self._heap)
            self._ids.discard(oldest)
            self.floor = max(self.floor, oldest)
        return True


@dataclass(slots=True)
class _OpenBatch:
    kind: str
    tag: str | None
    target: str | None


class _Link:
    """One established TLS connection. Used by one thread at a time: the thread
    that logs in, then the I/O thread it is handed to."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.tls_version = sock.version() or "unknown"
        self.fingerprint = fingerprint_sha256(sock.getpeercert(binary_form=True) or b"")
        self.decoder = LineDecoder()
        self.frames: deque[Frame] = deque()
        # Created when the link goes non-blocking (after the login handshake).
        self.stream: TLSStream | None = None
        self.last_rx = time.monotonic()
        self.ping_sent_at: float | None = None
        self.ping_count = 0
        self.closing = False
        self.closing_deadline = 0.0
        self.drop_reason: str | None = None

    def feed(self, data: bytes) -> None:
        """Decode received bytes into frames. Unknown or malformed frames are skipped
        (a newer server may send more); a line over the cap ends the link."""
        try:
            lines = self.decoder.feed(data)
        except StreamError as exc:
            raise _Dropped(f"the server sent an oversized line ({exc.message})") from exc
        for line in lines:
            try:
                self.frames.append(decode_server_line(line))
            except RemoteProtocolError as exc:
                log.warning("ignoring a frame from the server: %s", exc)

    def close(self) -> None:
        """Close the socket (no close_notify wait: it could block)."""
        try:
            self.sock.close()
        except OSError:
            pass


#: The text shown for an encrypted message that cannot be read here.
E2E_PLACEHOLDER = "[end-to-end encrypted]"


class E2EHooks(Protocol):
    """What ChatClient asks of end-to-end encryption (client/e2e/session.E2ESession).

    All of them run on the I/O thread and must not block on the network.
    """

    def open(self, m: Message) -> tuple[Message, str | None]:
        """The message decrypted (text = plaintext, e2e None), and None or why it could not be."""

    def on_frame(self, frame: Keys | Link) -> None:
        """A key directory answer or a link frame arrived."""

    def on_error(self, frame: Error) -> None:
        """An error frame arrived (a refused keys_put or link)."""

    def preview(self, message_id: int) -> str | None:
        """This device's decrypted text of message *message_id*, if it has it."""


class ChatClient:
    """A parley client connection with automatic reconnect. Thread-safe API; events on `events`.

    Construct, call connect() (blocking; raises ServerUnreachable,
    CertificateNotTrusted, HostnameMismatch, LoginRefused, ConnectionLost), then
    read `events` from any one consumer thread. Requests (send_text, join, ...)
    may be called from any thread and never block. close() ends gracefully.

    Trust: exactly one of *ca_file* (the server's CA) or *pinned_cert_pem* (a
    server certificate pinned on first use). Credentials: *password* and/or a
    resume *token* from an earlier login; the token is tried first, and the
    password if the server no longer accepts the token.

    Sends made while disconnected are kept in `pending` and sent after the next
    login. Other requests made while disconnected are sent after the next login
    too; requests in flight when a connection breaks may be lost (only sends
    are guaranteed).

    *server_hostname* overrides the name the certificate must carry (default:
    *host*). *reconnect_base* / *reconnect_cap* shape the reconnect backoff;
    the client pings a server that has been silent for *ping_interval* seconds
    and drops the connection (then reconnects) if nothing arrives within
    *ping_timeout* after that.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        nick: str,
        password: str | None = None,
        ca_file: Path | str | None = None,
        pinned_cert_pem: str | None = None,
        register: bool = False,
        token: str | None = None,
        last_seen: int | None = None,
        auto_reconnect: bool = True,
        client_name: str = "parley-lib",
        connect_timeout: float = 10.0,
        server_hostname: str | None = None,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
        ping_interval: float = 30.0,
        ping_timeout: float = 30.0,
    ) -> None:
        if not valid_nick(nick):
            raise ValueError(f"bad nick {nick!r}: 1 to 24 letters, digits, '_' or '-'")
        if password is None and token is None:
            raise ValueError("give a password or a resume token")
        if password is not None and not password:
            raise ValueError("the password is empty")
        self._ctx = client_context(ca_file, pinned_cert_pem)
        self.host = host
        self.port = port
        self._server_hostname = server_hostname or host
        self._requested_nick = nick
        self._password = password
        self._register = register
        self._auto_reconnect = auto_reconnect
        self._client_name = client_name
        self._connect_timeout = connect_timeout
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout

        #: Everything that happens, in order. Consume it from one thread.
        self.events: queue.Queue[ClientEvent] = queue.Queue()

        # Session state, written by the thread that owns the link (connect()'s
        # caller before the I/O thread starts, then the I/O thread); read anywhere.
        self._token = token
        self._nick = nick
        self._last_seen = last_seen
        self._seen = SeenIds(last_seen or 0)
        self._tls_version: str | None = None
        self._fingerprint: str | None = None
        self._max_text = MAX_TEXT_CHARS
        self._flood_rate: float | None = None
        self._flood_burst: int | None = None
        self._conversation_pages: list[ConversationSummary] = []
        self._batch: _OpenBatch | None = None
        self._acked_max = 0  # greatest message id the server acked to us
        self._retry_at: dict[str, float] = {}  # I/O thread only

        # Shared between threads, under _lock.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # pending shrank, or the I/O thread ended
        self._pending: dict[str, Send] = {}  # insertion order = send order
        self._out: deque[bytes] = deque()  # for the live link
        self._deferred: list[bytes] = []  # requests made while no link was live
        self._live = False
        self._rooms: dict[str, str] = {}  # fold(room) -> room name
        # Who is online per room, kept from the server's full lists and deltas
        # (I/O thread only): fold(room) -> {fold(nick): nick}.
        self._online: dict[str, dict[str, str]] = {}
        self._online_pages: dict[str, list[str]] = {}  # a paged list being received
        self._room_pages: list[tuple[str, int, bool]] = []  # a paged `rooms` answer

        self._stop = threading.Event()
        self._close_reason = "bye"
        self._close_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._link: _Link | None = None
        #: End-to-end encryption (client/e2e/session.py), when attached.
        self._e2e: E2EHooks | None = None

    # --- properties ------------------------------------------------------------------

    @property
    def nick(self) -> str:
        """The nick, in the account's spelling once logged in."""
        return self._nick

    @property
    def token(self) -> str | None:
        """The latest resume token (every welcome brings a new one)."""
        return self._token

    @property
    def last_seen(self) -> int | None:
        """Id of the last message delivered live or in a replay (not history/search)."""
        return self._last_seen

    @property
    def pending(self) -> dict[str, Send]:
        """A copy of the unacked sends: client id -> Send frame, oldest first."""
        with self._lock:
            return dict(self._pending)

    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        return self._live

    @property
    def tls_version(self) -> str | None:
        """The TLS version of the current (or last) connection, e.g. "TLSv1.3"."""
        return self._tls_version

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 of the server certificate of the current (or last) connection."""
        return self._fingerprint

    @property
    def joined_rooms(self) -> tuple[str, ...]:
        """The rooms this user is a member of, as the server spells them."""
        with self._lock:
            return tuple(self._rooms.values())

    @property
    def max_text(self) -> int:
        """The longest message text the server accepts (announced in welcome)."""
        return self._max_text

    @property
    def flood_rate(self) -> float | None:
        """Frames per second the server lets this connection send (from welcome), or None."""
        return self._flood_rate

    @property
    def flood_burst(self) -> int | None:
        """Frames the server takes at once before the rate applies (from welcome), or None."""
        return self._flood_burst

    # --- connecting --------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, verify the server, log in, and start the I/O thread. Blocking.

        Emits Connected; the replay batch that follows is delivered as events by
        the I/O thread. Raises ServerUnreachable, CertificateNotTrusted,
        HostnameMismatch, LoginRefused or ConnectionLost; nothing is retried here.
        """
        if self._thread is not None and self._thread.is_alive():
            raise ClientError("already connected; close() or rejoin() first")
        self._stop.clear()
        # The wake-up pair must exist before the link goes live: from then on
        # other threads may queue bytes and wake the I/O thread.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        try:
            link, welcome, resumed = self._login()
        except BaseException:
            self._close_wake_pair(self._wake_r, self._wake_w)
            raise
        self._activate(link, welcome, resumed)
        self._thread = threading.Thread(
            target=self._run,
            args=(link, self._wake_r, self._wake_w),
            name=f"parley-client-{self._nick}",
            daemon=True,
        )
        self._thread.start()

    def rejoin(self, timeout: float = 5.0) -> None:
        """End the current connection (if any) and log in again with the resume token
        and last_seen, so the server replays exactly what was missed. Blocking; raises
        like connect(). Pending sends are sent again after the login."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop_thread("rejoin", time.monotonic() + timeout)
            if thread.is_alive():
                raise ClientError("the previous connection did not end in time")
        self.connect()

    def close(self, reason: str = "bye", timeout: float = 5.0) -> bool:
        """End gracefully: wait (until *timeout*) for pending sends to be acked and their
        own copies to come back, send `bye`, wait for the server to close, stop the I/O
        thread. No reconnect follows.

        Returns True when nothing sent was left unacked.
        """
        deadline = time.monotonic() + timeout
        thread = self._thread
        if thread is not None and thread.is_alive():
            with self._changed:
                # Also wait for the echoes of acked sends. Our server sends the
                # echo before the ack, so this wait ends at once there; it keeps
                # a bye from cutting an echo off with a server that does not.
                while (self._pending or self._echo_missing()) and thread.is_alive():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
            self._stop_thread(reason, deadline)
        with self._lock:
            return not self._pending

    def _echo_missing(self) -> bool:
        return self._acked_max > (self._last_seen or 0)

    def __enter__(self) -> ChatClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- requests (any thread, never block) ----------------------------------------------

    def send_text(self, text: str, room: str | None = None, to: str | None = None) -> str:
        """Post *text* to *room* (default #lobby) or privately *to* a nick. Returns its client id.

        The send stays in `pending` until the server acks it; an Acked event
        follows. Raises LocalProtocolError for text or names the protocol refuses.
        """
        if room is None and to is None:
            room = DEFAULT_ROOM
        if len(text) > self._max_text:
            raise LocalProtocolError(
                ErrorCode.TEXT_TOO_LONG, f"message text is over {self._max_text} characters"
            )
        client_id = uuid.uuid4().hex
        frame = Send(id=client_id, text=text, room=room, to=to)
        data = encode(frame)
        with self._lock:
            self._pending[client_id] = frame
            # While no link is live the send waits in pending; the next login sends it.
            wake = self._live and self._append_locked(data)
        if wake:
            self._wake()
        return client_id

    def send_envelope(self, to: str, envelope: str) -> str:
        """Post an end-to-end encrypted private message (its envelope) *to* a nick.

        Like send_text (pending until acked); client/e2e/session.py builds the envelope.
        """
        client_id = uuid.uuid4().hex
        frame = Send(id=client_id, text="", to=to, e2e=envelope)
        data = encode(frame)
        with self._lock:
            self._pending[client_id] = frame
            wake = self._live and self._append_locked(data)
        if wake:
            self._wake()
        return client_id

    def request(self, frame: Frame) -> None:
        """Send any client frame (sent after the next login while disconnected)."""
        self._request(frame)

    @property
    def e2e(self) -> E2EHooks | None:
        """The attached end-to-end encryption (client/e2e/session.E2ESession), or None."""
        return self._e2e

    def attach_e2e(self, hooks: E2EHooks | None) -> None:
        """Let *hooks* open encrypted messages and see key and link frames (None: detach)."""
        self._e2e = hooks

    def emit(self, event: object) -> None:
        """Put an event of an extension (such as end-to-end encryption) on `events`."""
        self.events.put(event)  # type: ignore[arg-type]

    def join(self, room: str) -> None:
        """Join (creating it if new) *room*; RoomJoined follows."""
        self._request(Join(room=room))

    def leave(self, room: str) -> None:
        """Leave *room*; RoomLeft follows (#lobby cannot be left: ServerError)."""
        self._request(Leave(room=room))

    def who(self, room: str | None = None, tag: str | None = None) -> None:
        """Ask who is online in *room* (default #lobby); PresenceChanged with *tag* follows."""
        self._request(Who(room=room, tag=tag))

    def rooms(self, tag: str | None = None) -> None:
        """Ask for every room with its member count; RoomsListed follows."""
        self._request(ListRooms(tag=tag))

    def history(
        self,
        room: str | None = None,
        with_: str | None = None,
        before: int | None = None,
        limit: int = 50,
        tag: str | None = None,
        around: int | None = None,
    ) -> None:
        """Ask for a page of older messages of *room* (default #lobby) or of the private
        conversation *with_* a nick, before message id *before*; a history batch follows.

        With *around* (a message id; not with *before*) the page is up to *limit*
        messages centred on that message, itself included: a search hit in context.
        Raises LocalProtocolError when both are given.
        """
        if room is None and with_ is None:
            room = DEFAULT_ROOM
        self._request(
            History(room=room, with_=with_, before=before, limit=limit, tag=tag, around=around)
        )

    def conversations(self, tag: str | None = None) -> None:
        """Ask for the user's conversations again; ConversationsListed (with *tag*) follows."""
        self._request(ListConversations(tag=tag))

    def mark_read(self, kind: str, name: str, message_id: int) -> None:
        """Tell the server the user has read conversation *name* up to *message_id*.

        *kind* is "room" (name is the room) or "private" (name is the peer's nick).
        The server keeps the marker (it never moves back) and tells the user's
        other connections (ReadMoved). Raises ValueError for an unknown kind.
        """
        if kind == "room":
            frame = Read(id=message_id, room=name)
        elif kind == "private":
            frame = Read(id=message_id, with_=name)
        else:
            raise ValueError(f"conversation kind is 'room' or 'private', not {kind!r}")
        self._request(frame)

    def search(
        self, words: str, before: int | None = None, limit: int = 50, tag: str | None = None
    ) -> None:
        """Search the messages this user may see; a search batch (newest first) follows."""
        self._request(Search(words=words, before=before, limit=limit, tag=tag))

    def moderate(
        self,
        action: str,
        *,
        room: str | None = None,
        nick: str | None = None,
        message_id: int | None = None,
        text: str | None = None,
        reason: str | None = None,
        minutes: int | None = None,
    ) -> str:
        """Ask for a moderation action (protocol/moderation.py ACTION_FIELDS); returns its ref.

        ModerationDone with that ref follows on success, ServerError with it on
        refusal (not-permitted, no-such-message, ...). Raises LocalProtocolError
        for a request the protocol refuses (unknown action, missing field).
        """
        frame = _moderation_request(
            action,
            room=room,
            nick=nick,
            message_id=message_id,
            text=text,
            reason=reason,
            minutes=minutes,
        )
        self._request(frame)
        assert frame.ref is not None
        return frame.ref

    def delete_message(self, message_id: int, reason: str | None = None) -> str:
        """Delete a message (one's own, or any in a room one moderates); returns the ref."""
        return self.moderate("delete", message_id=message_id, reason=reason)

    def edit_message(self, message_id: int, text: str) -> str:
        """Replace the text of one's own message; returns the ref."""
        return self.moderate("edit", message_id=message_id, text=text)

    def ping(self) -> None:
        """Ping the server now (only when connected)."""
        data = encode(Ping(token=f"user-{time.monotonic():.3f}"))
        with self._lock:
            wake = self._live and self._append_locked(data)
        if wake:
            self._wake()

    def _request(self, frame: Frame) -> None:
        data = encode(frame)
        with self._lock:
            if self._live:
                wake = self._append_locked(data)
            else:
                self._deferred.append(data)
                wake = False
        if wake:
            self._wake()

    def _append_locked(self, data: bytes) -> bool:
        was_empty = not self._out
        self._out.append(data)
        # Wake only when the I/O thread may be asleep with nothing to write,
        # and never from the I/O thread itself (it flushes on its next turn).
        thread = self._thread
        return was_empty and (thread is None or threading.get_ident() != thread.ident)

    def _wake(self) -> None:
        w = self._wake_w
        if w is None:
            return
        try:
            w.send(b"\0")
        except OSError:
            pass  # a wake-up byte is already waiting, or the pair is closed

    # --- login (on the thread that owns the new link) ------------------------------------

    def _login(self) -> tuple[_Link, Welcome, bool]:
        if self._token is not None:
            try:
                link, welcome = self._attempt(token=self._token)
                return link, welcome, True
            except LoginRefused as exc:
                if exc.code != ErrorCode.BAD_TOKEN or self._password is None:
                    raise
                log.info("the server refused the resume token; logging in with the password")
                self._token = None
        link, welcome = self._attempt(password=self._password)
        return link, welcome, False

    def _attempt(
        self, *, token: str | None = None, password: str | None = None
    ) -> tuple[_Link, Welcome]:
        hello = Hello(
            version=PROTOCOL_VERSION,
            nick=self._requested_nick,
            password=password,
            token=token,
            register=self._register and password is not None,
            last_seen=self._last_seen,
            client=self._client_name,
        )
        deadline = time.monotonic() + self._connect_timeout
        link = _Link(self._open_tls())
        try:
            link.sock.settimeout(max(0.01, deadline - time.monotonic()))
            link.sock.sendall(encode(hello))
            welcome = self._await_welcome(link, deadline)
            link.sock.setblocking(False)
            link.stream = TLSStream(link.sock)
        except TimeoutError as exc:
            link.close()
            raise ConnectionLost(
                f"no answer to the login from {self.host}:{self.port} "
                f"within {self._connect_timeout:.0f} s"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            link.close()
            raise ConnectionLost(f"the connection broke during the login: {exc}") from exc
        except BaseException:
            link.close()
            raise
        return link, welcome

    def _open_tls(self) -> ssl.SSLSocket:
        where = f"{self.host}:{self.port}"
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        except socket.gaierror as exc:
            raise ServerUnreachable(f"cannot resolve {self.host}: {exc.strerror}") from exc
        except TimeoutError as exc:
            raise ServerUnreachable(
                f"no answer from {where} within {self._connect_timeout:.0f} s"
            ) from exc
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to {where}: {exc.strerror or exc}") from exc
        # Small chat frames must not wait for Nagle and delayed ACKs (DESIGN.md section 3).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            # The handshake (certificate and host name check included) runs here,
            # bounded as a whole by the socket's timeout.
            return self._ctx.wrap_socket(raw, server_hostname=self._server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            fingerprint, anchor = self._probe_fingerprints()
            # Plain words, not OpenSSL's: the cause stays chained for the log.
            if exc.verify_code in _NAME_MISMATCH_CODES:
                raise HostnameMismatch(
                    f"the certificate of {where} is not valid for the name "
                    f"{self._server_hostname!r}; nothing was sent",
                    fingerprint,
                    anchor,
                ) from exc
            if exc.verify_code in _EXPIRED_CODES:
                raise CertificateExpired(
                    f"the certificate of {where} has expired (or is not valid yet); nothing "
                    "was sent: the operator renews it with `parley-certs --renew`",
                    fingerprint,
                    anchor,
                ) from exc
            raise CertificateNotTrusted(
                f"the certificate of {where} is not trusted: it is not signed by the CA "
                "this client trusts; nothing was sent",
                fingerprint,
                anchor,
            ) from exc
        except TimeoutError as exc:
            raw.close()
            raise ServerUnreachable(f"no TLS handshake with {where} in time") from exc
        except ssl.SSLError as exc:
            raw.close()
            raise ConnectionLost(
                f"the TLS handshake with {where} failed: {exc.reason or exc}"
            ) from exc
        except OSError as exc:
            raw.close()
            raise ConnectionLost(
                f"the connection to {where} broke during the handshake: {exc}"
            ) from exc

    def _probe_fingerprints(self) -> tuple[str | None, str | None]:
        # Only to show a person which certificates were offered; never trusted.
        # (the server's certificate, and what trust on first use would pin)
        try:
            probed = probe_server_certificate(
                self.host, self.port, timeout=min(5.0, self._connect_timeout)
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.info("could not fetch the offered certificate: %s", exc)
            return None, None
        return probed.fingerprint, probed.anchor_fingerprint

    def _await_welcome(self, link: _Link, deadline: float) -> Welcome:
        # Blocking reads on the login thread; frames after the welcome (the
        # replay batch) stay in link.frames for the I/O thread.
        while True:
            while link.frames:
                frame = link.frames.popleft()
                if isinstance(frame, Welcome):
                    return frame
                if isinstance(frame, Error):
                    raise LoginRefused(frame.code, frame.message)
                if isinstance(frame, Ping):
                    link.sock.sendall(encode(Pong(token=frame.token)))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no welcome in time")
            link.sock.settimeout(remaining)
            data = link.sock.recv(_READ_CHUNK)
            if not data:
                raise ConnectionLost("the server closed the connection during the login")
            try:
                link.feed(data)
            except _Dropped as exc:
                raise ConnectionLost(exc.reason) from exc

    def _activate(self, link: _Link, welcome: Welcome, resumed: bool) -> None:
        """The link is logged in: adopt the session, queue the resends, emit Connected."""
        self._token = welcome.token
        self._nick = welcome.nick
        self._max_text = welcome.max_text or MAX_TEXT_CHARS
        flood = welcome.flood or {}
        self._flood_rate = flood.get("rate")
        self._flood_burst = flood.get("burst")
        self._conversation_pages = []
        self._tls_version = link.tls_version
        self._fingerprint = link.fingerprint
        self._batch = None
        self._retry_at.clear()
        self._link = link
        with self._lock:
            self._rooms = {fold(r): r for r in welcome.rooms}
            self._online, self._online_pages, self._room_pages = {}, {}, []
            # Resends first, in their original order and with their original ids,
            # then requests made while offline. Flipping _live under the same lock
            # keeps any send_text racing with this in order behind them.
            self._out.clear()
            self._out.extend(encode(frame) for frame in self._pending.values())
            self._out.extend(self._deferred)
            self._deferred.clear()
            self._live = True
        if self._pending:
            log.info("re-sending %d unacked message(s)", len(self._pending))
        self._emit(
            Connected(
                nick=welcome.nick,
                rooms=tuple(welcome.rooms),
                server=welcome.server,
                created=welcome.created,
                resumed=resumed,
                tls_version=link.tls_version,
                fingerprint=link.fingerprint,
            )
        )

    # --- the I/O thread --------------------------------------------------------------------

    def _run(self, link: _Link, wake_r: socket.socket, wake_w: socket.socket) -> None:
        current: _Link | None = link
        try:
            while current is not None:
                reason, by_user = self._serve(current, wake_r)
                with self._lock:
                    self._live = False
                current.close()
                self._link = None
                if by_user:
                    self._emit(Disconnected(reason, will_retry=False, by_user=True))
                    break
                retry = self._auto_reconnect and not self._stop.is_set()
                if (current.drop_reason or "").startswith(ErrorCode.DISCONNECTED):
                    retry = False  # an operator put this user out: coming back at once defeats it
                self._emit(Disconnected(reason, will_retry=retry))
                if not retry:
                    break
                current = self._reconnect()
                if current is None and self._stop.is_set():
                    self._emit(Disconnected("closed", will_retry=False, by_user=True))
        except Exception as exc:  # a bug here must not vanish silently
            log.exception("the client's I/O thread failed")
            with self._lock:
                self._live = False
            self._emit(Disconnected(f"internal client error: {exc}", will_retry=False))
        finally:
            self._close_wake_pair(wake_r, wake_w)
            with self._changed:
                self._changed.notify_all()

    def _serve(self, link: _Link, wake_r: socket.socket) -> tuple[str, bool]:
        """Run one link until it ends. Returns (reason, ended_by_user)."""
        sock = link.sock
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ)
        sel.register(sock, selectors.EVENT_READ)
        registered = selectors.EVENT_READ
        try:
            while True:
                try:
                    try:
                        self._read(link)
                    finally:
                        # Frames that arrived before an EOF still count (the
                        # server's last words: an error, the echo of a send).
                        self._process(link)
                    now = time.monotonic()
                    if self._stop.is_set() and not link.closing:
                        # Graceful end: bye, then wait for the server to hang up.
                        link.closing = True
                        link.closing_deadline = max(self._close_deadline, now + _BYE_GRACE)
                        self._enqueue(Bye(reason=self._close_reason))
                    if link.closing and now >= link.closing_deadline:
                        return "closed", True
                    self._timers(link, now)
                    self._flush(link)
                except _Dropped as exc:
                    if link.closing:
                        return "closed", True
                    return link.drop_reason or exc.reason, False
                want = selectors.EVENT_READ
                assert link.stream is not None
                if link.stream.wants_write or self._out:
                    want |= selectors.EVENT_WRITE
                if want != registered:
                    sel.modify(sock, want)
                    registered = want
                # Bytes OpenSSL already decrypted are invisible to select().
                # Bytes OpenSSL already decrypted are invisible to select().
                buffered = link.stream.has_buffered or sock.pending()
                timeout = 0.0 if buffered else self._next_timeout(link, time.monotonic())
                for key, _mask in sel.select(timeout):
                    if key.fileobj is wake_r:
                        _drain(wake_r)
        finally:
            sel.close()

    def _read(self, link: _Link) -> None:
        assert link.stream is not None
        try:
            data = link.stream.read(_READ_BUDGET)
        except PeerClosed as exc:
            raise _Dropped("the server closed the connection") from exc
        except StreamClosed as exc:
            raise _Dropped(exc.reason) from exc
        if data:
            link.last_rx = time.monotonic()
            link.ping_sent_at = None
            link.feed(data)

    def _flush(self, link: _Link) -> None:
        stream = link.stream
        assert stream is not None
        with self._lock:
            if self._out:
                stream.queue_many(list(self._out))
                self._out.clear()
        try:
            stream.flush()
        except StreamClosed as exc:
            raise _Dropped(exc.reason) from exc

    def _enqueue(self, frame: Frame) -> None:
        # From the I/O thread: no wake needed, the loop flushes next.
        with self._lock:
            self._out.append(encode(frame))

    def _timers(self, link: _Link, now: float) -> None:
        if not link.closing:
            if link.ping_sent_at is None:
                if now - link.last_rx >= self._ping_interval:
                    link.ping_count += 1
                    link.ping_sent_at = now
                    self._enqueue(Ping(token=f"c{link.ping_count}"))
            elif now - link.ping_sent_at >= self._ping_timeout:
                raise _Dropped(
                    f"the server stopped answering (nothing for {now - link.last_rx:.0f} s)"
                )
        for client_id, due in list(self._retry_at.items()):
            if due <= now:
                del self._retry_at[client_id]
                with self._lock:
                    frame = self._pending.get(client_id)
                    if frame is not None:
                        self._out.append(encode(frame))

    def _next_timeout(self, link: _Link, now: float) -> float:
        if link.ping_sent_at is None:
            deadlines = [link.last_rx + self._ping_interval]
        else:
            deadlines = [link.ping_sent_at + self._ping_timeout]
        if link.closing:
            deadlines.append(link.closing_deadline)
        deadlines.extend(self._retry_at.values())
        return max(0.0, min(deadlines) - now)

    def _reconnect(self) -> _Link | None:
        """Log in again with backoff until it works, the user stops us, or the server
        refuses the credentials. Returns the new link, or None."""
        attempt = 0
        while True:
            attempt += 1
            delay = backoff_delay(attempt, self._reconnect_base, self._reconnect_cap)
            self._emit(Reconnecting(attempt, delay))
            if self._stop.wait(delay):
                return None
            try:
                link, welcome, resumed = self._login()
            except LoginRefused as exc:
                if exc.transient:
                    log.info("reconnect attempt %d: %s", attempt, exc)
                    continue
                self._emit(ServerError(exc.code, exc.message))
                self._emit(Disconnected(f"login refused: {exc}", will_retry=False))
                return None
            except TLSVerificationFailed as exc:
                # The server's identity changed: never retried silently.
                self._emit(Disconnected(str(exc), will_retry=False))
                return None
            except (ServerUnreachable, ConnectionLost) as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                continue
            if self._stop.is_set():
                link.close()
                return None
            self._activate(link, welcome, resumed)
            return link

    def _stop_thread(self, reason: str, deadline: float) -> None:
        self._close_reason = reason[:200] or "bye"
        self._close_deadline = deadline
        self._stop.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()) + _BYE_GRACE + 0.5)

    @staticmethod
    def _close_wake_pair(*socks: socket.socket | None) -> None:
        for s in socks:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    # --- frames -> events (I/O thread) -----------------------------------------------------

    def _emit(self, event: ClientEvent) -> None:
        self.events.put(event)

    def _process(self, link: _Link) -> None:
        while link.frames:
            self._handle(link, link.frames.popleft())

    def _handle(self, link: _Link, frame: Frame) -> None:
        """Turn one server frame into state changes and events."""
        if isinstance(frame, Message):
            self._on_message(frame)
        elif isinstance(frame, Ack):
            if frame.id > self._acked_max and not frame.duplicate:
                self._acked_max = frame.id
            self._resolve(frame.ref, frame.id, frame.ts, frame.duplicate)
        elif isinstance(frame, Batch):
            self._on_batch(frame)
        elif isinstance(frame, Presence):
            self._on_presence(frame)
        elif isinstance(frame, RoomList):
            self._room_pages.extend(
                (str(r.get("name", "")), int(r.get("members", 0)), bool(r.get("joined")))
                for r in frame.rooms
            )
            if not frame.more:  # a paged list is shown once, whole
                rooms, self._room_pages = tuple(self._room_pages), []
                self._emit(RoomsListed(rooms=rooms, tag=frame.tag))
        elif isinstance(frame, Conversations):
            self._conversation_pages.extend(_summary(item, self._e2e) for item in frame.items)
            if not frame.more:  # a paged list is shown once, whole
                items, self._conversation_pages = tuple(self._conversation_pages), []
                self._emit(ConversationsListed(items=items, tag=frame.tag))
        elif isinstance(frame, Read):
            if frame.room is not None:
                self._emit(ReadMoved("room", frame.room, frame.id))
            elif frame.with_ is not None:
                self._emit(ReadMoved("private", frame.with_, frame.id))
        elif isinstance(frame, Error):
            self._on_error(link, frame)
        elif isinstance(frame, Keys | Link):
            hooks = self._e2e
            if hooks is not None:
                try:
                    hooks.on_frame(frame)
                except Exception:  # a bug there must not end the I/O thread
                    log.exception("end-to-end encryption failed on a %s frame", frame.TYPE)
        elif isinstance(frame, Ping):
            self._enqueue(Pong(token=frame.token))
        elif isinstance(frame, Pong):
            pass  # any frame already counted as a sign of life
        elif (event := _moderation_event(frame)) is not None:
            self._emit(event)
        else:
            log.warning("unexpected %s frame from the server, ignored", frame.TYPE)

    def _on_message(self, m: Message) -> None:
        if m.ref is not None:
            # Our own message came back: it is stored, even if its ack was lost.
            self._resolve(m.ref, m.id, m.ts, False)
        batch = self._batch
        if batch is not None and batch.kind in ("history", "search"):
            # Asked for by the user: always shown, and they do not move last_seen.
            self._emit(self._received(m, batch.kind, batch.tag))
            return
        if not self._seen.add(m.id):
            return
        if self._last_seen is None or m.id > self._last_seen:
            with self._changed:
                self._last_seen = m.id
                self._changed.notify_all()  # close() may wait for this echo
        if batch is None:
            self._emit(self._received(m, None, None))
        else:
            self._emit(self._received(m, batch.kind, batch.tag))

    def _received(self, m: Message, batch: str | None, tag: str | None) -> MessageReceived:
        if m.e2e is None:
            return MessageReceived(m, batch, tag)
        hooks = self._e2e
        if hooks is None:
            shown = dataclasses.replace(m, text=E2E_PLACEHOLDER, e2e=None)
            return MessageReceived(shown, batch, tag, True, "end-to-end encryption is off here")
        try:
            opened, error = hooks.open(m)
        except Exception:  # a bug there must not end the I/O thread
            log.exception("could not open an encrypted message")
            opened = dataclasses.replace(m, text=E2E_PLACEHOLDER, e2e=None)
            error = "this client failed to decrypt it"
        return MessageReceived(opened, batch, tag, True, error)

    def _resolve(self, client_id: str, message_id: int, ts: str, duplicate: bool) -> None:
        with self._changed:
            frame = self._pending.pop(client_id, None)
            if frame is not None:
                self._changed.notify_all()
        self._retry_at.pop(client_id, None)
        if frame is not None:
            self._emit(Acked(client_id, message_id, ts, duplicate))

    def _on_batch(self, f: Batch) -> None:
        if f.state == "open":
            if f.kind == "replay" and not f.gap and self._last_seen is None:
                # A complete replay (nothing left out) when this client had seen
                # nothing: whatever follows is new, so a later rejoin asks for
                # everything after it, even if the replay turns out empty.
                with self._lock:
                    self._last_seen = 0
            self._batch = _OpenBatch(f.kind, f.tag, f.target)
            self._emit(BatchStarted(f.kind, f.tag, f.target, f.gap))
        else:
            self._batch = None
            self._emit(BatchEnded(f.kind, f.tag, f.target, f.more, f.count or 0))

    def _on_presence(self, f: Presence) -> None:
        me = fold(self._nick)
        key = fold(f.room)
        if f.joined is not None and fold(f.joined) == me:
            with self._lock:
                new = key not in self._rooms
                self._rooms[key] = f.room
            if new:
                self._emit(RoomJoined(f.room))
        if f.left is not None and fold(f.left) == me:
            with self._lock:
                gone = self._rooms.pop(key, None) is not None
            if gone:
                self._emit(RoomLeft(f.room))
        if f.online is not None:
            # A full list (at login, or the answer to who), maybe in pages.
            pages = self._online_pages.setdefault(key, [])
            pages.extend(f.online)
            if f.more:
                return
            del self._online_pages[key]
            self._online[key] = {fold(n): n for n in pages}
        else:
            # A delta: one user came online in the room, or left it.
            members = self._online.setdefault(key, {})
            if f.joined is not None:
                members[fold(f.joined)] = f.joined
            if f.left is not None:
                members.pop(fold(f.left), None)
            if f.left is not None and fold(f.left) == me:
                self._online.pop(key, None)
        online = tuple(sorted(self._online.get(key, {}).values(), key=fold))
        self._emit(
            PresenceChanged(room=f.room, online=online, joined=f.joined, left=f.left, tag=f.tag)
        )

    def _on_error(self, link: _Link, f: Error) -> None:
        if f.ref is not None:
            with self._changed:
                if f.code == ErrorCode.STORE_FAILED and f.ref in self._pending:
                    # Not stored, but may be later: keep it pending and try again.
                    self._retry_at[f.ref] = time.monotonic() + _STORE_RETRY_DELAY
                elif self._pending.pop(f.ref, None) is not None:
                    # Refused for good (bad text, not in the room, ...): it will never be acked.
                    self._changed.notify_all()
        if f.code in _CLOSING_CODES:
            link.drop_reason = f"{f.code}: {f.message}"
        hooks = self._e2e
        if hooks is not None:
            hooks.on_error(f)
        self._emit(ServerError(f.code, f.message, f.ref))


def _summary(item: dict[str, object], hooks: E2EHooks | None = None) -> ConversationSummary:
    """A `conversations` entry (already validated by the protocol) as a summary.

    An encrypted message's preview comes without its envelope (and an empty
    text): it shows this device's decrypted copy, if *hooks* have one, else
    the placeholder.
    """
    last = item.get("last")
    message = None
    if isinstance(last, dict):
        message = Message(
            id=last["id"],
            ts=last["ts"],
            kind=last["kind"],
            text=last["text"],
            from_=last.get("from"),
            room=last.get("room"),
            to=last.get("to"),
            ref=last.get("ref"),
        )
        if message.kind == "private" and not message.text:
            text = hooks.preview(message.id) if hooks is not None else None
            message = dataclasses.replace(message, text=text or E2E_PLACEHOLDER)
    return ConversationSummary(
        kind=str(item["kind"]),
        name=str(item["name"]),
        last=message,
        unread=int(item["unread"]),  # type: ignore[call-overload]
        read=int(item["read"]),  # type: ignore[call-overload]
        cut=bool(item.get("cut", False)),
    )


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass  # BlockingIOError: drained
