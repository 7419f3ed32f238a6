"""The typed SQLAlchemy 2.x models: the schema's source
of truth for Python. Alembic migrations create exactly this (a test compares
them); the chat_log view, the FTS5 index (pg_trgm on PostgreSQL) and
PostgreSQL's message id counter live in the migrations only, because
SQLAlchemy has no model for them (see migrations/versions/0005_postgres.py).

Times are naive UTC datetimes (SQLite has no time zones; PostgreSQL's columns
are TIMESTAMP WITHOUT TIME ZONE to match); the wire adds "Z".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

from parley_chat.protocol.vocab import MessageKind

from .vocab import SanctionKind, sql_in

# Named constraints make migrations (and SQLite batch mode) deterministic.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Every integer column: SQLite's INTEGER is 64 bits (and INTEGER PRIMARY KEY is the
#: rowid), PostgreSQL's is 32, so there it is BIGINT: ids up to 2**63 - 1 (the
#: protocol's MAX_ID) on both.
Id = Integer().with_variant(BigInteger(), "postgresql")

#: Column widths that writes cut to (PostgreSQL's VARCHAR refuses longer values;
#: SQLite would keep them). A reason is prose for the operator (a session's end,
#: a lock, a sanction, an audit row); a peer is "address:port" (an IPv6 one with
#: its port fits); a client is hello.client (the protocol allows 100 characters:
#: the first 64 are kept, enough to tell "parley-gui 0.1" from a script).
REASON_CHARS = 200
PEER_CHARS = 64
CLIENT_CHARS = 64


class Base(DeclarativeBase):
    """Declarative base with the project's constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: Id}


class User(Base):
    """An account. `nick_key` is the case-folded nick, unique; NULL once deleted,
    so a deleted account's nick can be registered again while its messages stay
    attributed to the removed account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    nick: Mapped[str] = mapped_column(String(24))
    nick_key: Mapped[str | None] = mapped_column(String(24), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Moderation: a server operator (granted with parley-admin op); a locked
    # account cannot log in until unlocked.
    operator: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    locked_at: Mapped[datetime | None] = mapped_column(DateTime)
    lock_reason: Mapped[str | None] = mapped_column(String(REASON_CHARS))


class ResumeToken(Base):
    """A resume token: only its SHA-256 is stored. Expires; revoked on password reset."""

    __tablename__ = "resume_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class ChatSession(Base):
    """One connection's login: who, from where, when, and why it ended.

    Named ChatSession so it never shadows SQLAlchemy's Session."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_node_ended_at", "node", "ended_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("resume_tokens.id"))
    peer: Mapped[str] = mapped_column(String(PEER_CHARS))
    client: Mapped[str | None] = mapped_column(String(CLIENT_CHARS))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_active_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(REASON_CHARS))
    #: The server node that opened it (ServerConfig.node); NULL for rows from before
    #: nodes existed. A node's start-up closes its own open sessions only.
    node: Mapped[str | None] = mapped_column(String(64))


class Room(Base):
    """A room. `name_key` is the case-folded name, unique."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(33))
    name_key: Mapped[str] = mapped_column(String(33), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Moderation. owner_id is the creator (no foreign key: SQLite cannot add
    # one to an existing table without rebuilding it, which would drop the
    # FTS triggers and the chat_log view with it).
    owner_id: Mapped[int | None] = mapped_column(Id)
    topic: Mapped[str | None] = mapped_column(String(300))
    private: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class RoomMember(Base):
    """Membership: persists across sessions, so a rejoin restores a user's rooms."""

    __tablename__ = "room_members"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime)


