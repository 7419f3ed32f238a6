"""partial indexes on messages.deleted_at and messages.edited_at, for a rejoin's catch-up.

A client coming back gets the deletions and edits made, while it was away, to the
messages it may still show (server/store/moderation.py, changed_since): messages
deleted or edited since its last session ended. Without an index on those columns
the query walked every message up to the client's last_seen (220 ms a rejoin on a
300,000-message database). Only deleted or edited messages are indexed (WHERE ... IS
NOT NULL), so the indexes stay as small as the moderation history.

Revision ID: 0006_change_indexes
Revises: 0005_postgres
Create Date: 2026-12-02 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_change_indexes"
down_revision: str | None = "0005_postgres"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (("ix_messages_deleted_at", "deleted_at"), ("ix_messages_edited_at", "edited_at"))


def upgrade() -> None:
    for name, column in INDEXES:
        only_set = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "messages", [column], sqlite_where=only_set, postgresql_where=only_set
        )


def downgrade() -> None:
    for name, _column in INDEXES:
        op.drop_index(name, table_name="messages")
