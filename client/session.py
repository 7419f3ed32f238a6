"""The client side of a parley session, sans-IO: frames in, events and frames out.

ClientSession keeps the promises of the protocol on the client side (docs/protocol.md)
and nothing else: it has no sockets, starts no threads and reads no clock (every
method that needs the time takes ``now``, a monotonic reading, as an argument).
client/connection.py's ChatClient is the I/O shell around it, as httpcore is
around h11: it connects, verifies the server, reads frames and hands each one to
`receive`, puts the events it returns on its queue, and writes what
`frames_to_send` returns.

The caller drives it in three steps, for each established connection:
  1. `hello(...)` builds the login frame; after the server's welcome,
     `welcomed(...)` adopts it and queues the resends.
  2. Every frame from the server goes to `receive(frame, now)` (replies such as
     a pong go to the outbox; receive never calls on_outgoing); requests
     (`send_text`, `request`, ...) queue frames; `frames_to_send()` drains them;
     `tick(now)` queues what a timer made due (`next_deadline()` says when).
  3. When the connection ends, `connection_lost()`; the next login starts at 1
     with the same session, so the server replays exactly what was missed.

Delivery rules kept here:
  - Every send gets a fresh client id and stays in `pending` until an `ack`, or
    a `message` carrying that id as `ref`, proves it was stored. After any new
    login every pending send is queued again with its ORIGINAL id; the server
    stores each id once and answers a resend with the original ack.
  - Live and replayed messages are delivered once: ids already delivered are
    dropped (SeenIds). History and search pages always pass.
  - `last_seen` is the greatest id delivered live or by replay; `hello` sends it.

Threads: the session never blocks and is safe to call from several threads.
Requests (from any thread of the application) and `receive` (from the I/O
thread) meet at one lock, held only for in-memory work and never while the
end-to-end hooks run, so a hook may call back into the session.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from parley_chat.protocol import (
    DEFAULT_ROOM,
    MAX_TEXT_CHARS,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Conversations,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Keys,
    Link,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    Presence,
    Read,
    RoomList,
    Send,
    Welcome,
    fold,
)
from parley_chat.protocol.vocab import BatchKind, BatchState, ConversationKind, MessageKind

from .events import (
    Acked,
    BatchEnded,
    BatchStarted,
    ClientEvent,
    Connected,
    ConversationsListed,
    ConversationSummary,
    ErrorReply,
    MessageReceived,
    PresenceChanged,
    ReadMoved,
    RoomJoined,
    RoomLeft,
    RoomsListed,
)
from .moderation import event_for as _moderation_event

log = logging.getLogger("parley.client")

#: Delivered ids remembered for de-duplication; older ones fold into a floor.
SEEN_IDS_KEPT = 10_000
#: A send the server could not store (store-failed) is tried again after this many seconds.
STORE_RETRY_DELAY = 5.0
#: The text shown for an encrypted message that cannot be read here.
E2E_PLACEHOLDER = "[end-to-end encrypted]"
#: Server error codes that announce the server is about to close the connection.
CLOSING_CODES = frozenset(
    {
        ErrorCode.SHUTDOWN,
        ErrorCode.TIMEOUT,
        ErrorCode.FLOOD,
        ErrorCode.LINE_TOO_LONG,
        ErrorCode.TOO_MANY_CONNECTIONS,
        ErrorCode.DISCONNECTED,
    }
)


class E2EHooks(Protocol):
    """What the session asks of end-to-end encryption (client/e2e/session.E2ESession).

    They run on the thread that calls `receive` and must not block on the network.
    """

    def open(self, m: Message) -> tuple[Message, str | None]:
        """The message decrypted (text = plaintext, e2e None), and None or why it could not be."""

    def on_frame(self, frame: Keys | Link) -> None:
        """A key directory answer or a link frame arrived."""

    def on_error(self, frame: Error) -> None:
        """An error frame arrived (a refused keys_put or link)."""

    def preview(self, message_id: int) -> str | None:
        """This device's decrypted text of message *message_id*, if it has it."""


class SeenIds:
    """Ids already delivered, for de-duplication, in bounded memory.

    Ids at or below `floor` count as seen: the initial floor is the `last_seen`
    a session started from, and the oldest remembered ids fold into it when
    more than *keep* are held.
    """

    def __init__(self, floor: int = 0, keep: int = SEEN_IDS_KEPT) -> None:
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


