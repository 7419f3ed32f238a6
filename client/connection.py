"""ChatClient, the network client library: the I/O shell around ClientSession.

ChatClient owns the TLS socket and its one I/O thread. Everything the protocol
promises on the client side (client message ids, acks, de-duplication, replay
state, batches, conversations, end-to-end hooks) lives in the sans-IO
ClientSession (client/session.py); this module connects, verifies the server,
logs in, feeds the session the frames that arrive, puts the events it returns
on a queue.Queue, writes what it queues, keeps the link alive with pings, and
reconnects with backoff, failing over between the server addresses it was
given. It imports no GUI; the terminal client, the desktop app and the
benchmarks all drive it the same way.

THE RULE: exactly one thread touches a TLS socket at any time. Python 3.11's
ssl module has no per-socket lock, and a recv in one thread while another
sends corrupts the stream (DESIGN.md section 3). So:
  1. connect() opens the socket, does the handshake and the login on the
     caller's thread, while nothing else can reach the socket, and then hands
     it to a new I/O thread. From then on only that thread uses it; automatic
     reconnects also happen on that thread.
  2. The I/O thread waits (selectors) on the socket and on a wake-up
     socketpair; it reads everything available through transport's TLSStream
     (the non-blocking loop the server uses too), hands the frames to the
     session, and writes queued bytes non-blocking.
  3. Public methods, called from any thread, only ask the session to queue a
     frame and wake the I/O thread (only when its outbox goes from empty to
     non-empty). No lock is ever held across I/O.

Failover: the client is given one address or several (host, port) pairs. A
connect, and each reconnect attempt, tries them in order starting with the
current one, and moves on to the next when one cannot be reached, breaks
during the login or refuses it for a passing reason (shutting down, full). The
certificate is verified for each address by its own host name (or
*server_hostname*) against the same trust anchor; a certificate that fails
verification stops the attempt there and is never skipped silently.
"""

from __future__ import annotations

import logging
import queue
import random
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from parley_chat.protocol import (
    DEFAULT_ROOM,
    MAX_PASSWORD_CHARS,
    Bye,
    Error,
    ErrorCode,
    Frame,
    History,
    Join,
    Leave,
    LineDecoder,
    ListConversations,
    ListRooms,
    Ping,
    Pong,
    Read,
    RemoteProtocolError,
    Search,
    Send,
    StreamError,
    Welcome,
    Who,
    decode_server_line,
    encode,
    has_surrogate,
    valid_nick,
)
from parley_chat.protocol.vocab import ConversationKind
from parley_chat.transport import PeerClosed, StreamClosed, TLSStream

from .addresses import Address, format_address
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
from .events import ClientEvent, Disconnected, ErrorReply, Reconnecting
from .moderation import request as _moderation_request
from .session import E2E_PLACEHOLDER, ClientSession, E2EHooks, SeenIds
from .tls import client_context, fingerprint_sha256, probe_server_certificate

__all__ = ["E2E_PLACEHOLDER", "ChatClient", "E2EHooks", "SeenIds", "backoff_delay"]

log = logging.getLogger("parley.client")

_READ_CHUNK = 64 * 1024
# Bytes read per loop turn before writes get their turn; the loop comes
# straight back for the rest (TLSStream.has_buffered).
_READ_BUDGET = 4 * 1024 * 1024
# close() always leaves the bye this long to go out, even past its deadline.
_BYE_GRACE = 0.5
# OpenSSL verify codes for a certificate that is valid but names another host/IP.
_NAME_MISMATCH_CODES = frozenset({62, 64})
#: X509_V_ERR_CERT_NOT_YET_VALID (9) and X509_V_ERR_CERT_HAS_EXPIRED (10).
_EXPIRED_CODES = frozenset({9, 10})
#: OpenSSL's reasons when what answered does not speak TLS at all (a web server,
#: another service on that port): "wrong version number" says nothing to a user.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"}
)
#: ... and when it speaks TLS but shares no version or cipher with this client.
_NO_COMMON_TLS_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
    }
)
#: The longest bye reason sent (the server keeps it in the session row).
_BYE_REASON_CHARS = 200


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


class _Link:
    """One established TLS connection. Used by one thread at a time: the thread
    that logs in, then the I/O thread it is handed to."""

    def __init__(self, sock: ssl.SSLSocket, address: Address) -> None:
        self.sock = sock
        self.address = address
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


