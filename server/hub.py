# server/hub.py: who is online, which rooms they are in, and fan-out.
#
# Rules this module keeps:
# 1. All state lives under one lock, held only for in-memory work: never
#    across SQL, a socket call or a wait. Connections are only *enqueued to*
#    (Peer.deliver never blocks), and outside the lock.
# 2. A message is encoded once and the same bytes go to every recipient.
# 3. Inside batch() (the store's writer wraps each committed group in one),
#    deliveries are gathered per connection and handed over once at the end:
#    one queue append and at most one loop wake-up per connection per group,
#    and so one coalesced TLS write, instead of one per message.
# 4. A private message reaches the connections of its sender and its
#    recipient, and nobody else.
# 5. Presence travels as deltas (`joined` / `left`) to a room's members; the
#    full list goes only to one connection that asks (login, `who`), in pages
#    that each fit the line cap.
# 6. The hub tracks room membership only for users who are online; the
#    database is the truth for everyone else.
# 7. A user whose last connection ended may linger: still listed as online,
#    with no connections, until the presence grace runs out (expire()) or one
#    of their connections comes back (attach() revives them silently).

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from parley_chat.protocol import MAX_ONLINE_LISTED, Message, Presence, encode, fold, format_ts

from .store.records import StoredMessage

#: Nicks per `presence` page: the protocol's cap (2,000 nicks of at most 24
#: characters, quoted and comma-separated, stay under 56 KB, inside the line cap).
PRESENCE_PAGE = MAX_ONLINE_LISTED