class ClientSession:
    """One user's session with a parley server, across any number of connections.

    *nick* is the nick asked for at login; *token* a resume token and *last_seen*
    the id of the last message shown, both from an earlier session (or None).
    *on_outgoing*, when given, is called (without any lock held) each time the
    outbox turns non-empty while logged in: the I/O shell wakes its writer there.
    """

    def __init__(
        self,
        nick: str,
        *,
        token: str | None = None,
        last_seen: int | None = None,
        on_outgoing: Callable[[], None] | None = None,
    ) -> None:
        self._requested_nick = nick
        self._nick = nick
        self._token = token
        self._last_seen = last_seen
        self._seen = SeenIds(last_seen or 0)
        self._on_outgoing = on_outgoing
        self._max_text = MAX_TEXT_CHARS
        self._flood_rate: float | None = None
        self._flood_burst: int | None = None
        #: End-to-end encryption, when attached (client/e2e/session.py).
        self.e2e: E2EHooks | None = None

        # Touched by receive() only (the one thread that reads frames).
        self._batch: _OpenBatch | None = None
        self._acked_max = 0  # greatest message id the server acked to us
        self._retry_at: dict[str, float] = {}
        self._conversation_pages: list[ConversationSummary] = []
        self._online: dict[str, dict[str, str]] = {}  # fold(room) -> {fold(nick): nick}
        self._online_pages: dict[str, list[str]] = {}  # a paged list being received
        self._room_pages: list[tuple[str, int, bool]] = []  # a paged `rooms` answer
        self._closing_reason: str | None = None

        # Shared with the requesting threads, under _lock.
        self._lock = threading.Lock()
        self._pending: dict[str, Send] = {}  # insertion order = send order
        self._outbox: list[Frame] = []  # for the live connection
        self._deferred: list[Frame] = []  # requests made while logged out
        self._live = False
        self._rooms: dict[str, str] = {}  # fold(room) -> room name

    # --- state ---------------------------------------------------------------------

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
    def logged_in(self) -> bool:
        """True between `welcomed()` and `connection_lost()`."""
        return self._live

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

    @property
    def settled(self) -> bool:
        """True when every send is acked and every acked send's own copy has come back.

        A graceful close waits for this: parley's server sends the echo before
        the ack, but a bye must not cut an echo off on a server that does not.
        """
        with self._lock:
            return not self._pending and self._acked_max <= (self._last_seen or 0)

    @property
    def closing_reason(self) -> str | None:
        """ "code: message" of an error announcing the server closes this connection, or None."""
        return self._closing_reason

    # --- logging in ---------------------------------------------------------------------

    def hello(
        self,
        *,
        password: str | None = None,
        token: str | None = None,
        register: bool = False,
        client_name: str = "parley-lib",
    ) -> Hello:
        """The login frame: with the resume *token* or the *password*, and `last_seen`."""
        return Hello(
            version=PROTOCOL_VERSION,
            nick=self._requested_nick,
            password=password,
            token=token,
            register=register and password is not None,
            last_seen=self._last_seen,
            client=client_name,
        )

    def forget_token(self) -> None:
        """The server refused the resume token: the next login uses the password."""
        self._token = None

    def welcomed(
        self, welcome: Welcome, *, resumed: bool, tls_version: str, fingerprint: str
    ) -> list[ClientEvent]:
        """The server welcomed us: adopt its view and queue the resends. Returns [Connected].

        Resends go first, in their original order and with their original ids,
        then the requests made while logged out.
        """
        self._token = welcome.token
        self._nick = welcome.nick
        self._max_text = welcome.max_text or MAX_TEXT_CHARS
        flood = welcome.flood or {}
        self._flood_rate = flood.get("rate")
        self._flood_burst = flood.get("burst")
        self._batch = None
        self._retry_at.clear()
        self._closing_reason = None
        self._conversation_pages = []
        self._online, self._online_pages, self._room_pages = {}, {}, []
        with self._lock:
            self._rooms = {fold(r): r for r in welcome.rooms}
            # Flipping _live under the same lock keeps a send racing with this
            # in order behind the resends (and never sent twice).
            self._outbox = [*self._pending.values(), *self._deferred]
            self._deferred.clear()
            self._live = True
            resends = len(self._pending)
        if resends:
            log.info("re-sending %d unacked message(s)", resends)
        return [
            Connected(
                nick=welcome.nick,
                rooms=tuple(welcome.rooms),
                server=welcome.server,
                created=welcome.created,
                resumed=resumed,
                tls_version=tls_version,
                fingerprint=fingerprint,
            )
        ]

    def connection_lost(self) -> None:
        """The connection ended. Pending sends stay; queued requests in flight are lost."""
        with self._lock:
            self._live = False
            self._outbox.clear()

    # --- requests -----------------------------------------------------------------------

    def send_text(self, text: str, room: str | None = None, to: str | None = None) -> str:
        """Queue *text* for *room* (default #lobby) or privately *to* a nick; its client id.

        Raises LocalProtocolError for text or names the protocol refuses.
        """
        if room is None and to is None:
            room = DEFAULT_ROOM
        if len(text) > self._max_text:
            raise LocalProtocolError(
                ErrorCode.TEXT_TOO_LONG, f"message text is over {self._max_text} characters"
            )
        return self._send(Send(id=uuid.uuid4().hex, text=text, room=room, to=to))

    def send_envelope(self, to: str, envelope: str) -> str:
        """Queue an end-to-end encrypted private message (its envelope) *to* a nick."""
        return self._send(Send(id=uuid.uuid4().hex, text="", to=to, e2e=envelope))

    def _send(self, frame: Send) -> str:
        with self._lock:
            self._pending[frame.id] = frame
            # While logged out the send waits in pending; the next login queues it.
            nudge = self._live and self._queue_locked(frame)
        if nudge:
            self._nudge()
        return frame.id

    def restore_pending(self, frames: Iterable[Send]) -> None:
        """Adopt unacked sends of an earlier session (kept across a restart, say).

        They go out at the next login, after any already pending, with their
        original client ids, so the server stores each at most once.
        """
        with self._lock:
            for frame in frames:
                self._pending.setdefault(frame.id, frame)

    def request(self, frame: Frame) -> None:
        """Queue any client frame; while logged out it waits for the next login."""
        with self._lock:
            if self._live:
                nudge = self._queue_locked(frame)
            else:
                self._deferred.append(frame)
                nudge = False
        if nudge:
            self._nudge()

    def ping(self, token: str) -> None:
        """Queue a ping, only while logged in (a ping for a later connection means nothing)."""
        with self._lock:
            nudge = self._live and self._queue_locked(Ping(token=token))
        if nudge:
            self._nudge()

    def frames_to_send(self) -> list[Frame]:
        """Take every queued frame, in order (an empty list when there is none)."""
        with self._lock:
            out, self._outbox = self._outbox, []
        return out

    @property
    def has_outgoing(self) -> bool:
        """True when frames_to_send() would return something."""
        return bool(self._outbox)

    def _queue_locked(self, frame: Frame) -> bool:
        self._outbox.append(frame)
        return len(self._outbox) == 1

    def _nudge(self) -> None:
        if self._on_outgoing is not None:
            self._on_outgoing()

    # --- timers -------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Queue again the sends whose store-failed retry is due at *now*."""
        for client_id, due in list(self._retry_at.items()):
            if due <= now:
                del self._retry_at[client_id]
                with self._lock:
                    frame = self._pending.get(client_id)
                    if frame is not None and self._live:
                        self._outbox.append(frame)

    def next_deadline(self) -> float | None:
        """When `tick` next has work (a monotonic time), or None."""
        return min(self._retry_at.values(), default=None)

    # --- frames -> events ---------------------------------------------------------------

    def receive(self, frame: Frame, now: float = 0.0) -> list[ClientEvent]:
        """Turn one server frame into state changes and the events to report.

        *now* (monotonic seconds) schedules the retry of a send the server
        could not store. Replies the protocol requires (a pong) go to the outbox.
        """
        events: list[ClientEvent] = []
        if isinstance(frame, Message):
            self._on_message(frame, events)
        elif isinstance(frame, Ack):
            if frame.id > self._acked_max and not frame.duplicate:
                self._acked_max = frame.id
            self._resolve(frame.ref, frame.id, frame.ts, frame.duplicate, events)
        elif isinstance(frame, Batch):
            self._on_batch(frame, events)
        elif isinstance(frame, Presence):
            self._on_presence(frame, events)
        elif isinstance(frame, RoomList):
            self._room_pages.extend(
                (str(r.get("name", "")), int(r.get("members", 0)), bool(r.get("joined")))
                for r in frame.rooms
            )
            if not frame.more:  # a paged list is shown once, whole
                rooms, self._room_pages = tuple(self._room_pages), []
                events.append(RoomsListed(rooms=rooms, tag=frame.tag))
        elif isinstance(frame, Conversations):
            self._conversation_pages.extend(summary(item, self.e2e) for item in frame.items)
            if not frame.more:  # a paged list is shown once, whole
                items, self._conversation_pages = tuple(self._conversation_pages), []
                events.append(ConversationsListed(items=items, tag=frame.tag))
        elif isinstance(frame, Read):
            if frame.room is not None:
                events.append(ReadMoved(ConversationKind.ROOM, frame.room, frame.id))
            elif frame.with_ is not None:
                events.append(ReadMoved(ConversationKind.PRIVATE, frame.with_, frame.id))
        elif isinstance(frame, Error):
            self._on_error(frame, now, events)
        elif isinstance(frame, Keys | Link):
            hooks = self.e2e
            if hooks is not None:
                try:
                    hooks.on_frame(frame)
                except Exception:  # a bug there must not end the caller's I/O loop
                    log.exception("end-to-end encryption failed on a %s frame", frame.TYPE)
        elif isinstance(frame, Ping):
            with self._lock:
                if self._live:
                    self._outbox.append(Pong(token=frame.token))
        elif isinstance(frame, Pong):
            pass  # the shell counts any frame as a sign of life
        elif (event := _moderation_event(frame)) is not None:
            events.append(event)
        else:
            log.warning("unexpected %s frame from the server, ignored", frame.TYPE)
        return events

    def _on_message(self, m: Message, events: list[ClientEvent]) -> None:
        if m.ref is not None:
            # Our own message came back: it is stored, even if its ack was lost.
            self._resolve(m.ref, m.id, m.ts, False, events)
        batch = self._batch
        if batch is not None and batch.kind in (BatchKind.HISTORY, BatchKind.SEARCH):
            # Asked for by the user: always shown, and they do not move last_seen.
            events.append(self._received(m, batch.kind, batch.tag))
            return
        if not self._seen.add(m.id):
            return
        if self._last_seen is None or m.id > self._last_seen:
            with self._lock:
                self._last_seen = m.id
        if batch is None:
            events.append(self._received(m, None, None))
        else:
            events.append(self._received(m, batch.kind, batch.tag))

    def _received(self, m: Message, batch: str | None, tag: str | None) -> MessageReceived:
        if m.e2e is None:
            return MessageReceived(m, batch, tag)
        hooks = self.e2e
        if hooks is None:
            shown = dataclasses.replace(m, text=E2E_PLACEHOLDER, e2e=None)
            return MessageReceived(shown, batch, tag, True, "end-to-end encryption is off here")
        try:
            opened, error = hooks.open(m)
        except Exception:  # a bug there must not end the caller's I/O loop
            log.exception("could not open an encrypted message")
            opened = dataclasses.replace(m, text=E2E_PLACEHOLDER, e2e=None)
            error = "this client failed to decrypt it"
        return MessageReceived(opened, batch, tag, True, error)

    def _resolve(
        self, client_id: str, message_id: int, ts: str, duplicate: bool, events: list[ClientEvent]
    ) -> None:
        with self._lock:
            frame = self._pending.pop(client_id, None)
        self._retry_at.pop(client_id, None)
        if frame is not None:
            events.append(Acked(client_id, message_id, ts, duplicate))

    def _on_batch(self, f: Batch, events: list[ClientEvent]) -> None:
        if f.state == BatchState.OPEN:
            if f.kind == BatchKind.REPLAY and not f.gap and self._last_seen is None:
                # A complete replay (nothing left out) when this client had seen
                # nothing: whatever follows is new, so a later rejoin asks for
                # everything after it, even if the replay turns out empty.
                with self._lock:
                    self._last_seen = 0
            self._batch = _OpenBatch(f.kind, f.tag, f.target)
            events.append(BatchStarted(f.kind, f.tag, f.target, f.gap))
        else:
            self._batch = None
            events.append(BatchEnded(f.kind, f.tag, f.target, f.more, f.count or 0))

    def _on_presence(self, f: Presence, events: list[ClientEvent]) -> None:
        me = fold(self._nick)
        key = fold(f.room)
        if f.joined is not None and fold(f.joined) == me:
            with self._lock:
                new = key not in self._rooms
                self._rooms[key] = f.room
            if new:
                events.append(RoomJoined(f.room))
        if f.left is not None and fold(f.left) == me:
            with self._lock:
                gone = self._rooms.pop(key, None) is not None
            if gone:
                events.append(RoomLeft(f.room))
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
        events.append(
            PresenceChanged(room=f.room, online=online, joined=f.joined, left=f.left, tag=f.tag)
        )

    def _on_error(self, f: Error, now: float, events: list[ClientEvent]) -> None:
        if f.ref is not None:
            with self._lock:
                if f.code == ErrorCode.STORE_FAILED and f.ref in self._pending:
                    # Not stored, but may be later: keep it pending and try again.
                    self._retry_at[f.ref] = now + STORE_RETRY_DELAY
                else:
                    # Refused for good (bad text, not in the room, ...): never acked.
                    self._pending.pop(f.ref, None)
        if f.code in CLOSING_CODES:
            self._closing_reason = f"{f.code}: {f.message}"
        hooks = self.e2e
        if hooks is not None:
            hooks.on_error(f)
        events.append(ErrorReply(f.code, f.message, f.ref))


def summary(item: dict[str, object], hooks: E2EHooks | None = None) -> ConversationSummary:
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
        if message.kind == MessageKind.PRIVATE and not message.text:
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
