"""Who is online, which rooms they are in, and fan-out.

Rules this module keeps:
1. All state lives under one lock, held only for in-memory work: never
   across SQL, a socket call or a wait. Connections are only *enqueued to*
   (Peer.deliver never blocks), and outside the lock.
2. A message is encoded once and the same bytes go to every recipient.
3. Inside batch() (the store's writer wraps each committed group in one),
   deliveries are gathered per connection and handed over once at the end:
   one queue append per connection per group, and so one coalesced TLS
   write, instead of one per message. A connection served by an I/O loop
   gets its share on that loop's thread (one post per loop and group), so
   the writer's part of a hand-over does not grow with the audience.
4. A private message reaches the connections of its sender and its
   recipient, and nobody else.
5. Presence travels as deltas (`joined` / `left`) to a room's members; the
   full list goes only to one connection that asks (login, `who`), in pages
   that each fit the line cap. Deltas are gathered per room and sent to the
   members at once (flush_presence): a storm of n logins costs each member
   one write per flush, and the hub work per login is O(1), not O(members).
6. The hub tracks room membership only for users who are online; the
   database is the truth for everyone else.
7. A user whose last connection ended may linger: still listed as online,
   with no connections, until the presence grace runs out (expire()) or one
   of their connections comes back (attach() revives them silently).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from parley_chat.protocol import MAX_ONLINE_LISTED, Message, Presence, encode, fold, format_ts

from .store.records import StoredMessage

#: Nicks per `presence` page: the protocol's cap (2,000 nicks of at most 24
#: characters, quoted and comma-separated, stay under 56 KB, inside the line cap).
PRESENCE_PAGE = MAX_ONLINE_LISTED


class Poster(Protocol):
    """A thread that runs steps in the order they were posted (an I/O loop)."""

    def post(self, step: Callable[[], None]) -> None:
        """Run *step* on that thread soon; never blocks."""


class Peer(Protocol):
    """What the hub needs of a connection."""

    @property
    def loop(self) -> Poster | None:
        """The thread its deliveries are handed to (None: hand them over at once)."""

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        """Queue *data* for sending; never blocks. *message_id* lets a replay de-duplicate;
        *lazy* data may wait a moment to share a write (presence)."""

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue several (message id, bytes) in order; never blocks."""

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue *data*, one byte string many connections share; never blocks.

        *chunks* are the same bytes split per message, for a connection that
        holds live deliveries back while it replays (it de-duplicates by id)."""


class Sequencer(Protocol):
    """Orders committed messages before they are fanned out (server/bus_node.py)."""

    def offer(
        self,
        msg: StoredMessage,
        sender_id: int | None,
        ref: str | None,
        then: Callable[[], None] | None,
    ) -> None:
        """Deliver *msg* through Hub.deliver_now() in id order, then call *then*."""


class Observer(Protocol):
    """Told of changes other nodes must hear of (server/bus_node.py)."""

    def presence_changed(self, user_id: int, online: bool) -> None:
        """The user's presence on this node began (first connection) or ended."""

    def membership_changed(self, user_id: int) -> None:
        """The online user's rooms changed (join, leave, kick, ban)."""


@dataclass(eq=False)
class _User:
    user_id: int
    nick: str
    conns: set[Peer] = field(default_factory=set)
    rooms: dict[str, str] = field(default_factory=dict)  # fold(room) -> room name
    # fold(room) -> the presence sequence number when the user became a member:
    # deltas published before it are already in the full list it was sent.
    since: dict[str, int] = field(default_factory=dict)

    #: Non-zero while lingering (no connections, grace running): the token of
    #: this linger, so an expiry from an earlier one is recognised as stale.
    lingering: int = 0
    #: Other nodes where the user has connections (server/bus_node.py): the
    #: user is online while this is not empty, with no connection here.
    remote: set[str] = field(default_factory=set)

    @property
    def local(self) -> bool:
        """Whether the user is online on this node (connected or lingering)."""
        return bool(self.conns) or bool(self.lingering)


@dataclass(eq=False)
class _Run:
    """Consecutive messages of one room in a batch, to one unchanged audience."""

    key: str
    epoch: int
    audience: dict[Peer, int]  # connection -> its user id, snapshot under the lock
    by_user: dict[int, list[Peer]]  # the audience's connections per user id
    by_loop: dict[Poster | None, list[Peer]]  # the audience's connections per loop
    chunks: list[tuple[int | None, bytes]] = field(default_factory=list)  # plain copies
    seqs: list[int] = field(default_factory=list)  # each chunk's place in the batch
    own: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # id -> (sender, copy)


