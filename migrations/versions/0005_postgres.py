"""several nodes on one database: the node column of sessions (both dialects) and, on
PostgreSQL, message ids from a counter row so that id order is commit order.

sessions.node names the server node that opened the session: a node starting after a
crash closes only its own sessions, not those of the other nodes sharing the database.
Rows from before this revision belong to no node (NULL); every node's start-up closes
those too, as a single server did.

PostgreSQL only: message_counter holds one row, and a BEFORE INSERT trigger on messages
takes each new id from it (`UPDATE message_counter SET pos = pos + 1 RETURNING pos`).
The row stays locked until the inserting transaction commits, so a second writer (another
node) waits for it: ids are handed out in commit order, with no gaps, and "replay
everything after id N" can never miss a message committed later with a smaller id, as
BIGSERIAL ids would (tests/server/store/test_commit_order.py shows both). The id column's
sequence default is dropped: an id given explicitly (parley-admin migrate-db copying a
SQLite database) is kept, and the copy moves the counter past it. SQLite needs none of
this: BEGIN IMMEDIATE makes every writer wait for the one before it to commit, so its
AUTOINCREMENT ids are already in commit order.

Revision ID: 0005_postgres
Revises: 0004_e2e
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_postgres"
down_revision: str | None = "0004_e2e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTER_AND_TRIGGER = (
    """CREATE TABLE message_counter (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        pos BIGINT NOT NULL)""",
    "INSERT INTO message_counter (one, pos) SELECT TRUE, COALESCE(MAX(id), 0) FROM messages",
    """CREATE FUNCTION messages_take_id() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id IS NULL THEN
            UPDATE message_counter SET pos = pos + 1 RETURNING pos INTO NEW.id;
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER messages_take_id BEFORE INSERT ON messages
        FOR EACH ROW EXECUTE FUNCTION messages_take_id()""",
    "ALTER TABLE messages ALTER COLUMN id DROP DEFAULT",
)


def upgrade() -> None:
    op.add_column("sessions", sa.Column("node", sa.String(length=64), nullable=True))
    op.create_index("ix_sessions_node_ended_at", "sessions", ["node", "ended_at"])
    if op.get_context().dialect.name == "postgresql":
        for statement in COUNTER_AND_TRIGGER:
            op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('messages', 'id'), "
            "GREATEST((SELECT pos FROM message_counter), 1))"
        )
        op.execute(
            "ALTER TABLE messages ALTER COLUMN id SET DEFAULT "
            "nextval(pg_get_serial_sequence('messages', 'id'))"
        )
        op.execute("DROP TRIGGER IF EXISTS messages_take_id ON messages")
        op.execute("DROP FUNCTION IF EXISTS messages_take_id()")
        op.execute("DROP TABLE IF EXISTS message_counter")
    op.drop_index("ix_sessions_node_ended_at", table_name="sessions")
    op.drop_column("sessions", "node")
