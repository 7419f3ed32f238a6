"""end-to-end encrypted private messages: the key directory (user_keys), the
envelope column of messages, and chat_log showing "[end-to-end encrypted]".

An encrypted message's body is '' (so the FTS index holds nothing of it) and its
envelope is opaque to the server; see docs/security.md.

Revision ID: 0004_e2e
Revises: 0003_moderation
Create Date: 2026-12-01 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: Integer columns: INTEGER on SQLite (64 bits; the rowid for a primary key),
#: BIGINT on PostgreSQL (see models.Id).
_INT = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

revision: str = "0004_e2e"
down_revision: str | None = "0003_moderation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: chat_log as 0003_moderation made it, with the text column given by {text}.
_CHAT_LOG = """CREATE VIEW chat_log AS
    SELECT m.id AS id,
           m.created_at AS ts,
           r.name AS room,
           s.nick || CASE WHEN s.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS sender,
           t.nick || CASE WHEN t.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END AS recipient,
           m.kind AS kind,
           {text} AS text,
           m.edited_at AS edited_at,
           m.deleted_at AS deleted_at,
           d.nick AS deleted_by
    FROM messages AS m
    LEFT JOIN rooms AS r ON r.id = m.room_id
    LEFT JOIN users AS s ON s.id = m.sender_id
    LEFT JOIN users AS t ON t.id = m.recipient_id
    LEFT JOIN users AS d ON d.id = m.deleted_by_id"""
_E2E_TEXT = "CASE WHEN m.envelope IS NOT NULL THEN '[end-to-end encrypted]' ELSE m.body END"


def upgrade() -> None:
    op.create_table(
        "user_keys",
        sa.Column("user_id", _INT, nullable=False),
        sa.Column("sign_key", sa.String(length=44), nullable=False),
        sa.Column("box_key", sa.String(length=44), nullable=False),
        sa.Column("sig", sa.String(length=88), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_keys_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_keys")),
    )
    # A plain ADD COLUMN (no batch copy of messages: its FTS triggers stay as they are).
    op.add_column("messages", sa.Column("envelope", sa.Text(), nullable=True))
    op.execute("DROP VIEW IF EXISTS chat_log")
    op.execute(_CHAT_LOG.format(text=_E2E_TEXT))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS chat_log")
    op.execute(_CHAT_LOG.format(text="m.body"))
    op.execute("ALTER TABLE messages DROP COLUMN envelope")  # SQLite 3.35+, PostgreSQL
    op.drop_table("user_keys")
