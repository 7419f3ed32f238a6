"""moderation: operators and locked accounts, room owners, topics and private
rooms, moderators, invitations, bans and mutes, edited and deleted messages,
and the audit log (issue 11).

Columns on existing tables are added in place (ALTER TABLE ADD COLUMN), never
by rebuilding a table: a rebuild of `messages` would drop its FTS triggers and
the chat_log view. So those columns carry no foreign keys.

Revision ID: 0003_moderation
Revises: 0002
Create Date: 2026-12-01 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: Integer columns: INTEGER on SQLite (64 bits; the rowid for a primary key),
#: BIGINT on PostgreSQL (see models.Id).
_INT = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

revision: str = "0003_moderation"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CHAT_LOG_V1 = """CREATE VIEW chat_log AS
    SELECT m.id AS id,
           m.created_at AS ts,
           r.name AS room,
           s.nick || CASE WHEN s.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS sender,
           t.nick || CASE WHEN t.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS recipient,
           m.kind AS kind,
           m.body AS text
    FROM messages AS m
    LEFT JOIN rooms AS r ON r.id = m.room_id
    LEFT JOIN users AS s ON s.id = m.sender_id
    LEFT JOIN users AS t ON t.id = m.recipient_id"""

#: chat_log with the moderation marks: when a message was last edited, and
#: when and by whom it was deleted (deleted messages stay in the log).
CHAT_LOG_V2 = """CREATE VIEW chat_log AS
    SELECT m.id AS id,
           m.created_at AS ts,
           r.name AS room,
           s.nick || CASE WHEN s.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS sender,
           t.nick || CASE WHEN t.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS recipient,
           m.kind AS kind,
           m.body AS text,
           m.edited_at AS edited_at,
           m.deleted_at AS deleted_at,
           d.nick AS deleted_by
    FROM messages AS m
    LEFT JOIN rooms AS r ON r.id = m.room_id
    LEFT JOIN users AS s ON s.id = m.sender_id
    LEFT JOIN users AS t ON t.id = m.recipient_id
    LEFT JOIN users AS d ON d.id = m.deleted_by_id"""


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("operator", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("users", sa.Column("locked_at", sa.DateTime(), nullable=True))
    op.add_column("users", sa.Column("lock_reason", sa.String(length=200), nullable=True))
    op.add_column("rooms", sa.Column("owner_id", _INT, nullable=True))
    op.add_column("rooms", sa.Column("topic", sa.String(length=300), nullable=True))
    op.add_column(
        "rooms", sa.Column("private", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("messages", sa.Column("edited_at", sa.DateTime(), nullable=True))
    op.add_column("messages", sa.Column("deleted_at", sa.DateTime(), nullable=True))
    op.add_column("messages", sa.Column("deleted_by_id", _INT, nullable=True))
    op.create_table(
        "room_moderators",
        sa.Column("room_id", _INT, nullable=False),
        sa.Column("user_id", _INT, nullable=False),
        sa.Column("granted_by_id", _INT, nullable=True),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["granted_by_id"], ["users.id"], name=op.f("fk_room_moderators_granted_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_moderators_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_room_moderators_user_id_users")
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_moderators")),
    )
    op.create_table(
        "room_invites",
        sa.Column("room_id", _INT, nullable=False),
        sa.Column("user_id", _INT, nullable=False),
        sa.Column("invited_by_id", _INT, nullable=True),
        sa.Column("invited_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invited_by_id"], ["users.id"], name=op.f("fk_room_invites_invited_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_invites_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_room_invites_user_id_users")
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_invites")),
    )
    op.create_table(
        "room_sanctions",
        sa.Column("id", _INT, nullable=False),
        sa.Column("room_id", _INT, nullable=False),
        sa.Column("user_id", _INT, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("by_id", _INT, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(), nullable=True),
        sa.Column("lifted_by_id", _INT, nullable=True),
        sa.CheckConstraint("kind IN ('ban', 'mute')", name=op.f("ck_room_sanctions_kind")),
        sa.ForeignKeyConstraint(
            ["by_id"], ["users.id"], name=op.f("fk_room_sanctions_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["lifted_by_id"], ["users.id"], name=op.f("fk_room_sanctions_lifted_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_sanctions_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_room_sanctions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_sanctions")),
    )
    op.create_index(
        "ix_room_sanctions_room_id_user_id", "room_sanctions", ["room_id", "user_id"], unique=False
    )
    op.create_table(
        "message_versions",
        sa.Column("id", _INT, nullable=False),
        sa.Column("message_id", _INT, nullable=False),
        sa.Column("version", _INT, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_versions_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_versions")),
        sa.UniqueConstraint(
            "message_id", "version", name=op.f("uq_message_versions_message_id_version")
        ),
    )
    op.create_table(
        "moderation_actions",
        sa.Column("id", _INT, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", _INT, nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("room_id", _INT, nullable=True),
        sa.Column("target_id", _INT, nullable=True),
        sa.Column("message_id", _INT, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_moderation_actions_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_moderation_actions_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_moderation_actions_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["users.id"], name=op.f("fk_moderation_actions_target_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_actions")),
    )
    op.create_index(
        op.f("ix_moderation_actions_created_at"), "moderation_actions", ["created_at"], unique=False
    )
    # Existing rooms: the earliest member is taken as the creator (#lobby has no owner).
    op.execute(
        """UPDATE rooms SET owner_id = (
            SELECT rm.user_id FROM room_members AS rm WHERE rm.room_id = rooms.id
            ORDER BY rm.joined_at, rm.user_id LIMIT 1)
        WHERE name_key <> '#lobby'"""
    )
    op.execute("DROP VIEW IF EXISTS chat_log")
    op.execute(CHAT_LOG_V2)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS chat_log")
    op.execute(CHAT_LOG_V1)
    op.drop_index(op.f("ix_moderation_actions_created_at"), table_name="moderation_actions")
    op.drop_table("moderation_actions")
    op.drop_table("message_versions")
    op.drop_index("ix_room_sanctions_room_id_user_id", table_name="room_sanctions")
    op.drop_table("room_sanctions")
    op.drop_table("room_invites")
    op.drop_table("room_moderators")
    for table, column in (
        ("messages", "deleted_by_id"),
        ("messages", "deleted_at"),
        ("messages", "edited_at"),
        ("rooms", "private"),
        ("rooms", "topic"),
        ("rooms", "owner_id"),
        ("users", "lock_reason"),
        ("users", "locked_at"),
        ("users", "operator"),
    ):
        op.drop_column(table, column)