class Message(Base):
    """Every message: public (room), private (recipient) or system (room).

    AUTOINCREMENT keeps ids strictly increasing even after deletes, which
    replay ("everything after id N") depends on. UNIQUE(sender_id,
    client_msg_id) makes a re-sent message a duplicate, never a second row.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("sender_id", "client_msg_id"),
        CheckConstraint(sql_in("kind", MessageKind), name="kind"),
        CheckConstraint("(room_id IS NULL) <> (recipient_id IS NULL)", name="one_target"),
        CheckConstraint("(kind = 'private') = (recipient_id IS NOT NULL)", name="private_target"),
        Index("ix_messages_room_id_id", "room_id", "id"),
        Index("ix_messages_recipient_id_id", "recipient_id", "id"),
        Index("ix_messages_sender_id_id", "sender_id", "id"),
        # Only deleted or edited messages: a rejoin's catch-up asks for those
        # changed since the user's last session (migration 0006).
        Index(
            "ix_messages_deleted_at",
            "deleted_at",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        Index(
            "ix_messages_edited_at",
            "edited_at",
            sqlite_where=text("edited_at IS NOT NULL"),
            postgresql_where=text("edited_at IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    #: A MessageKind (the column holds its string).
    kind: Mapped[str] = mapped_column(String(8))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    # Moderation: the body is the latest version (older ones in
    # message_versions); a deleted message stays, marked, for the operator.
    edited_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(Id)
    #: An end-to-end encrypted private message's envelope (then `body` is ''):
    #: opaque to the server, never indexed for search (docs/security.md).
    envelope: Mapped[str | None] = mapped_column(Text)


class ReadMarker(Base):
    """How far a user has read one conversation: a room (`room_id`) or the private
    conversation with one peer (`peer_id`), exactly one of the two.

    `message_id` only moves forward. It is not a foreign key: a marker is a
    position in the id sequence, not a reference to one row.
    """

    __tablename__ = "read_markers"
    __table_args__ = (
        UniqueConstraint("user_id", "room_id"),
        UniqueConstraint("user_id", "peer_id"),
        CheckConstraint("(room_id IS NULL) <> (peer_id IS NULL)", name="one_target"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    peer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    message_id: Mapped[int] = mapped_column(Id)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class UserKey(Base):
    """An account's published end-to-end public keys (base64): the key directory.

    Only public keys: the secret ones never leave the user's devices. `sig` is
    the identity key's signature over the box key (clients verify it).
    """

    __tablename__ = "user_keys"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    sign_key: Mapped[str] = mapped_column(String(44))
    box_key: Mapped[str] = mapped_column(String(44))
    sig: Mapped[str] = mapped_column(String(88))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class ServerSetting(Base):
    """Operator settings that outlive a restart (e.g. registration_open)."""

    __tablename__ = "server_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class RoomModerator(Base):
    """A moderator of one room, granted by its owner or an operator."""

    __tablename__ = "room_moderators"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime] = mapped_column(DateTime)


class RoomInvite(Base):
    """An invitation to a private room: the user may join it (and rejoin) until kicked or banned."""

    __tablename__ = "room_invites"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    invited_at: Mapped[datetime] = mapped_column(DateTime)


class RoomSanction(Base):
    """A ban or a mute of one account in one room. In force while `lifted_at` is
    NULL and `until` is NULL (no end) or still ahead."""

    __tablename__ = "room_sanctions"
    __table_args__ = (
        CheckConstraint(sql_in("kind", SanctionKind), name="kind"),
        Index("ix_room_sanctions_room_id_user_id", "room_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: A SanctionKind.
    kind: Mapped[str] = mapped_column(String(8))
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(String(REASON_CHARS))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    until: Mapped[datetime | None] = mapped_column(DateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime)
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class MessageVersion(Base):
    """An earlier text of an edited message: `version` 1 is the original.
    messages.body always holds the latest, so the log keeps every version."""

    __tablename__ = "message_versions"
    __table_args__ = (UniqueConstraint("message_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    version: Mapped[int] = mapped_column(Id)
    body: Mapped[str] = mapped_column(Text)
    replaced_at: Mapped[datetime] = mapped_column(DateTime)


class ModerationAction(Base):
    """The audit log: one row per moderation action, by whom (NULL actor: the
    admin CLI), what, on whom, where, when and why."""

    __tablename__ = "moderation_actions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(16))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    target_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    reason: Mapped[str | None] = mapped_column(String(REASON_CHARS))
    until: Mapped[datetime | None] = mapped_column(DateTime)
    detail: Mapped[str | None] = mapped_column(Text)


#: What the migrations make by hand for one dialect and no model describes: SQLite's
#: FTS5 tables (messages_fts*), PostgreSQL's message id counter and pg_trgm index.
HAND_MADE_TABLES = ("messages_fts", "message_counter")
HAND_MADE_INDEXES = ("ix_messages_body_trgm",)


def compared_with_models(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's include_object filter: leave the hand-made tables and indexes (which no
    model describes) out when the database is compared with these models."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(HAND_MADE_TABLES)
    if type_ == "index":
        return name not in HAND_MADE_INDEXES
    return True