@dataclass(eq=False)
class _Batch:
    """What one batch() gathered: direct sends per connection and room runs, numbered
    in the order they were made so each connection's share keeps that order."""

    seq: int = 0
    direct: dict[Peer, list[tuple[int, int | None, bytes]]] = field(default_factory=dict)
    runs: list[_Run] = field(default_factory=list)
    open_runs: dict[str, _Run] = field(default_factory=dict)  # fold(room) -> its latest run
    after: list[Callable[[], None]] = field(default_factory=list)  # run after the hand-over


@dataclass(eq=False)
class _Part:
    """One loop's part of a batch's hand-over, applied on that loop's thread."""

    runs: list[tuple[bytes, list[tuple[int | None, bytes]], list[Peer], set[Peer]]] = field(
        default_factory=list
    )  # (shared bytes, its chunks, the loop's audience, those of it that get their own share)
    shares: list[tuple[Peer, list[tuple[int, int | None, bytes]]]] = field(
        default_factory=list
    )  # a connection's own list: (place in the batch, message id, bytes)
    done: _Countdown | None = None

    def apply(self) -> None:
        """Queue every delivery of this part, then count it done."""
        try:
            for blob, chunks, conns, skip in self.runs:
                for conn in conns:
                    if conn not in skip:
                        conn.deliver_shared(blob, chunks)
            for conn, items in self.shares:
                if len(items) == 1:
                    conn.deliver(items[0][2], items[0][1])
                else:
                    items.sort(key=lambda item: item[0])
                    conn.deliver_many([(mid, data) for _, mid, data in items])
        finally:
            if self.done is not None:
                self.done.count()


class _Countdown:
    """Runs a batch's after-steps once every loop has applied its part."""

    def __init__(self, parts: int, after: list[Callable[[], None]]) -> None:
        self._left = parts
        self._after = after
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            _run_steps(self._after)


def _run_steps(steps: list[Callable[[], None]]) -> None:
    for step in steps:
        step()


def message_frame(msg: StoredMessage, ref: str | None = None) -> Message:
    """The wire frame for a stored message (with *ref* for the sender's own copies)."""
    return Message(
        id=msg.id,
        ts=format_ts(msg.created_at),
        kind=msg.kind,
        text=msg.body,
        from_=msg.sender,
        room=msg.room,
        to=msg.recipient if msg.room is None else None,
        ref=ref,
        edited=format_ts(msg.edited_at) if msg.edited_at is not None else None,
        e2e=msg.envelope,
    )


