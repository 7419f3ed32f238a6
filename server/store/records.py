"""Plain frozen records the store hands out.

Nothing outside the store sees an ORM object: sessions end, objects expire,
and a record can safely cross threads (the writer hands them to the hub).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from parley_chat.protocol.vocab import ConversationKind, MessageKind


def utcnow() -> datetime:
    """Naive UTC now, the form the store keeps (SQLite has no time zones)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """An account. `password_hash` is the scrypt string; never the password."""

    id: int
    nick: str
    password_hash: str
    created_at: datetime
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One line of the operator's account list (`parley-admin users`). Times naive UTC."""

    nick: str
    created_at: datetime
    deleted_at: datetime | None
    last_session: datetime | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A committed message, with names resolved. `created_at` is naive UTC."""

    id: int
    created_at: datetime
    kind: MessageKind
    room: str | None
    sender: str | None
    recipient: str | None
    body: str
    client_msg_id: str | None
    #: When its author last edited it (moderation), or None.
    edited_at: datetime | None = None
    envelope: str | None = None  #: an end-to-end encrypted message's envelope (body is '')


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room and how many members it has."""

    name: str
    members: int


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """One conversation of a user: a room they are in, or a private peer.

    `kind` says which (a room or a private peer); `name` the room or the peer's nick; `last`
    the latest message the user may see (notices left out), or None; `read`
    the user's read marker (0: none); `unread` messages from others after it.
    """

    kind: ConversationKind
    name: str
    last: StoredMessage | None
    unread: int
    read: int