class ChatClient:
    """A parley client connection with automatic reconnect. Thread-safe API; events on `events`.

    Construct, call connect() (blocking; raises ServerUnreachable,
    CertificateNotTrusted, HostnameMismatch, LoginRefused, ConnectionLost), then
    read `events` from any one consumer thread. Requests (send_text, join, ...)
    may be called from any thread and never block. close() ends gracefully.

    Where: *host* and *port*, or a list of (host, port) pairs as *host* (and no
    *port*) to fail over between several servers of one site, tried in order
    (the module docstring says when the client moves on).

    Trust: exactly one of *ca_file* (the server's CA) or *pinned_cert_pem* (a
    server certificate pinned on first use). Credentials: *password* and/or a
    resume *token* from an earlier login; the token is tried first, and the
    password if the server no longer accepts the token.

    Sends made while disconnected are kept in `pending` and sent after the next
    login. Other requests made while disconnected are sent after the next login
    too; requests in flight when a connection breaks may be lost (only sends
    are guaranteed).

    *server_hostname* overrides the name the certificate must carry (default:
    the host of each address). *reconnect_base* / *reconnect_cap* shape the
    reconnect backoff; the client pings a server that has been silent for
    *ping_interval* seconds and drops the connection (then reconnects) if
    nothing arrives within *ping_timeout* after that.
    """

    def __init__(
        self,
        host: str | Sequence[Address],
        port: int | None = None,
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
        if password is not None and len(password) > MAX_PASSWORD_CHARS:
            # Said here: the hello that would carry it fails to build mid-connect.
            raise ValueError(f"a password is at most {MAX_PASSWORD_CHARS} characters")
        if password is not None and has_surrogate(password):
            # An environment variable holding bytes that are not UTF-8 (surrogateescape).
            raise ValueError("the password holds bytes that are not UTF-8 text")
        self._addresses = _addresses(host, port)
        self._current = 0  # index of the address in use (or tried first next)
        self._ctx = client_context(ca_file, pinned_cert_pem)
        self._server_hostname = server_hostname
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
        #: The protocol state (sans-IO): what ChatClient's requests and properties use.
        self.session = ClientSession(
            nick, token=token, last_seen=last_seen, on_outgoing=self._wake_from_caller
        )
        self._tls_version: str | None = None
        self._fingerprint: str | None = None

        # Notified when the session may have settled (pending shrank, an echo
        # came back) or the I/O thread ended: close() waits on it.
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._close_reason = "bye"
        self._close_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._link: _Link | None = None

    # --- properties ------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[Address, ...]:
        """Every server address this client may use, in the order they are tried."""
        return self._addresses

    @property
    def host(self) -> str:
        """The host of the address in use (or to be tried first)."""
        return self._addresses[self._current][0]

    @property
    def port(self) -> int:
        """The port of the address in use (or to be tried first)."""
        return self._addresses[self._current][1]

    @property
    def nick(self) -> str:
        """The nick, in the account's spelling once logged in."""
        return self.session.nick

    @property
    def token(self) -> str | None:
        """The latest resume token (every welcome brings a new one)."""
        return self.session.token

    @property
    def last_seen(self) -> int | None:
        """Id of the last message delivered live or in a replay (not history/search)."""
        return self.session.last_seen

    @property
    def pending(self) -> dict[str, Send]:
        """A copy of the unacked sends: client id -> Send frame, oldest first."""
        return self.session.pending

    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        return self.session.logged_in

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
        return self.session.joined_rooms

    @property
    def max_text(self) -> int:
        """The longest message text the server accepts (announced in welcome)."""
        return self.session.max_text

    @property
    def flood_rate(self) -> float | None:
        """Frames per second the server lets this connection send (from welcome), or None."""
        return self.session.flood_rate

    @property
    def flood_burst(self) -> int | None:
        """Frames the server takes at once before the rate applies (from welcome), or None."""
        return self.session.flood_burst

    # --- connecting --------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, verify the server, log in, and start the I/O thread. Blocking.

        Tries the addresses in order (see the module docstring). Emits
        Connected; the replay batch that follows is delivered as events by the
        I/O thread. Raises ServerUnreachable, CertificateNotTrusted,
        HostnameMismatch, LoginRefused or ConnectionLost (the last address's
        failure when none worked); nothing is retried later.
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
            link, welcome, resumed = self._login_any()
        except BaseException:
            self._close_wake_pair(self._wake_r, self._wake_w)
            raise
        self._activate(link, welcome, resumed)
        self._thread = threading.Thread(
            target=self._run,
            args=(link, self._wake_r, self._wake_w),
            name=f"parley-client-{self.nick}",
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
                while not self.session.settled and thread.is_alive():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
            self._stop_thread(reason, deadline)
        return not self.session.pending

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
        return self.session.send_text(text, room=room, to=to)

    def send_envelope(self, to: str, envelope: str) -> str:
        """Post an end-to-end encrypted private message (its envelope) *to* a nick.

        Like send_text (pending until acked); client/e2e/session.py builds the envelope.
        """
        return self.session.send_envelope(to, envelope)

    def request(self, frame: Frame) -> None:
        """Send any client frame (sent after the next login while disconnected)."""
        self.session.request(frame)

    @property
    def e2e(self) -> E2EHooks | None:
        """The attached end-to-end encryption (client/e2e/session.E2ESession), or None."""
        return self.session.e2e

    def attach_e2e(self, hooks: E2EHooks | None) -> None:
        """Let *hooks* open encrypted messages and see key and link frames (None: detach)."""
        self.session.e2e = hooks

    def emit(self, event: object) -> None:
        """Put an event of an extension (such as end-to-end encryption) on `events`."""
        self.events.put(event)  # type: ignore[arg-type]

    def join(self, room: str) -> None:
        """Join (creating it if new) *room*; RoomJoined follows."""
        self.session.request(Join(room=room))

    def leave(self, room: str) -> None:
        """Leave *room*; RoomLeft follows (#lobby cannot be left: ErrorReply)."""
        self.session.request(Leave(room=room))

    def who(self, room: str | None = None, tag: str | None = None) -> None:
        """Ask who is online in *room* (default #lobby); PresenceChanged with *tag* follows."""
        self.session.request(Who(room=room, tag=tag))

    def rooms(self, tag: str | None = None) -> None:
        """Ask for every room with its member count; RoomsListed follows."""
        self.session.request(ListRooms(tag=tag))

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
        self.session.request(
            History(room=room, with_=with_, before=before, limit=limit, tag=tag, around=around)
        )

    def conversations(self, tag: str | None = None) -> None:
        """Ask for the user's conversations again; ConversationsListed (with *tag*) follows."""
        self.session.request(ListConversations(tag=tag))

    def mark_read(self, kind: str, name: str, message_id: int) -> None:
        """Tell the server the user has read conversation *name* up to *message_id*.

        *kind* is "room" (name is the room) or "private" (name is the peer's nick).
        The server keeps the marker (it never moves back) and tells the user's
        other connections (ReadMoved). Raises ValueError for an unknown kind.
        """
        if kind == ConversationKind.ROOM:
            frame = Read(id=message_id, room=name)
        elif kind == ConversationKind.PRIVATE:
            frame = Read(id=message_id, with_=name)
        else:
            raise ValueError(f"conversation kind is 'room' or 'private', not {kind!r}")
        self.session.request(frame)

    def search(
        self, words: str, before: int | None = None, limit: int = 50, tag: str | None = None
    ) -> None:
        """Search the messages this user may see; a search batch (newest first) follows."""
        self.session.request(Search(words=words, before=before, limit=limit, tag=tag))

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

        ModerationDone with that ref follows on success, ErrorReply with it on
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
        self.session.request(frame)
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
        self.session.ping(f"user-{time.monotonic():.3f}")

    def _wake_from_caller(self) -> None:
        # The session's outbox turned non-empty. The I/O thread itself flushes
        # on its next turn; any other thread wakes it, since it may be asleep.
        thread = self._thread
        if thread is None or threading.get_ident() != thread.ident:
            self._wake()

    def _wake(self) -> None:
        w = self._wake_w
        if w is None:
            return
        try:
            w.send(b"\0")
        except OSError:
            pass  # a wake-up byte is already waiting, or the pair is closed

    # --- login (on the thread that owns the new link) ------------------------------------

    def _login_any(self) -> tuple[_Link, Welcome, bool]:
        """Log in at the first address that takes us, starting with the current one.

        An address that cannot be reached, breaks during the login, or refuses
        it for a passing reason is skipped; the last such failure is raised when
        none worked. A certificate that fails verification, and a refusal of the
        credentials, are raised at once: another node would say the same, and
        a changed identity is never passed over silently.
        """
        count = len(self._addresses)
        failure: ClientError | None = None
        for step in range(count):
            index = (self._current + step) % count
            address = self._addresses[index]
            try:
                link, welcome, resumed = self._login(address)
            except LoginRefused as exc:
                if not exc.transient:
                    raise
                failure = exc
            except (ServerUnreachable, ConnectionLost) as exc:
                failure = exc
            else:
                if index != self._current:
                    log.info("failing over to %s", format_address(address))
                self._current = index
                return link, welcome, resumed
            if count > 1:
                log.info("server %s failed: %s", format_address(address), failure)
        assert failure is not None
        raise failure

    def _login(self, address: Address) -> tuple[_Link, Welcome, bool]:
        token = self.session.token
        if token is not None:
            try:
                link, welcome = self._attempt(address, token=token)
                return link, welcome, True
            except LoginRefused as exc:
                if exc.code != ErrorCode.BAD_TOKEN or self._password is None:
                    raise
                log.info("the server refused the resume token; logging in with the password")
                self.session.forget_token()
        link, welcome = self._attempt(address, password=self._password)
        return link, welcome, False

    def _attempt(
        self, address: Address, *, token: str | None = None, password: str | None = None
    ) -> tuple[_Link, Welcome]:
        hello = self.session.hello(
            password=password, token=token, register=self._register, client_name=self._client_name
        )
        deadline = time.monotonic() + self._connect_timeout
        link = _Link(self._open_tls(address), address)
        try:
            link.sock.settimeout(max(0.01, deadline - time.monotonic()))
            link.sock.sendall(encode(hello))
            welcome = self._await_welcome(link, deadline)
            link.sock.setblocking(False)
            link.stream = TLSStream(link.sock)
        except TimeoutError as exc:
            link.close()
            raise ConnectionLost(
                f"no answer to the login from {format_address(address)} "
                f"within {self._connect_timeout:.0f} s"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            link.close()
            raise ConnectionLost(f"the connection broke during the login: {exc}") from exc
        except BaseException:
            link.close()
            raise
        return link, welcome

    def _open_tls(self, address: Address) -> ssl.SSLSocket:
        host = address[0]
        where = format_address(address)
        server_hostname = self._server_hostname or host
        try:
            raw = socket.create_connection(address, timeout=self._connect_timeout)
        except socket.gaierror as exc:
            raise ServerUnreachable(f"cannot resolve {host}: {exc.strerror}") from exc
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
            return self._ctx.wrap_socket(raw, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            fingerprint, anchor = self._probe_fingerprints(address)
            # Plain words, not OpenSSL's: the cause stays chained for the log.
            if exc.verify_code in _NAME_MISMATCH_CODES:
                raise HostnameMismatch(
                    f"the certificate of {where} is not valid for the name "
                    f"{server_hostname!r}; nothing was sent",
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
            if exc.reason in _NOT_TLS_REASONS:
                raise ServerUnreachable(
                    f"{where} does not answer in TLS: it is not a parley server, or the "
                    "port is wrong"
                ) from exc
            if exc.reason in _NO_COMMON_TLS_REASONS:
                raise ConnectionLost(
                    f"the TLS handshake with {where} failed: the server offers no TLS version "
                    "or cipher this client accepts (parley needs TLS 1.2 or newer)"
                ) from exc
            raise ConnectionLost(
                f"the TLS handshake with {where} failed: {exc.reason or exc}"
            ) from exc
        except OSError as exc:
            raw.close()
            raise ConnectionLost(
                f"the connection to {where} broke during the handshake: {exc}"
            ) from exc

    def _probe_fingerprints(self, address: Address) -> tuple[str | None, str | None]:
        # Only to show a person which certificates were offered; never trusted.
        # (the server's certificate, and what trust on first use would pin)
        try:
            probed = probe_server_certificate(
                address[0], address[1], timeout=min(5.0, self._connect_timeout)
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
        """The link is logged in: the session adopts it (and queues the resends)."""
        self._tls_version = link.tls_version
        self._fingerprint = link.fingerprint
        self._link = link
        self._emit_all(
            self.session.welcomed(
                welcome, resumed=resumed, tls_version=link.tls_version, fingerprint=link.fingerprint
            )
        )

    # --- the I/O thread --------------------------------------------------------------------

    def _run(self, link: _Link, wake_r: socket.socket, wake_w: socket.socket) -> None:
        current: _Link | None = link
        try:
            while current is not None:
                reason, by_user = self._serve(current, wake_r)
                self.session.connection_lost()
                current.close()
                self._link = None
                if by_user:
                    self._emit(Disconnected(reason, will_retry=False, by_user=True))
                    break
                retry = self._auto_reconnect and not self._stop.is_set()
                if (self.session.closing_reason or "").startswith(ErrorCode.DISCONNECTED):
                    retry = False  # an operator put this user out: coming back at once defeats it
                self._emit(Disconnected(reason, will_retry=retry))
                if not retry:
                    break
                current = self._reconnect()
                if current is None and self._stop.is_set():
                    self._emit(Disconnected("closed", will_retry=False, by_user=True))
        except Exception as exc:  # a bug here must not vanish silently
            log.exception("the client's I/O thread failed")
            self.session.connection_lost()
            self._emit(Disconnected(f"internal client error: {exc}", will_retry=False))
        finally:
            self._close_wake_pair(wake_r, wake_w)
            with self._changed:
                self._changed.notify_all()

    def _serve(self, link: _Link, wake_r: socket.socket) -> tuple[str, bool]:
        """Run one link until it ends. Returns (reason, ended_by_user)."""
        sock = link.sock
        stream = link.stream
        assert stream is not None
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
                    self._flush(link, now)
                    if link.closing and now >= link.closing_deadline:
                        return "closed", True
                except _Dropped as exc:
                    if link.closing:
                        return "closed", True
                    return self.session.closing_reason or exc.reason, False
                want = selectors.EVENT_READ
                if stream.wants_write or self.session.has_outgoing:
                    want |= selectors.EVENT_WRITE
                if want != registered:
                    sel.modify(sock, want)
                    registered = want
                # Bytes OpenSSL already decrypted are invisible to select().
                buffered = stream.has_buffered or sock.pending()
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

    def _process(self, link: _Link) -> None:
        if not link.frames:
            return
        now = time.monotonic()
        while link.frames:
            self._emit_all(self.session.receive(link.frames.popleft(), now))
        with self._changed:
            self._changed.notify_all()  # close() may wait for an ack or an echo

    def _flush(self, link: _Link, now: float) -> None:
        """Queue what is due (session frames, keepalive, bye) and write what the socket takes."""
        stream = link.stream
        assert stream is not None
        self.session.tick(now)
        frames = self.session.frames_to_send()
        if frames:
            stream.queue_many([encode(f) for f in frames])
        if self._stop.is_set() and not link.closing:
            # Graceful end: bye, then wait for the server to hang up.
            link.closing = True
            link.closing_deadline = max(self._close_deadline, now + _BYE_GRACE)
            stream.queue(encode(Bye(reason=self._close_reason)))
        if not link.closing:
            if link.ping_sent_at is None:
                if now - link.last_rx >= self._ping_interval:
                    link.ping_count += 1
                    link.ping_sent_at = now
                    stream.queue(encode(Ping(token=f"c{link.ping_count}")))
            elif now - link.ping_sent_at >= self._ping_timeout:
                raise _Dropped(
                    f"the server stopped answering (nothing for {now - link.last_rx:.0f} s)"
                )
        try:
            stream.flush()
        except StreamClosed as exc:
            raise _Dropped(exc.reason) from exc

    def _next_timeout(self, link: _Link, now: float) -> float:
        if link.ping_sent_at is None:
            deadlines = [link.last_rx + self._ping_interval]
        else:
            deadlines = [link.ping_sent_at + self._ping_timeout]
        if link.closing:
            deadlines.append(link.closing_deadline)
        retry = self.session.next_deadline()
        if retry is not None:
            deadlines.append(retry)
        return max(0.0, min(deadlines) - now)

    def _reconnect(self) -> _Link | None:
        """Log in again with backoff until it works, the user stops us, or the server
        refuses the credentials. Each attempt tries every address, the current one
        first. Returns the new link, or None."""
        attempt = 0
        while True:
            attempt += 1
            delay = backoff_delay(attempt, self._reconnect_base, self._reconnect_cap)
            self._emit(Reconnecting(attempt, delay))
            if self._stop.wait(delay):
                return None
            try:
                link, welcome, resumed = self._login_any()
            except LoginRefused as exc:
                if exc.transient:
                    log.info("reconnect attempt %d: %s", attempt, exc)
                    continue
                self._emit(ErrorReply(exc.code, exc.message))
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
        self._close_reason = reason[:_BYE_REASON_CHARS] or "bye"
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

    def _emit(self, event: ClientEvent) -> None:
        self.events.put(event)

    def _emit_all(self, events: list[ClientEvent]) -> None:
        for event in events:
            self.events.put(event)


def _addresses(host: str | Sequence[Address], port: int | None) -> tuple[Address, ...]:
    """The constructor's *host*/*port* as a tuple of addresses (ValueError when unusable)."""
    if isinstance(host, str):
        if port is None:
            raise ValueError("give a port with the host (or a list of (host, port) pairs)")
        return ((host, port),)
    if port is not None:
        raise ValueError("give the ports inside the list of (host, port) pairs, not as port")
    out = tuple((str(h), int(p)) for h, p in host)
    if not out:
        raise ValueError("give at least one server address")
    return out


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass  # BlockingIOError: drained
