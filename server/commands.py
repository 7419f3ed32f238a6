"""One handler per client frame type.

Rules this module keeps:
1. Dispatch is a table (HANDLERS) whose guards are data: whether a frame
   needs a logged-in session, and where its handler runs, are declared next
   to it. Handlers that only touch memory and enqueue writes run on the
   connection's I/O loop; handlers that hash a password, read the database or
   wait for a commit run on a worker pool, one job per connection at a time,
   so an I/O loop never blocks and a connection's frames keep their order.
2. Each handler goes validate -> store -> hub. Writes go through the store's
   single writer; a message is acked and fanned out only from the writer's
   after-commit callback, so nothing is delivered that is not stored.
3. The sender of every message is the session's user, never a field the
   client sent.
4. Handlers see a connection only through the Client protocol below, and get
   their collaborators (config, store, hub, hasher, throttles, pools) when
   Commands is built: no service locator.
5. No client input reaches an `internal` error: every input is validated at
   decode (protocol/) or here, and store failures answer `store-failed`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy.orm import Session

from parley_chat.protocol import (
    DEFAULT_ROOM,
    MAX_ROOMS_LISTED,
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
    KeysGet,
    KeysPut,
    Leave,
    Link,
    ListConversations,
    ListRooms,
    Ping,
    Pong,
    Presence,
    Read,
    RoomList,
    Search,
    Send,
    Welcome,
    Who,
    encode,
    fold,
    format_ts,
    message_wire,
)
from parley_chat.protocol.limits import MAX_CONVERSATIONS_LISTED, MAX_PREVIEW_CHARS
from parley_chat.protocol.moderation import Moderate
from parley_chat.protocol.vocab import BatchKind, BatchState, MessageKind

from . import keys, moderation
from .auth import LoginThrottle, PasswordHasher, RateWindow, new_token, token_hash
from .bus import Cluster, NoCluster
from .config import ServerConfig
from .flood import MAX_TRACKED_KEYS, TokenBucket
from .hub import Hub, Poster, message_frame, presence_pages
from .store import (
    DEFERRED,
    Direct,
    IdReused,
    NoSuchUser,
    Store,
    StoreConflict,
    StoreError,
    StoreRejected,
    queries,
    utcnow,
    writes,
)
from .store.models import REASON_CHARS
from .store.moderation import Refused, RoomSettings
from .store.records import ConversationRecord, StoredMessage, UserRecord
from .workers import WorkerPool

log = logging.getLogger("parley.commands")

#: How long a handler (a login: account creation, session row) or the server's
#: start (closing the sessions a crash left open) waits for the writer.
WRITE_WAIT = 30.0
#: A replay is queued in parts of about this size, each sent once the previous
#: one has drained (Connection.send_replay).
REPLAY_PART_BYTES = 64 * 1024


class Client(Protocol):
    """What a handler needs of a connection (server.connection.Connection is one)."""

    peer: str
    peer_ip: str
    user_id: int | None
    nick: str | None
    session_id: int | None
    tls_version: str | None

    @property
    def logged_in(self) -> bool:
        """True once a hello was accepted."""

    @property
    def loop(self) -> Poster | None:
        """The loop its deliveries are handed to (see Hub's Peer)."""

    def send_frame(self, frame: Frame) -> None:
        """Queue a reply."""

    def send_bytes(self, data: bytes) -> None:
        """Queue encoded replies."""

    def send_replay(self, parts: list[bytes], replayed_up_to: int) -> None:
        """Stream a replay batch, then release held live messages."""

    def hold_live(self) -> None:
        """Hold live deliveries back until the replay has been sent."""

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        """Queue unsolicited bytes (*lazy*: they may wait a moment to share a write)."""

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue several unsolicited byte strings."""

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue one encoded message shared by many recipients (see Hub's Peer)."""

    def close_after_flush(self, reason: str, error: Error | None = None) -> None:
        """Send *error*, flush, close."""

    def begin_job(self) -> None:
        """An off-loop handler starts: hold the connection's next frames."""

    def end_job(self) -> None:
        """The off-loop handler ended."""


class LoginFailed(Exception):
    """A hello was refused; `.code` and `.message` go into the error frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[["Commands", Client, Any], None]

#: Where a handler runs: on the connection's loop, or on one of the pools.
LOOP, LOGIN, REQUEST = "loop", "login", "request"


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A table entry: the handler, whether it needs a login, and where it runs."""

    handler: Handler
    needs_login: bool
    runs_on: str | Callable[[Any], str]


class Commands:
    """The handlers, bound to one server's collaborators."""

    def __init__(
        self,
        cfg: ServerConfig,
        store: Store,
        hub: Hub,
        hasher: PasswordHasher,
        *,
        login_pool: WorkerPool,
        request_pool: WorkerPool,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.hub = hub
        self.hasher = hasher
        self.throttle = LoginThrottle(cfg.login_failures, cfg.login_failure_window)
        self.ip_throttle = LoginThrottle(cfg.login_failures_per_ip, cfg.login_failure_window)
        self.registrations = RateWindow(cfg.registrations_per_ip, cfg.registration_window)
        self._pools = {LOGIN: login_pool, REQUEST: request_pool}
        self._join_lock = threading.Lock()
        self._join_buckets: dict[int, TokenBucket] = {}
        #: Who is muted where (moderation), for the send path on the I/O loop.
        self.mutes = moderation.MuteCache()
        self.links = keys.LinkRelay()  # device linking offers (server/keys.py)
        #: The other nodes sharing the database (server/bus_node.py); none by default.
        self.cluster: Cluster = NoCluster()

    def dispatch(self, conn: Client, frame: Frame) -> None:
        """Run the handler for *frame* (inline or on its pool). Called on the I/O loop."""
        spec = HANDLERS[type(frame)]
        if spec.needs_login and not conn.logged_in:
            conn.send_frame(
                Error(
                    code=ErrorCode.NOT_LOGGED_IN,
                    message="log in first with a hello frame",
                    ref=frame.id if isinstance(frame, Send) else None,
                )
            )
            return
        where = spec.runs_on if isinstance(spec.runs_on, str) else spec.runs_on(frame)
        if where == LOOP:
            self._run(spec.handler, conn, frame)
            return
        # What this turn gathered (room messages, committed when the loop's
        # reads end) goes to the writer first: a write the job submits from its
        # pool thread must not overtake them, or a sender's messages would get
        # ids out of the order sent.
        self.store.queue_gathered()
        conn.begin_job()

        def job() -> None:
            try:
                self._run(spec.handler, conn, frame)
            finally:
                conn.end_job()

        self._pools[where].submit(job)

    def _run(self, handler: Handler, conn: Client, frame: Frame) -> None:
        try:
            handler(self, conn, frame)
        except StoreRejected as exc:
            # The input could not be stored (the client's fault): say so, no traceback.
            conn.send_frame(
                Error(
                    code=ErrorCode.BAD_FRAME,
                    message=f"the request could not be carried out: {exc}",
                    ref=frame.id if isinstance(frame, Send) else None,
                )
            )
        except StoreError as exc:
            log.error("store failure handling %s from %s: %s", frame.TYPE, conn.peer, exc)
            conn.send_frame(
                Error(
                    code=ErrorCode.STORE_FAILED,
                    message=f"the server's database failed: {exc}",
                    ref=frame.id if isinstance(frame, Send) else None,
                )
            )
        except Exception:
            log.exception("handler for %s failed", frame.TYPE)
            conn.send_frame(Error(code=ErrorCode.INTERNAL, message="internal server error"))

    # --- login ------------------------------------------------------------------

    def hello(self, conn: Client, f: Hello) -> None:
        """hello {version, nick, password | token, register?, last_seen?, client?}"""
        if conn.logged_in:
            conn.send_frame(Error(code=ErrorCode.ALREADY_LOGGED_IN, message="already logged in"))
            return
        if f.version != PROTOCOL_VERSION:
            conn.close_after_flush(
                "unsupported protocol version",
                Error(
                    code=ErrorCode.BAD_VERSION,
                    message=f"this server speaks protocol version {PROTOCOL_VERSION}",
                ),
            )
            return
        try:
            user, created = self._authenticate(conn, f)
            # One read for the lock and the rooms: a classroom logs in at once,
            # and each read session costs more than its query.
            with self.store.read() as s:
                locked = moderation.login_refusal(s, user.id)
                rooms = queries.rooms_of(s, user.id) if locked is None else []
            if locked is not None:
                raise LoginFailed(ErrorCode.ACCOUNT_LOCKED, locked)
        except LoginFailed as exc:
            log.info("%s: login as %s refused: %s", conn.peer, f.nick, exc.code)
            conn.close_after_flush(
                f"login refused: {exc.code}", Error(code=exc.code, message=exc.message)
            )
            return
        self._start_session(conn, f, user, created, rooms)

    def _registration_open(self) -> bool:
        with self.store.read() as s:
            value = queries.get_setting(s, "registration_open")
        return self.cfg.registration_open if value is None else value == "true"

    def _authenticate(self, conn: Client, f: Hello) -> tuple[UserRecord, bool]:
        now = utcnow()
        if f.token is not None:
            # A resume token is checked without hashing, so it is never throttled:
            # the owner's own client gets in even while someone guesses the password.
            # The store also knows tokens issued while the database refused writes.
            found = self.store.user_by_token(token_hash(f.token), now)
            if found is None or fold(found[0].nick) != fold(f.nick):
                raise LoginFailed(
                    ErrorCode.BAD_TOKEN, "the resume token is not valid; log in with your password"
                )
            return found[0], False

        assert f.password is not None
        key = (fold(f.nick), conn.peer_ip)
        ip_key = ("*", conn.peer_ip)
        # Reserved before any hashing, attempts in flight included: a guesser
        # cannot make us burn scrypt at will, not even with concurrent tries.
        if not self.throttle.begin(key):
            wait = self.throttle.retry_after(key)
            raise LoginFailed(
                ErrorCode.THROTTLED, f"too many failed logins; try again in {max(wait, 1):.0f} s"
            )
        if not self.ip_throttle.begin(ip_key):
            self.throttle.release(key)
            wait = self.ip_throttle.retry_after(ip_key)
            raise LoginFailed(
                ErrorCode.THROTTLED,
                f"too many failed logins from your address; try again in {max(wait, 1):.0f} s",
            )
        try:
            user, created = self._check_password(conn, f, now)
        except _Failed:
            self.throttle.failed(key)
            self.ip_throttle.failed(ip_key)
            raise
        except BaseException:
            self.throttle.release(key)
            self.ip_throttle.release(ip_key)
            raise
        self.throttle.succeeded(key)
        # One nick's success says nothing of the address's other guesses.
        self.ip_throttle.release(ip_key)
        return user, created

    def _check_password(self, conn: Client, f: Hello, now: datetime) -> tuple[UserRecord, bool]:
        assert f.password is not None
        with self.store.read() as s:
            user = queries.get_user(s, f.nick)
        if user is None:
            if not f.register:
                raise LoginFailed(
                    ErrorCode.NO_SUCH_ACCOUNT,
                    f"there is no account named {f.nick}; to create it, log in with register "
                    "(--register in the terminal client, 'create account' in the app)",
                )
            if not self._registration_open():
                raise LoginFailed(
                    ErrorCode.REGISTRATION_CLOSED,
                    "registration is closed on this server; ask its operator for an account",
                )
            if not self.registrations.take(conn.peer_ip):
                wait = self.registrations.retry_after(conn.peer_ip)
                raise LoginFailed(
                    ErrorCode.THROTTLED,
                    f"too many accounts created from your address; try again in {wait:.0f} s",
                )
            password_hash = self.hasher.hash(f.password)
            future = self.store.submit(
                partial(writes.create_user, nick=f.nick, password_hash=password_hash, now=now)
            )
            try:
                return future.result(WRITE_WAIT), True
            except StoreConflict as exc:  # someone registered the nick a moment ago
                self.registrations.give_back(conn.peer_ip)
                raise LoginFailed(
                    ErrorCode.NICK_TAKEN, f"the nick {f.nick} is already taken; choose another"
                ) from exc
            except StoreError:
                self.registrations.give_back(conn.peer_ip)
                raise
        if not self.hasher.verify(f.password, user.password_hash):
            if f.register:
                raise _Failed(
                    ErrorCode.NICK_TAKEN,
                    f"the nick {user.nick} is already registered and the password does not "
                    "match: choose another nick, or type that account's password",
                )
            raise _Failed(ErrorCode.AUTH_FAILED, f"wrong password for {user.nick}")
        return user, False

    def _start_session(
        self, conn: Client, f: Hello, user: UserRecord, created: bool, rooms: list[str]
    ) -> None:
        now = utcnow()
        token, hashed = new_token()
        expires = now + timedelta(seconds=self.cfg.token_ttl)

        # Bookkeeping: a read-only or full database must not stop logins, so
        # the session and token rows may be written later (in order).
        login = self.store.record_login(
            user_id=user.id,
            peer=conn.peer,
            client=f.client,
            token_hash=hashed,
            now=now,
            expires_at=expires,
        )
        session_id = login.session_id
        conn.user_id, conn.nick, conn.session_id = user.id, user.nick, session_id
        if len(rooms) > MAX_ROOMS_LISTED:
            # Only a database edited by hand gets here (joins stop at
            # max_rooms_per_user): the welcome names as many rooms as fit.
            log.warning(
                "%s is in %d rooms; the welcome lists the first %d",
                user.nick,
                len(rooms),
                MAX_ROOMS_LISTED,
            )

        # Live messages are held back while the replay is read and sent, then
        # released minus what the replay already contained: nothing missed,
        # nothing twice, replay first.
        conn.hold_live()
        first = self.hub.attach(conn, user.id, user.nick, rooms)
        # A new read session, after attach(): its snapshot starts now, so every
        # message is either in it or was delivered (held) live. Sharing the
        # rooms' session would lose what was committed in between. It reads
        # while the writer commits the session row: the welcome (which hands
        # out the token) waits for that commit, the reads do not.
        with self.store.read() as s:
            # The conversation list goes first (right after the welcome), from the
            # same snapshot as the replay that follows it.
            conversations = conversation_pages(queries.conversations(s, user.id), user.nick)
            if f.last_seen is not None:
                messages, gap = queries.replay_after(s, user.id, f.last_seen, self.cfg.replay_cap)
                target = None
            else:
                messages = queries.latest_for_user(
                    s,
                    user.id,
                    per_room=self.cfg.fresh_room_messages,
                    private_limit=self.cfg.fresh_private_messages,
                )
                # A fresh login shows recent history; older messages exist if
                # the first one shown is not the user's very first.
                gap, target = bool(messages), "latest"
            # Moderation from the same snapshot (sent after the presence pages):
            # each room's topic and roles; the mute cache's first fill.
            self.mutes.load_once(s, now)
            roominfo = moderation.roominfo_bytes(s, rooms)
            if f.last_seen is not None:  # deletions and edits while it was away
                roominfo += moderation.catch_up_bytes(s, user.id, f.last_seen)
        parts, up_to = self._replay_parts(messages, user.nick, gap=gap, target=target)
        try:
            if login.stored.result(WRITE_WAIT) is DEFERRED:
                log.warning(
                    "%s: the database refuses writes; session %d is recorded later",
                    conn.peer,
                    session_id,
                )
        except (StoreError, StoreConflict, StoreRejected, FutureTimeout) as exc:
            log.warning("%s: session %d not recorded yet: %s", conn.peer, session_id, exc)
        conn.send_frame(
            Welcome(
                version=PROTOCOL_VERSION,
                nick=user.nick,
                token=token,
                rooms=rooms[:MAX_ROOMS_LISTED],
                server=self.cfg.server_name,
                created=created,
                session=session_id,
                max_text=self.cfg.max_text_chars,
                flood={"rate": self.cfg.flood_rate, "burst": self.cfg.flood_burst},
            )
        )
        conn.send_bytes(conversations)
        conn.send_replay(parts, up_to)
        for room in rooms:
            for page in presence_pages(room, self.hub.online_in(room)):
                conn.send_bytes(page)
        conn.send_bytes(roominfo)
        log.info(
            "%s logged in as %s (%s, session %d, %d replayed)",
            conn.peer,
            user.nick,
            conn.tls_version,
            session_id,
            len(messages),
        )
        if first:
            # Coming online is presence, not history: a delta to each room's
            # members, nothing stored (reconnects would fill every room's log).
            with self.hub.batch():
                for room in rooms:
                    self.hub.publish_presence(room, joined=user.nick)

    def _replay_parts(
        self,
        messages: list[StoredMessage],
        nick: str,
        *,
        gap: bool,
        target: str | None,
    ) -> tuple[list[bytes], int]:
        """A replay batch in parts, bounded by replay_max_bytes (newest kept), and its last id."""
        me = fold(nick)
        lines: list[bytes] = []
        budget = self.cfg.replay_max_bytes
        # Newest first, so the budget keeps the latest messages and drops the oldest.
        for m in reversed(messages):
            ref = m.client_msg_id if m.sender is not None and fold(m.sender) == me else None
            line = encode(message_frame(m, ref))
            if len(line) > budget:
                gap = True
                break
            budget -= len(line)
            lines.append(line)
        lines.reverse()
        up_to = max((m.id for m in messages), default=0)
        head = encode(Batch(BatchState.OPEN, BatchKind.REPLAY, target=target, gap=gap))
        tail = encode(Batch(BatchState.CLOSE, BatchKind.REPLAY, target=target, count=len(lines)))
        parts: list[bytes] = []
        current = [head]
        size = len(head)
        for line in lines:
            if size + len(line) > REPLAY_PART_BYTES:
                parts.append(b"".join(current))
                current, size = [], 0
            current.append(line)
            size += len(line)
        current.append(tail)
        parts.append(b"".join(current))
        return parts, up_to

    def _batch(
        self,
        kind: BatchKind,
        messages: Iterable[StoredMessage],
        nick: str,
        *,
        tag: str | None = None,
        target: str | None = None,
        more: bool = False,
    ) -> bytes:
        """One coalesced write: batch open, the messages, batch close (history, search)."""
        me = fold(nick)
        parts = [encode(Batch(BatchState.OPEN, kind, tag=tag, target=target))]
        count = 0
        for m in messages:
            ref = m.client_msg_id if m.sender is not None and fold(m.sender) == me else None
            parts.append(encode(message_frame(m, ref)))
            count += 1
        parts.append(
            encode(Batch(BatchState.CLOSE, kind, tag=tag, target=target, more=more, count=count))
        )
        return b"".join(parts)

    # --- messages ---------------------------------------------------------------------

    def send(self, conn: Client, f: Send) -> None:
        """send {id, room | to, text}: store, then ack and fan out after commit."""
        assert conn.user_id is not None
        if len(f.text) > self.cfg.max_text_chars:
            conn.send_frame(
                Error(
                    code=ErrorCode.TEXT_TOO_LONG,
                    message=f"message text is over {self.cfg.max_text_chars} characters",
                    ref=f.id,
                )
            )
            return
        now = utcnow()
        direct: Direct[tuple[StoredMessage, bool]] | None = None
        if f.room is not None:
            room = self.hub.room_name(conn.user_id, f.room)
            if room is None:
                conn.send_frame(
                    Error(
                        code=ErrorCode.NOT_IN_ROOM,
                        message=f"you are not in {f.room}; join it first",
                        ref=f.id,
                    )
                )
                return
            muted = self.mutes.refusal(conn.user_id, room, now)
            if muted is not None:
                conn.send_frame(Error(code=ErrorCode.MUTED, message=muted, ref=f.id))
                return
            public: dict[str, Any] = {
                "kind": MessageKind.PUBLIC,
                "body": f.text,
                "now": now,
                "room": room,
                "sender_id": conn.user_id,
                "client_msg_id": f.id,
            }
            op = partial(writes.add_message, **public)
            # On SQLite the loop's group commits through this alone (writer.py).
            direct = partial(writes.add_room_message_direct, **public)
        else:
            assert f.to is not None
            with self.store.read() as s:
                recipient = queries.get_user(s, f.to)
            if recipient is None:
                conn.send_frame(
                    Error(code=ErrorCode.NO_SUCH_NICK, message=f"no user named {f.to}", ref=f.id)
                )
                return
            op = partial(
                writes.add_message,
                kind=MessageKind.PRIVATE,
                body=f.text,
                now=now,
                sender_id=conn.user_id,
                recipient_id=recipient.id,
                client_msg_id=f.id,
                envelope=f.e2e,
            )
        self.store.submit_gathered(op, partial(self._committed, conn, f), direct=direct)

    def _committed(
        self,
        conn: Client,
        f: Send,
        result: tuple[StoredMessage, bool] | None,
        exc: BaseException | None,
    ) -> None:
        # Runs on the writer thread, after COMMIT (or its failure).
        if exc is not None:
            if isinstance(exc, StoreError):
                log.error("could not store a message from %s: %s", conn.nick, exc)
                message = f"your message was NOT stored ({exc}); it will be retried"
                code = ErrorCode.STORE_FAILED
            elif isinstance(exc, IdReused):
                message, code = str(exc), ErrorCode.ID_REUSED
            elif isinstance(exc, StoreRejected):
                message, code = f"your message could not be stored: {exc}", ErrorCode.BAD_TEXT
            elif isinstance(exc, StoreConflict):
                message, code = str(exc), ErrorCode.NOT_IN_ROOM
            else:
                log.error("storing a message failed", exc_info=exc)
                message, code = "internal server error", ErrorCode.INTERNAL
            conn.send_frame(Error(code=code, message=message, ref=f.id))
            return
        assert result is not None
        msg, duplicate = result
        ack = encode(Ack(ref=f.id, id=msg.id, ts=format_ts(msg.created_at), duplicate=duplicate))
        # Fan out first, then ack, in one batch: the sender's own copy is queued
        # ahead of the ack on its connection, so a client that says bye right
        # after the ack has already been sent everything. (With several nodes
        # the message may wait for its turn by id: the ack waits with it.)
        with self.hub.batch():
            if not duplicate:
                self.hub.deliver_message(
                    msg, conn.user_id, f.id, then=partial(self.hub.reply, conn, ack)
                )
            else:
                self.hub.reply(conn, ack)

    # --- rooms ----------------------------------------------------------------------------

    def _join_allowed(self, user_id: int) -> bool:
        with self._join_lock:
            bucket = self._join_buckets.get(user_id)
            if bucket is None:
                if len(self._join_buckets) > MAX_TRACKED_KEYS:
                    self._join_buckets.clear()  # bounded memory; a full bucket is the default
                bucket = TokenBucket(self.cfg.join_burst, self.cfg.join_rate)
                self._join_buckets[user_id] = bucket
            return bucket.take()

    def join(self, conn: Client, f: Join) -> None:
        """join {room}: become a member (creating the room if new)."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        current = self.hub.room_name(uid, f.room)
        if current is not None:
            conn.send_frame(Presence(room=current, joined=nick))
            return
        if self.hub.room_count(uid) >= self.cfg.max_rooms_per_user:
            conn.send_frame(
                Error(
                    code=ErrorCode.TOO_MANY_ROOMS,
                    message=f"you are in {self.cfg.max_rooms_per_user} rooms, the most allowed; "
                    "leave one first",
                )
            )
            return
        if not self._join_allowed(uid):
            conn.send_frame(
                Error(code=ErrorCode.FLOOD, message="joining rooms too fast; wait a moment")
            )
            return
        now = utcnow()
        max_rooms = self.cfg.max_rooms

        def op(s: Session) -> tuple[str, StoredMessage | None, RoomSettings | None]:
            return join_room_op(s, uid, nick, f.room, now, max_rooms)

        def done(
            result: tuple[str, StoredMessage | None, RoomSettings | None] | None,
            exc: BaseException | None,
        ) -> None:
            if isinstance(exc, Refused):
                conn.send_frame(Error(code=exc.code, message=exc.message))
                return
            if isinstance(exc, RoomCap):
                conn.send_frame(Error(code=ErrorCode.TOO_MANY_ROOMS, message=str(exc)))
                return
            if exc is not None:
                conn.send_frame(
                    Error(code=ErrorCode.STORE_FAILED, message=f"could not join: {exc}")
                )
                return
            assert result is not None
            room, msg, settings = result
            self.hub.joined(uid, room)
            with self.hub.batch():
                # The joiner's own connections learn they joined first, then get
                # the notice of it: a client that saw the notice first would take
                # it for news of a room it is not in. The members' delta waits
                # for the hub's presence flush.
                self.hub.send_to_user(uid, encode(Presence(room=room, joined=nick)))
                if settings is not None:
                    self.hub.send_to_user(uid, encode(moderation.roominfo_frame(settings)))
                if msg is not None:
                    self.hub.deliver_message(msg, None, None)
                self.hub.publish_presence(room, joined=nick)
                for page in presence_pages(room, self.hub.online_in(room)):
                    self.hub.reply(conn, page)

        self.store.submit(op, done)

    def leave(self, conn: Client, f: Leave) -> None:
        """leave {room}: stop being a member. The default room cannot be left."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        if fold(f.room) == fold(DEFAULT_ROOM):
            conn.send_frame(
                Error(code=ErrorCode.CANNOT_LEAVE, message=f"everyone stays in {DEFAULT_ROOM}")
            )
            return
        room = self.hub.room_name(uid, f.room)
        if room is None:
            conn.send_frame(Error(code=ErrorCode.NOT_IN_ROOM, message=f"you are not in {f.room}"))
            return
        now = utcnow()

        def op(s: Session) -> StoredMessage | None:
            return leave_room_op(s, uid, nick, room, now)

        def done(result: StoredMessage | None, exc: BaseException | None) -> None:
            if exc is not None:
                conn.send_frame(
                    Error(code=ErrorCode.STORE_FAILED, message=f"could not leave: {exc}")
                )
                return

            def gone() -> None:
                self.hub.left(uid, room)
                # The leaver is no longer a member, so its connections are told directly.
                self.hub.publish_presence(room, left=nick, extra_user=uid)

            with self.hub.batch():
                # After the notice of the leave, which the leaver gets too (with
                # several nodes the notice may wait for its turn: the leave waits with it).
                if result is not None:
                    self.hub.deliver_message(result, None, None, then=gone)
                else:
                    gone()

        self.store.submit(op, done)

    def who(self, conn: Client, f: Who) -> None:
        """who {room?, tag?}: the online members of a room (default: the default room)."""
        room = f.room or DEFAULT_ROOM
        assert conn.user_id is not None
        with self.store.read() as s:
            canonical = queries.room_exists(s, room)
            if canonical is not None and not moderation.may_see(s, conn.user_id, canonical):
                canonical = None  # a private room is known to its members only
            info = moderation.roominfo_bytes(s, [canonical], f.tag) if canonical else b""
        if canonical is None:
            conn.send_frame(Error(code=ErrorCode.NO_SUCH_ROOM, message=f"there is no room {room}"))
            return
        for page in presence_pages(canonical, self.hub.online_in(canonical), tag=f.tag):
            conn.send_bytes(page)
        conn.send_bytes(info)  # the roles, after the list they mark

    def rooms(self, conn: Client, f: ListRooms) -> None:
        """rooms {tag?}: every room with its member count and whether the user is in it, paged."""
        assert conn.user_id is not None
        with self.store.read() as s:
            infos = queries.list_rooms(s)
            hidden = moderation.hidden_rooms(s, conn.user_id)
        infos = [r for r in infos if fold(r.name) not in hidden]  # private rooms
        mine = {fold(r) for r in self.hub.rooms_of(conn.user_id)}
        entries = [
            {"name": r.name, "members": r.members, "joined": fold(r.name) in mine} for r in infos
        ]
        size = self.cfg.rooms_page
        pages = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        conn.send_bytes(
            b"".join(
                encode(RoomList(rooms=page, tag=f.tag, more=True if i < len(pages) - 1 else None))
                for i, page in enumerate(pages)
            )
        )

    # --- history and search --------------------------------------------------------------

    def history(self, conn: Client, f: History) -> None:
        """history {room | with, before? | around?, limit?, tag?}: a page of messages, oldest first."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        if f.room is not None:
            room = self.hub.room_name(uid, f.room)
            if room is None:
                conn.send_frame(
                    Error(code=ErrorCode.NOT_IN_ROOM, message=f"you are not in {f.room}")
                )
                return
            with self.store.read() as s:
                messages, more = queries.history(
                    s, uid, room=room, before=f.before, around=f.around, limit=f.limit
                )
            target = room
        else:
            assert f.with_ is not None
            with self.store.read() as s:
                peer = queries.get_user(s, f.with_)
                if peer is None:
                    conn.send_frame(
                        Error(code=ErrorCode.NO_SUCH_NICK, message=f"no user named {f.with_}")
                    )
                    return
                messages, more = queries.history(
                    s, uid, peer=peer.nick, before=f.before, around=f.around, limit=f.limit
                )
            target = peer.nick
        conn.send_bytes(
            self._batch(BatchKind.HISTORY, messages, nick, tag=f.tag, target=target, more=more)
        )

    def search(self, conn: Client, f: Search) -> None:
        """search {words, before?, limit?, tag?}: visible messages matching, newest first."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        with self.store.read() as s:
            messages, more = queries.search(s, uid, f.words, before=f.before, limit=f.limit)
        conn.send_bytes(self._batch(BatchKind.SEARCH, messages, nick, tag=f.tag, more=more))

    # --- conversations and read markers ----------------------------------------------------

    def conversations(self, conn: Client, f: ListConversations) -> None:
        """conversations {tag?}: the user's rooms and private peers, with unread counts."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        with self.store.read() as s:
            items = queries.conversations(s, uid)
        conn.send_bytes(conversation_pages(items, nick, tag=f.tag))

    def read(self, conn: Client, f: Read) -> None:
        """read {room | with, id}: move the user's read marker forward, tell their other
        connections. The marker lands on the newest message of the conversation at or
        below `id`, so it can never point past what exists or at someone else's message."""
        uid = conn.user_id
        assert uid is not None
        room = None
        if f.room is not None:
            room = self.hub.room_name(uid, f.room)
            if room is None:
                conn.send_frame(
                    Error(code=ErrorCode.NOT_IN_ROOM, message=f"you are not in {f.room}")
                )
                return
        now = utcnow()

        def op(s: Session) -> tuple[Read, bool, int | None] | None:
            if room is not None:
                room_id = queries.room_id_of(s, room)
                if room_id is None:
                    return None
                upto = queries.latest_in_conversation(s, uid, room_id=room_id, upto=f.id)
                if upto is None:
                    return None
                marker, moved = writes.move_read_marker(
                    s, uid, room_id=room_id, message_id=upto, now=now
                )
                return Read(id=marker, room=room), moved, None
            assert f.with_ is not None
            peer = queries.get_user(s, f.with_)
            if peer is None:
                raise NoSuchUser(f"no user named {f.with_}")
            upto = queries.latest_in_conversation(s, uid, peer_id=peer.id, upto=f.id)
            if upto is None:
                return None
            marker, moved = writes.move_read_marker(
                s, uid, peer_id=peer.id, message_id=upto, now=now
            )
            return Read(id=marker, with_=peer.nick), moved, peer.id

        def done(result: tuple[Read, bool, int | None] | None, exc: BaseException | None) -> None:
            if isinstance(exc, NoSuchUser):
                conn.send_frame(Error(code=ErrorCode.NO_SUCH_NICK, message=str(exc)))
            elif exc is not None:
                conn.send_frame(
                    Error(code=ErrorCode.STORE_FAILED, message=f"could not mark as read: {exc}")
                )
            elif result is None:
                where = f.room if f.room is not None else f"your conversation with {f.with_}"
                conn.send_frame(
                    Error(
                        code=ErrorCode.BAD_FRAME,
                        message=f"there is no message {f.id} or earlier in {where}",
                    )
                )
            else:
                frame, moved, peer_id = result
                if moved:  # the other devices of this user follow, on every node
                    self.hub.send_to_user(uid, encode(frame), skip=conn)
                    self.cluster.read_moved(uid, frame, peer_id)

        self.store.submit(op, done)

    # --- keepalive and exit ----------------------------------------------------------------

    def ping(self, conn: Client, f: Ping) -> None:
        """ping {token?}: answered with pong {token}."""
        conn.send_frame(Pong(token=f.token))

    def pong(self, conn: Client, f: Pong) -> None:
        """pong {token?}: nothing to do; any frame counts as activity."""

    def bye(self, conn: Client, f: Bye) -> None:
        """bye {reason?}: end the session gracefully, storing the reason."""
        reason = f"bye: {f.reason}" if f.reason else "bye"
        conn.close_after_flush(reason[:REASON_CHARS])


def conversation_pages(items: list[ConversationRecord], nick: str, tag: str | None = None) -> bytes:
    """The `conversations` frames for *items* (MAX_CONVERSATIONS_LISTED per frame),
    coalesced into one write. Previews longer than MAX_PREVIEW_CHARS are cut."""
    me = fold(nick)
    entries: list[dict[str, Any]] = []
    for item in items:
        entry: dict[str, Any] = {
            "kind": item.kind,
            "name": item.name,
            "last": None,
            "unread": item.unread,
            "read": item.read,
        }
        m = item.last
        if m is not None:
            ref = m.client_msg_id if m.sender is not None and fold(m.sender) == me else None
            last = message_wire(message_frame(m, ref))
            # An envelope is far too big for a preview; clients show their own copy.
            last.pop("e2e", None)
            if len(last["text"]) > MAX_PREVIEW_CHARS:
                last["text"] = last["text"][:MAX_PREVIEW_CHARS]
                entry["cut"] = True
            entry["last"] = last
        entries.append(entry)
    size = MAX_CONVERSATIONS_LISTED
    pages = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
    return b"".join(
        encode(Conversations(items=page, tag=tag, more=True if i < len(pages) - 1 else None))
        for i, page in enumerate(pages)
    )


class _Failed(LoginFailed):
    """A wrong password: counted by the throttle (unlike other refusals)."""


class RoomCap(StoreConflict):
    """The server-wide room cap was reached (raised inside the join's write)."""


def join_room_op(
    s: Session, user_id: int, nick: str, name: str, now: datetime, max_rooms: int
) -> tuple[str, StoredMessage | None, RoomSettings | None]:
    """The write of a join, for both protocols (parley's `join`, IRC's JOIN): the room
    cap (RoomCap), bans and invite-only rooms (moderation.Refused), the membership and
    its "joined" notice. Returns (the room's name as stored, the notice or None when
    the user was a member already, the room's settings when this made the room)."""
    canonical = queries.room_exists(s, name)
    if canonical is None and queries.room_count(s) >= max_rooms:
        raise RoomCap(f"the server has {max_rooms} rooms, the most allowed")
    moderation.before_join(s, user_id, name, now)  # banned, invite-only: Refused
    joined = writes.join_room(s, user_id, name, now)
    settings = moderation.after_join(s, user_id, canonical or name, canonical is None)
    canonical = canonical or name
    if not joined:
        return canonical, None, settings
    msg, _ = writes.add_message(
        s, kind=MessageKind.SYSTEM, body=f"{nick} joined {canonical}", now=now, room=canonical
    )
    return canonical, msg, settings


def leave_room_op(
    s: Session, user_id: int, nick: str, room: str, now: datetime
) -> StoredMessage | None:
    """The write of a leave, for both protocols: the membership ends and a "left"
    notice is stored; None when the user was not a member."""
    if not writes.leave_room(s, user_id, room):
        return None
    msg, _ = writes.add_message(
        s, kind=MessageKind.SYSTEM, body=f"{nick} left {room}", now=now, room=room
    )
    return msg


def _send_runs_on(f: Send) -> str:
    # A public send touches only memory; a private one looks its recipient up.
    return LOOP if f.room is not None else REQUEST


HANDLERS: dict[type[Frame], HandlerSpec] = {
    # frame type: (handler, requires login, runs on)
    Hello: HandlerSpec(Commands.hello, False, LOGIN),
    Ping: HandlerSpec(Commands.ping, False, LOOP),
    Pong: HandlerSpec(Commands.pong, False, LOOP),
    Bye: HandlerSpec(Commands.bye, False, LOOP),
    Send: HandlerSpec(Commands.send, True, _send_runs_on),
    Join: HandlerSpec(Commands.join, True, LOOP),
    Leave: HandlerSpec(Commands.leave, True, LOOP),
    Who: HandlerSpec(Commands.who, True, REQUEST),
    ListRooms: HandlerSpec(Commands.rooms, True, REQUEST),
    History: HandlerSpec(Commands.history, True, REQUEST),
    Search: HandlerSpec(Commands.search, True, REQUEST),
    ListConversations: HandlerSpec(Commands.conversations, True, REQUEST),
    Read: HandlerSpec(Commands.read, True, LOOP),
    # Moderation: the check and the change run on the writer (server/moderation.py).
    Moderate: HandlerSpec(moderation.moderate, True, LOOP),
    KeysPut: HandlerSpec(keys.keys_put, True, LOOP),
    KeysGet: HandlerSpec(keys.keys_get, True, REQUEST),
    Link: HandlerSpec(keys.link, True, LOOP),
}