class Peer(Protocol):
    """What the hub needs of a connection."""

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        """Queue *data* for sending; never blocks. *message_id* lets a replay de-duplicate;
        *lazy* data may wait a moment to share a write (presence)."""

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue several (message id, bytes) in order; never blocks."""


@dataclass(eq=False)
class _User:
    user_id: int
    nick: str
    conns: set[Peer] = field(default_factory=set)
    rooms: dict[str, str] = field(default_factory=dict)  # fold(room) -> room name
    #: Non-zero while lingering (no connections, grace running): the token of
    #: this linger, so an expiry from an earlier one is recognised as stale.
    lingering: int = 0


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
    )


def presence_pages(room: str, online: list[str], tag: str | None = None) -> list[bytes]:
    """The full online list of *room* as encoded `presence` frames, PRESENCE_PAGE nicks each.

    Every page but the last carries `more: true`; a client replaces its list
    with the first page and extends it with the rest.
    """
    pages = [online[i : i + PRESENCE_PAGE] for i in range(0, len(online), PRESENCE_PAGE)] or [[]]
    return [
        encode(Presence(room=room, online=page, tag=tag, more=True if i < len(pages) - 1 else None))
        for i, page in enumerate(pages)
    ]


class Hub:
    """Online users, their rooms and their connections; delivers encoded frames."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, _User] = {}
        self._by_nick: dict[str, int] = {}  # fold(nick) -> user id, online users only
        self._members: dict[str, dict[int, _User]] = {}  # fold(room) -> online members
        self._local = threading.local()
        self._linger_seq = 0

    # --- presence -----------------------------------------------------------

    def attach(self, conn: Peer, user_id: int, nick: str, rooms: list[str]) -> bool:
        """Register *conn* as one of the user's connections. True if the user just came online
        (False for a lingering user coming back within the grace: nobody is told)."""
        with self._lock:
            user = self._users.get(user_id)
            first = user is None
            if user is None:
                user = self._add_locked(user_id, nick, rooms)
            elif user.lingering:
                # Back within the grace: the same user again, with the rooms the
                # database has now (in case they changed meanwhile).
                user.lingering = 0
                self._set_rooms_locked(user, rooms)
            user.conns.add(conn)
            return first

    def _add_locked(self, user_id: int, nick: str, rooms: list[str]) -> _User:
        user = _User(user_id, nick, rooms={fold(r): r for r in rooms})
        self._users[user_id] = user
        self._by_nick[fold(nick)] = user_id
        for key in user.rooms:
            self._members.setdefault(key, {})[user_id] = user
        return user

    def _set_rooms_locked(self, user: _User, rooms: list[str]) -> None:
        wanted = {fold(r): r for r in rooms}
        for key in set(user.rooms) - set(wanted):
            self._drop_member_locked(key, user.user_id)
        for key in set(wanted) - set(user.rooms):
            self._members.setdefault(key, {})[user.user_id] = user
        user.rooms = wanted

    def _drop_member_locked(self, key: str, user_id: int) -> None:
        members = self._members.get(key)
        if members is not None:
            members.pop(user_id, None)
            if not members:
                del self._members[key]

    def _remove_locked(self, user: _User) -> None:
        del self._users[user.user_id]
        self._by_nick.pop(fold(user.nick), None)
        for key in user.rooms:
            self._drop_member_locked(key, user.user_id)

    def release(self, conn: Peer, user_id: int) -> int | None:
        """Forget *conn*. If it was the user's last connection, the user lingers
        (still listed as online) and the returned token must be passed to
        expire() once the grace is over; otherwise None."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            user.conns.discard(conn)
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
            return user.lingering

    def expire(self, user_id: int, token: int) -> tuple[str, list[str]] | None:
        """The grace of linger *token* is over: if the user is still gone, forget
        them and return (nick, the rooms to tell); None if they came back."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.conns or user.lingering != token:
                return None
            self._remove_locked(user)
            return user.nick, list(user.rooms.values())

    def detach(self, conn: Peer, user_id: int) -> list[str] | None:
        """Forget *conn*. If it was the user's last connection, return the rooms they were in."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            user.conns.discard(conn)
            if user.conns:
                return None
            self._remove_locked(user)
            return list(user.rooms.values())

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
            members = self._members.get(fold(room))
            nicks = [u.nick for u in members.values()] if members else []
        return sorted(nicks, key=fold)

    def online_count(self) -> int:
        """How many users are online."""
        with self._lock:
            return len(self._users)

    def all_connections(self) -> list[Peer]:
        """Every logged-in connection (for shutdown notices)."""
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
                self._members.setdefault(key, {})[user_id] = user

    def left(self, user_id: int, room: str) -> None:
        """Record that an online user left *room* (after the database did)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is not None:
                key = fold(room)
                user.rooms.pop(key, None)
                members = self._members.get(key)
                if members is not None:
                    members.pop(user_id, None)
                    if not members:
                        del self._members[key]

    # --- fan-out --------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gather this thread's deliveries and hand them over per connection at the end."""
        if getattr(self._local, "pending", None) is not None:
            yield  # already batching: the outer batch flushes
            return
        pending: dict[Peer, list[tuple[int | None, bytes]]] = {}
        self._local.pending = pending
        try:
            yield
        finally:
            self._local.pending = None
            for conn, chunks in pending.items():
                if len(chunks) == 1:
                    conn.deliver(chunks[0][1], chunks[0][0])
                else:
                    conn.deliver_many(chunks)

    def _send(self, conn: Peer, data: bytes, message_id: int | None = None) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            conn.deliver(data, message_id)
        else:
            pending.setdefault(conn, []).append((message_id, data))

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
        skip_user: int | None = None,
    ) -> None:
        """Tell everyone online in *room* who joined or left it (a delta).

        *extra_user*'s connections also get it (a user who just left the room
        and must learn that they did); *skip_user*'s do not (a user who just
        came online has the full list already).
        """
        data = encode(Presence(room=room, joined=joined, left=left))
        with self._lock:
            members = self._members.get(fold(room))
            targets = (
                [c for u in members.values() if u.user_id != skip_user for c in u.conns]
                if members
                else []
            )
            told: list[Peer] = []
            if extra_user is not None:
                extra = self._users.get(extra_user)
                if extra is not None and (members is None or extra_user not in members):
                    told = list(extra.conns)
        # Lazily: a delta may wait a few tens of milliseconds to share a write
        # with other deltas (a login storm) or with the next message.
        for conn in targets:
            conn.deliver(data, lazy=True)
        # The leaver learns it left in order with this batch's messages, after
        # the notice of its leave: a client that saw its own leave first would
        # take the notice for news of a room it is in.
        for conn in told:
            self._send(conn, data)

    def deliver_message(self, msg: StoredMessage, sender_id: int | None, ref: str | None) -> int:
        """Fan a committed message out to every connection allowed to see it.

        Copies for the sender's own connections carry *ref* (the sender's client
        id). Returns how many connections it was queued for.
        """
        plain = encode(message_frame(msg))
        own = encode(message_frame(msg, ref)) if ref is not None else plain
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

    def send_to_user(self, user_id: int, data: bytes, skip: Peer | None = None) -> None:
        """Queue *data* for every connection of one user (but *skip*)."""
        with self._lock:
            user = self._users.get(user_id)
            conns = [c for c in user.conns if c is not skip] if user else []
        for conn in conns:
            self._send(conn, data)