def message_bytes(msg: StoredMessage, ref: str | None = None) -> tuple[bytes, bytes]:
    """The encoded `message` frame of a stored message, and the sender's copy with *ref*.

    The same bytes as encode(message_frame(msg)) (a test holds them equal),
    without building and checking a frame: every fan-out encodes each message,
    and what the store holds was checked on the way in.
    """
    wire: dict[str, object] = {
        "type": "message",
        "id": msg.id,
        "ts": format_ts(msg.created_at),
        "kind": msg.kind,
        "text": msg.body,
    }
    if msg.sender is not None:
        wire["from"] = msg.sender
    if msg.room is not None:
        wire["room"] = msg.room
    elif msg.recipient is not None:
        wire["to"] = msg.recipient
    tail: dict[str, object] = {}  # the frame's fields after ref, in their declared order
    if msg.edited_at is not None:
        tail["edited"] = format_ts(msg.edited_at)
    if msg.envelope is not None:
        tail["e2e"] = msg.envelope
    plain = json.dumps({**wire, **tail}, ensure_ascii=False, separators=(",", ":")).encode()
    plain += b"\n"
    if ref is None:
        return plain, plain
    wire["ref"] = ref
    wire.update(tail)
    return plain, json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def presence_pages(room: str, online: list[str], tag: str | None = None) -> list[bytes]:
    """The full online list of *room* as encoded `presence` frames, PRESENCE_PAGE nicks each.

    Every page but the last carries `more: true`; a client replaces its list
    with the first page and extends it with the rest. The first page is built
    as a checked frame; the nicks, which the hub only holds once a login
    accepted them, are not checked again one by one: at a thousand members
    that check was most of a login's cost.
    """
    pages = [online[i : i + PRESENCE_PAGE] for i in range(0, len(online), PRESENCE_PAGE)] or [[]]
    head = Presence(room=room, online=[], tag=tag).to_wire()
    out = []
    for i, page in enumerate(pages):
        wire = dict(head, online=page)
        if i < len(pages) - 1:
            wire["more"] = True
        out.append(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return out


#: A room's audience as of one epoch: (epoch, connection -> user id,
#: connections per user id, connections per loop).
_Audience = tuple[int, dict[Peer, int], dict[int, list[Peer]], dict[Poster | None, list[Peer]]]


class Hub:
    """Online users, their rooms and their connections; delivers encoded frames."""

    def __init__(self, request_flush: Callable[[], None] | None = None) -> None:
        """*request_flush* asks for a call of flush_presence() within a moment (the
        I/O loop's lazy flush); without one, presence deltas go out at once."""
        self._lock = threading.Lock()
        self._users: dict[int, _User] = {}
        self._by_nick: dict[str, int] = {}  # fold(nick) -> user id, online users only
        self._members: dict[str, dict[int, _User]] = {}  # fold(room) -> online members
        # fold(room) -> online nicks as (fold(nick), nick), kept sorted: a login
        # reads a room's list without sorting it again.
        self._sorted: dict[str, list[tuple[str, str]]] = {}
        # fold(room) -> (room name, [(number, fold(subject nick), encoded delta)]) not yet sent.
        self._lazy_presence: dict[str, tuple[str, list[tuple[int, str, bytes]]]] = {}
        self._request_flush = request_flush
        # Held while one flush hands its deltas over, so a message fanned out
        # meanwhile cannot overtake the deltas taken before it.
        self._flush_lock = threading.Lock()
        self._local = threading.local()
        self._linger_seq = 0
        # Bumped by every change of who is online or in which room, so a batch
        # can reuse one audience for a room's consecutive messages.
        self._epoch = 0
        self._pseq = 0  # numbers presence deltas and room arrivals, in order
        # fold(room) -> (epoch, audience, by user): a room's audience is built
        # once per epoch, not once per committed group (a thousand tuples).
        self._audiences: dict[str, _Audience] = {}
        #: Set when several nodes share the database (server/bus_node.py).
        self.sequencer: Sequencer | None = None
        self.observer: Observer | None = None

    def _add_member(self, key: str, user: _User) -> None:
        self._epoch += 1
        members = self._members.setdefault(key, {})
        if user.user_id not in members:
            members[user.user_id] = user
            self._pseq += 1
            user.since[key] = self._pseq
            bisect.insort(self._sorted.setdefault(key, []), (fold(user.nick), user.nick))

    def _drop_member(self, key: str, user_id: int) -> None:
        self._epoch += 1
        members = self._members.get(key)
        if members is None:
            return
        user = members.pop(user_id, None)
        if user is not None:
            nicks = self._sorted.get(key, [])
            entry = (fold(user.nick), user.nick)
            i = bisect.bisect_left(nicks, entry)
            if i < len(nicks) and nicks[i] == entry:
                del nicks[i]
        if not members:
            del self._members[key]
            self._sorted.pop(key, None)
            self._audiences.pop(key, None)

    # --- presence -----------------------------------------------------------

    def attach(self, conn: Peer, user_id: int, nick: str, rooms: list[str]) -> bool:
        """Register *conn* as one of the user's connections. True if the user just came online
        (False for a lingering user coming back within the grace: nobody is told)."""
        with self._lock:
            user = self._users.get(user_id)
            first = user is None
            began = user is None or not user.local
            if user is None:
                user = self._add_locked(user_id, nick, rooms)
            elif not user.conns:
                # Back within the grace, or online on another node only: the
                # same user again, with the rooms the database has now (in case
                # they changed meanwhile).
                user.lingering = 0
                self._set_rooms_locked(user, rooms)
            user.conns.add(conn)
            self._epoch += 1
        if began:
            self._observe_presence(user_id, True)
        return first

    def _observe_presence(self, user_id: int, online: bool) -> None:
        if self.observer is not None:
            self.observer.presence_changed(user_id, online)

    def _add_locked(self, user_id: int, nick: str, rooms: list[str]) -> _User:
        user = _User(user_id, nick, rooms={fold(r): r for r in rooms})
        self._users[user_id] = user
        self._by_nick[fold(nick)] = user_id
        for key in user.rooms:
            self._add_member(key, user)
        return user

    def _set_rooms_locked(self, user: _User, rooms: list[str]) -> None:
        wanted = {fold(r): r for r in rooms}
        for key in set(user.rooms) - set(wanted):
            self._drop_member(key, user.user_id)
        for key in set(wanted) - set(user.rooms):
            self._add_member(key, user)
        user.rooms = wanted

    def _remove_locked(self, user: _User) -> None:
        del self._users[user.user_id]
        self._by_nick.pop(fold(user.nick), None)
        for key in user.rooms:
            self._drop_member(key, user.user_id)

    def release(self, conn: Peer, user_id: int) -> int | None:
        """Forget *conn*. If it was the user's last connection, the user lingers
        (still listed as online) and the returned token must be passed to
        expire() once the grace is over; otherwise None."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            user.conns.discard(conn)
            self._epoch += 1
            if user.conns or user.lingering:
                return None
            self._linger_seq += 1
            user.lingering = self._linger_seq
            return user.lingering

    def linger(self, user_id: int, nick: str, rooms: list[str]) -> int | None:
        """List a user with no connection as online for a grace (after a server
        restart, for those the shutdown cut off). Returns the token for expire(),
        or None if the user is already known."""
        with self._lock:
            if user_id in self._users:
                return None
            user = self._add_locked(user_id, nick, rooms)
            self._linger_seq += 1
            user.lingering = self._linger_seq
            token = user.lingering
        self._observe_presence(user_id, True)
        return token

    def expire(self, user_id: int, token: int) -> tuple[str, list[str]] | None:
        """The grace of linger *token* is over: if the user is still gone, forget
        them and return (nick, the rooms to tell); None if they came back."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.conns or user.lingering != token:
                return None
            user.lingering = 0
            gone = None
            if not user.remote:  # else still online on another node: nobody is told
                self._remove_locked(user)
                gone = user.nick, list(user.rooms.values())
        self._observe_presence(user_id, False)
        return gone

    def detach(self, conn: Peer, user_id: int) -> list[str] | None:
        """Forget *conn*. If it was the user's last connection, return the rooms they were in."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            user.conns.discard(conn)
            self._epoch += 1
            if user.conns or user.lingering:
                return None
            rooms = None
            if not user.remote:  # else still online on another node
                self._remove_locked(user)
                rooms = list(user.rooms.values())
        self._observe_presence(user_id, False)
        return rooms

    def user_id_of(self, nick: str) -> int | None:
        """The id of an online user (here or on another node), else None."""
        with self._lock:
            return self._by_nick.get(fold(nick))

    def is_online(self, nick: str) -> bool:
        """True if *nick* has at least one connection."""
        with self._lock:
            return fold(nick) in self._by_nick

    def rooms_of(self, user_id: int) -> list[str]:
        """The rooms an online user is in."""
        with self._lock:
            user = self._users.get(user_id)
            return sorted(user.rooms.values(), key=fold) if user else []

    def room_count(self, user_id: int) -> int:
        """How many rooms an online user is in."""
        with self._lock:
            user = self._users.get(user_id)
            return len(user.rooms) if user else 0

    def room_name(self, user_id: int, room: str) -> str | None:
        """The canonical name of *room* if the online user is a member, else None."""
        with self._lock:
            user = self._users.get(user_id)
            return user.rooms.get(fold(room)) if user else None

    def online_in(self, room: str) -> list[str]:
        """Nicks online in *room*, sorted case-insensitively."""
        with self._lock:
            return [nick for _, nick in self._sorted.get(fold(room), ())]

    def online_nicks(self) -> list[str]:
        """The nicks of everyone online (the IRC gateway's WHO with a mask)."""
        with self._lock:
            return [u.nick for u in self._users.values()]

    def online_count(self) -> int:
        """How many users are online."""
        with self._lock:
            return len(self._users)

    def all_connections(self) -> list[Peer]:
        """Every logged-in connection (for server-wide notices: moderation's `announce`)."""
        with self._lock:
            return [c for u in self._users.values() for c in u.conns]

    # --- membership -----------------------------------------------------------

    def joined(self, user_id: int, room: str) -> None:
        """Record that an online user joined *room* (after the database did)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is not None:
                key = fold(room)
                user.rooms[key] = room
                self._add_member(key, user)
        if user is not None and self.observer is not None:
            self.observer.membership_changed(user_id)

    def left(self, user_id: int, room: str) -> None:
        """Record that an online user left *room* (after the database did)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is not None:
                key = fold(room)
                user.rooms.pop(key, None)
                self._drop_member(key, user_id)
        if user is not None and self.observer is not None:
            self.observer.membership_changed(user_id)

    # --- other nodes (server/bus_node.py) ----------------------------------------

    def remote_up(self, user_id: int, nick: str, rooms: list[str], node: str) -> bool:
        """The user has connections on *node*. True if they just came online (the
        caller tells their rooms); False if they were online already."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                user = self._add_locked(user_id, nick, rooms)
                user.remote.add(node)
                return True
            user.remote.add(node)
            return False

    def remote_down(self, user_id: int, node: str) -> tuple[str, list[str]] | None:
        """The user's last connection on *node* ended. (nick, rooms to tell) if
        they are now offline everywhere, else None."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None or node not in user.remote:
                return None
            user.remote.discard(node)
            if user.remote or user.local:
                return None
            self._remove_locked(user)
            return user.nick, list(user.rooms.values())

    def forget_node(self, node: str) -> list[tuple[str, list[str]]]:
        """*node* is gone (restarted or silent): its users are offline unless they
        are connected elsewhere. (nick, rooms to tell) of each who went offline."""
        with self._lock:
            ids = [u.user_id for u in self._users.values() if node in u.remote]
        gone = []
        for uid in ids:
            out = self.remote_down(uid, node)
            if out is not None:
                gone.append(out)
        return gone

    def set_rooms(self, user_id: int, rooms: list[str]) -> tuple[list[str], list[str]]:
        """Make an online user's rooms *rooms* (the database's, after another node
        changed them). Returns (rooms added, rooms dropped); nobody is told."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return [], []
            before = dict(user.rooms)
            self._set_rooms_locked(user, rooms)
            added = [r for k, r in user.rooms.items() if k not in before]
            dropped = [r for k, r in before.items() if k not in user.rooms]
            return added, dropped

    def local_users(self) -> list[int]:
        """The users online on this node (connected or lingering)."""
        with self._lock:
            return [u.user_id for u in self._users.values() if u.local]

    def knows(self, user_id: int) -> bool:
        """Whether the user is online (here or on another node)."""
        with self._lock:
            return user_id in self._users

    def reaches(self, room: str | None, users: tuple[int, ...] = ()) -> bool:
        """Whether a message to *room* (or between *users*) has a connection here."""
        with self._lock:
            if room is not None:
                members = self._members.get(fold(room))
                return members is not None and any(u.conns for u in members.values())
            return any((u := self._users.get(uid)) is not None and u.conns for uid in users)

    # --- fan-out --------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gather this thread's deliveries and hand them over per connection at the end."""
        if getattr(self._local, "pending", None) is not None:
            yield  # already batching: the outer batch flushes
            return
        pending = _Batch()
        self._local.pending = pending
        try:
            yield
        finally:
            self._local.pending = None
            self._hand_over(pending)

    def after_batch(self, step: Callable[[], None]) -> None:
        """Run *step* once this thread's current batch has been queued on every
        connection it reaches (at once outside a batch; on a loop's thread when
        loops take the hand-over): a caller that must know its deliveries are
        queued (the IRC gateway answers a command only after its echo) waits for it."""
        pending: _Batch | None = getattr(self._local, "pending", None)
        if pending is None:
            step()
        else:
            pending.after.append(step)

    def _hand_over(self, b: _Batch) -> None:
        """Give each connection its share of a batch, in the batch's order, then run
        the batch's after-steps.

        A connection that only reads one run (the common case: a member of a
        busy room that sent nothing in this group) gets the run's bytes as one
        string shared by all such members. The others (senders, connections
        with replies, members of several runs) get their own list, in order.
        Connections served by a loop get their shares on the loop's thread, one
        post per loop (_Part); the after-steps run once every part is queued.
        Peers without a loop get theirs here, at once.
        """
        special: set[Peer] = set(b.direct)
        if len(b.runs) == 1:
            # The common case: one room. Its senders' connections get their own copies.
            run = b.runs[0]
            for sender, _ in run.own.values():
                special.update(run.by_user.get(sender, ()))
        else:
            seen: set[Peer] = set()
            for run in b.runs:
                senders = {sender for sender, _ in run.own.values()}
                for conn, uid in run.audience.items():
                    if conn in seen or uid in senders:
                        special.add(conn)
                    seen.add(conn)
        # O(runs + special connections) here, not O(audience): the loop skips
        # the special ones as it goes (the writer waits for none of it).
        parts: dict[Poster | None, _Part] = {}
        for run in b.runs:
            blob = b"".join(data for _, data in run.chunks)
            for loop, conns in run.by_loop.items():
                part = parts.get(loop)
                if part is None:
                    part = parts[loop] = _Part()
                part.runs.append((blob, run.chunks, conns, special))
        if special:
            share: dict[Peer, list[tuple[int, int | None, bytes]]] = {
                conn: list(items) for conn, items in b.direct.items()
            }
            for run in b.runs:
                for conn in special:
                    member = run.audience.get(conn)
                    if member is None:
                        continue  # not in this run's audience
                    out = share.setdefault(conn, [])
                    for seq, (mid, data) in zip(run.seqs, run.chunks, strict=True):
                        mine = run.own.get(mid) if mid is not None else None
                        out.append((seq, mid, mine[1] if mine and mine[0] == member else data))
            for conn, items in share.items():
                loop = conn.loop
                part = parts.get(loop)
                if part is None:
                    part = parts[loop] = _Part()
                part.shares.append((conn, items))
        if not parts:
            _run_steps(b.after)
            return
        done = _Countdown(len(parts), b.after)
        for loop, part in parts.items():
            part.done = done
            if loop is None:
                part.apply()  # peers without a loop: at once, on this thread
            else:
                loop.post(part.apply)

    def _send(self, conn: Peer, data: bytes, message_id: int | None = None) -> None:
        pending: _Batch | None = getattr(self._local, "pending", None)
        if pending is None:
            conn.deliver(data, message_id)
        else:
            pending.seq += 1
            pending.direct.setdefault(conn, []).append((pending.seq, message_id, data))

    def reply(self, conn: Peer, data: bytes) -> None:
        """Queue *data* for one connection, in order with this batch's deliveries."""
        self._send(conn, data)

    def publish_presence(
        self,
        room: str,
        *,
        joined: str | None = None,
        left: str | None = None,
        extra_user: int | None = None,
    ) -> None:
        """Tell everyone online in *room* who joined or left it (a delta).

        The delta waits (with the room's others) for flush_presence(), and
        reaches the members online then, except the user it is about: a user
        who came online has the full list already, and one who went offline
        and is back must not read that it left. *extra_user*'s connections get
        it at once: a user who just left the room and must learn that they did.
        """
        data = encode(Presence(room=room, joined=joined, left=left))
        subject = fold(joined if joined is not None else left or "")
        key = fold(room)
        with self._lock:
            told: list[Peer] = []
            if extra_user is not None:
                extra = self._users.get(extra_user)
                members = self._members.get(key)
                if extra is not None and (members is None or extra_user not in members):
                    told = list(extra.conns)
            first = not self._lazy_presence
            self._pseq += 1
            self._lazy_presence.setdefault(key, (room, []))[1].append((self._pseq, subject, data))
        # The leaver learns it left in order with this batch's messages, after
        # the notice of its leave: a client that saw its own leave first would
        # take the notice for news of a room it is in.
        for conn in told:
            self._send(conn, data)
        if self._request_flush is None:
            self.flush_presence()
        elif first:
            self._request_flush()

    def flush_presence(self) -> None:
        """Send every gathered presence delta to the members of its room, one write each.

        Each member gets the room's deltas as one byte string (the same object
        for all members since before the first delta), so a storm of logins
        costs a member one queue append per flush, not one per login. A member
        gets neither the deltas published before it arrived (its full list has
        them) nor those about itself.
        """
        with self._flush_lock:
            with self._lock:
                pending, self._lazy_presence = self._lazy_presence, {}
                plan: list[tuple[Peer, bytes]] = []
                for key, (_room, items) in pending.items():
                    members = self._members.get(key)
                    if not members:
                        continue
                    first_seq = items[0][0]
                    everyone = b"".join(line for _, _, line in items)
                    subjects = {subject for _, subject, _ in items}
                    for user in members.values():
                        me = fold(user.nick)
                        since = user.since.get(key, 0)
                        if me in subjects or since >= first_seq:
                            data = b"".join(
                                line for seq, who, line in items if seq > since and who != me
                            )
                            if not data:
                                continue
                        else:
                            data = everyone
                        plan.extend((conn, data) for conn in user.conns)
            for conn, data in plan:
                conn.deliver(data)

    def deliver_message(
        self,
        msg: StoredMessage,
        sender_id: int | None,
        ref: str | None,
        *,
        then: Callable[[], None] | None = None,
    ) -> int:
        """Fan a committed message out to every connection allowed to see it, then
        run *then* (what must follow it on the connections: an ack, a leave).

        Copies for the sender's own connections carry *ref* (the sender's client
        id). With a sequencer (several nodes), the message waits its turn by id
        and this returns 0; otherwise how many connections it was queued for.
        """
        if self.sequencer is not None:
            self.sequencer.offer(msg, sender_id, ref, then)
            return 0
        count = self.deliver_now(msg, sender_id, ref)
        if then is not None:
            then()
        return count

    def deliver_now(self, msg: StoredMessage, sender_id: int | None, ref: str | None) -> int:
        """deliver_message() without waiting for a turn (the sequencer's own call)."""
        plain, own = message_bytes(msg, ref)
        if self._lazy_presence:
            # Who joined goes out before what they say (read without the lock:
            # a delta published this instant may follow the message).
            self.flush_presence()
        pending: _Batch | None = getattr(self._local, "pending", None)
        if msg.room is not None and pending is not None:
            return self._gather_room_message(pending, msg, sender_id, plain, own)
        with self._lock:
            if msg.room is not None:
                members = self._members.get(fold(msg.room))
                users = list(members.values()) if members else []
            else:
                users = []
                sender = self._users.get(sender_id) if sender_id is not None else None
                if sender is not None:
                    users.append(sender)
                if msg.recipient is not None:
                    rid = self._by_nick.get(fold(msg.recipient))
                    recipient = self._users.get(rid) if rid is not None else None
                    if recipient is not None and recipient is not sender:
                        users.append(recipient)
            targets = [
                (c, own if u.user_id == sender_id else plain) for u in users for c in u.conns
            ]
        for conn, data in targets:
            self._send(conn, data, msg.id)
        return len(targets)

    def _gather_room_message(
        self, b: _Batch, msg: StoredMessage, sender_id: int | None, plain: bytes, own: bytes
    ) -> int:
        """Add a room message to the batch's current run (a new one if the room or
        the audience changed since): O(1) per message, not O(members)."""
        assert msg.room is not None
        key = fold(msg.room)
        with self._lock:
            run = b.open_runs.get(key)
            if run is None or run.epoch != self._epoch:
                cached = self._audiences.get(key)
                if cached is not None and cached[0] == self._epoch:
                    _, audience, by_user, by_loop = cached
                else:
                    members = self._members.get(key)
                    audience = (
                        {c: u.user_id for u in members.values() for c in u.conns} if members else {}
                    )
                    by_user = {}
                    by_loop = {}
                    for c, uid in audience.items():
                        by_user.setdefault(uid, []).append(c)
                        by_loop.setdefault(c.loop, []).append(c)
                    if members:
                        self._audiences[key] = (self._epoch, audience, by_user, by_loop)
                run = _Run(key, self._epoch, audience, by_user, by_loop)
                b.runs.append(run)
                b.open_runs[key] = run
        b.seq += 1
        run.chunks.append((msg.id, plain))
        run.seqs.append(b.seq)
        if sender_id is not None and own is not plain:
            run.own[msg.id] = (sender_id, own)
        return len(run.audience)

    def send_to_user(self, user_id: int, data: bytes, skip: Peer | None = None) -> None:
        """Queue *data* for every connection of one user (but *skip*)."""
        with self._lock:
            user = self._users.get(user_id)
            conns = [c for c in user.conns if c is not skip] if user else []
        for conn in conns:
            self._send(conn, data)

    # --- moderation (server/moderation.py) -------------------------------------

    def send_to_room(self, room: str, data: bytes) -> None:
        """Queue *data* for every connection of the room's online members."""
        with self._lock:
            members = self._members.get(fold(room))
            conns = [c for u in members.values() for c in u.conns] if members else []
        for conn in conns:
            self._send(conn, data)

    def connections_of(self, user_id: int) -> list[Peer]:
        """Every connection of one user (none if offline)."""
        with self._lock:
            user = self._users.get(user_id)
            return list(user.conns) if user else []
