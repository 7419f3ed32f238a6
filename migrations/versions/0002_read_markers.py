"""read markers: how far each user has read each of their conversations.

Existing memberships and private conversations start as read up to their
latest message, so an upgraded server does not show its whole history as
unread.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: Integer columns: INTEGER on SQLite (64 bits; the rowid for a primary key),
#: BIGINT on PostgreSQL (see models.Id).
_INT = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "read_markers",
        sa.Column("id", _INT, nullable=False),
        sa.Column("user_id", _INT, nullable=False),
        sa.Column("room_id", _INT, nullable=True),
        sa.Column("peer_id", _INT, nullable=True),
        sa.Column("message_id", _INT, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "(room_id IS NULL) <> (peer_id IS NULL)", name=op.f("ck_read_markers_one_target")
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["users.id"], name=op.f("fk_read_markers_peer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_read_markers_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_read_markers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_read_markers")),
        sa.UniqueConstraint("user_id", "peer_id", name=op.f("uq_read_markers_user_id_peer_id")),
        sa.UniqueConstraint("user_id", "room_id", name=op.f("uq_read_markers_user_id_room_id")),
    )
    # Everything stored before markers existed counts as read.
    op.execute(
        """INSERT INTO read_markers (user_id, room_id, peer_id, message_id, updated_at)
        SELECT rm.user_id, rm.room_id, NULL, MAX(m.id), CURRENT_TIMESTAMP
        FROM room_members AS rm JOIN messages AS m ON m.room_id = rm.room_id
        GROUP BY rm.user_id, rm.room_id"""
    )
    op.execute(
        """INSERT INTO read_markers (user_id, room_id, peer_id, message_id, updated_at)
        SELECT me, NULL, peer, MAX(id), CURRENT_TIMESTAMP FROM (
            SELECT sender_id AS me, recipient_id AS peer, id FROM messages
            WHERE kind = 'private' AND sender_id IS NOT NULL
            UNION ALL
            SELECT recipient_id AS me, sender_id AS peer, id FROM messages
            WHERE kind = 'private' AND sender_id IS NOT NULL
        ) AS pairs
        GROUP BY me, peer"""
    )


def downgrade() -> None:
    op.drop_table("read_markers")
