# server/hub.py: who is online, which rooms they are in, and fan-out.
#
# Rules this module keeps:
# 1. All state lives under one lock, held only for in-memory work: never
#    across SQL, a socket call or a wait. Connections are only *enqueued to*
#    (Connection.deliver never blocks).
# 2. A broadcast encodes the frame once and hands the same bytes to every
#    recipient connection.
# 3. A private message reaches the connections of its sender and its
#    recipient, and nobody else.
# 4. The hub tracks room membership only for users who are online; the
#    database is the truth for everyone else.

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from protocol import Message, Presence, encode, fold, format_ts

from .store.records import StoredMessage


class Peer(Protocol):
    """What the hub needs of a connection."""

    def deliver(self, data: bytes, message_id: int | None = None) -> None:
        """Queue *data* for sending; never blocks. *message_id* lets a replay de-duplicate."""


@dataclass
class _User:
    user_id: int
    nick: str
    conns: set[Peer] = field(default_factory=set)
    rooms: dict[str, str] = field(default_factory=dict)  # fold(room) -> room name


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


class Hub:
    """Online users, their rooms and their connections; delivers encoded frames."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, _User] = {}
        self._by_nick: dict[str, int] = {}  # fold(nick) -> user id, online users only

    # --- presence -----------------------------------------------------------

    def attach(self, conn: Peer, user_id: int, nick: str, rooms: list[str]) -> bool:
        """Register *conn* as one of the user's connections. True if the user just came online."""
        with self._lock:
            user = self._users.get(user_id)
            first = user is None
            if user is None:
                user = _User(user_id, nick, rooms={fold(r): r for r in rooms})
                self._users[user_id] = user
                self._by_nick[fold(nick)] = user_id
            user.conns.add(conn)
            return first

    def detach(self, conn: Peer, user_id: int) -> list[str] | None:
        """Forget *conn*. If it was the user's last connection, return the rooms they were in."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            user.conns.discard(conn)
            if user.conns:
                return None
            del self._users[user_id]
            self._by_nick.pop(fold(user.nick), None)
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

    def room_name(self, user_id: int, room: str) -> str | None:
        """The canonical name of *room* if the online user is a member, else None."""
        with self._lock:
            user = self._users.get(user_id)
            return user.rooms.get(fold(room)) if user else None

    def online_in(self, room: str) -> list[str]:
        """Nicks online in *room*, sorted case-insensitively."""
        key = fold(room)
        with self._lock:
            return self._online_in_locked(key)

    def _online_in_locked(self, key: str) -> list[str]:
        return sorted((u.nick for u in self._users.values() if key in u.rooms), key=fold)

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
                user.rooms[fold(room)] = room

    def left(self, user_id: int, room: str) -> None:
        """Record that an online user left *room* (after the database did)."""
        with self._lock:
            user = self._users.get(user_id)
            if user is not None:
                user.rooms.pop(fold(room), None)

    # --- fan-out --------------------------------------------------------------

    def publish_presence(
        self,
        room: str,
        *,
        joined: str | None = None,
        left: str | None = None,
        extra: Peer | None = None,
    ) -> None:
        """Send the room's online list (with who changed) to everyone online in it.

        *extra* also receives it (a connection that just left the room and must
        learn that it did).
        """
        key = fold(room)
        with self._lock:
            online = self._online_in_locked(key)
            data = encode(Presence(room=room, online=online, joined=joined, left=left))
            targets = {c for u in self._users.values() if key in u.rooms for c in u.conns}
        if extra is not None:
            targets.add(extra)
        for conn in targets:
            conn.deliver(data)

    def deliver_message(self, msg: StoredMessage, sender_id: int | None, ref: str | None) -> int:
        """Fan a committed message out to every connection allowed to see it.

        Copies for the sender's own connections carry *ref* (the sender's client
        id). Returns how many connections it was queued for.
        """
        plain = encode(message_frame(msg))
        own = encode(message_frame(msg, ref)) if ref is not None else plain
        with self._lock:
            if msg.room is not None:
                key = fold(msg.room)
                users = [u for u in self._users.values() if key in u.rooms]
            else:
                users = [
                    u
                    for u in self._users.values()
                    if u.user_id == sender_id
                    or (msg.recipient is not None and fold(u.nick) == fold(msg.recipient))
                ]
            targets = [
                (c, own if u.user_id == sender_id else plain) for u in users for c in u.conns
            ]
        for conn, data in targets:
            conn.deliver(data, msg.id)
        return len(targets)

    def send_to_user(self, user_id: int, data: bytes) -> None:
        """Queue *data* for every connection of one user."""
        with self._lock:
            user = self._users.get(user_id)
            conns = list(user.conns) if user else []
        for conn in conns:
            conn.deliver(data)
