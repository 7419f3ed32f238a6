"""Copy a whole parley database into a new, empty one: SQLite to PostgreSQL.

`parley-admin migrate-db --from sqlite:///parley.db --to postgresql://...` runs this
with no server on either. Both sides are brought to the latest schema first (the source
backed up as at a server's start, should it be older), then every table the models
describe is copied in foreign-key order, ids included, in ONE transaction on the target:
an interrupted copy leaves the target as empty as it was. Afterwards every id sequence
and PostgreSQL's message counter are moved past the largest id copied, so new rows never
reuse an id and message ids go on in commit order (migrations/versions/0005_postgres.py),
and each table's row count is compared with the source's.

What is not copied: SQLite's FTS5 index (PostgreSQL's pg_trgm index is built from the
rows as they arrive) and Alembic's own version table (each side has its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Table, create_engine, delete, func, insert, select, text

from .engine import is_postgresql, is_sqlite, normalized_url
from .migrate import MigrationReport, upgrade_to_head
from .models import Base, Message, Room, User

#: Rows read and written at a time.
COPY_CHUNK = 2000


class CopyRefused(Exception):
    """The copy cannot be made (wrong kinds of database, a target that holds data)."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What copy_database() did: rows per table, the largest message id, the source's migration."""

    rows: dict[str, int]
    max_message_id: int
    source_migration: MigrationReport


def _has_data(conn: Connection) -> bool:
    users = conn.scalar(select(func.count()).select_from(User)) or 0
    messages = conn.scalar(select(func.count()).select_from(Message)) or 0
    # A fresh schema holds the default room only (migration 0001 makes #lobby).
    rooms = conn.scalar(select(func.count()).select_from(Room)) or 0
    return bool(users or messages or rooms > 1)


def _copy_table(src: Connection, dst: Connection, table: Table) -> int:
    order = list(table.primary_key.columns)
    copied = 0
    result = src.execution_options(yield_per=COPY_CHUNK).execute(select(table).order_by(*order))
    for chunk in result.mappings().partitions(COPY_CHUNK):
        dst.execute(insert(table), [dict(row) for row in chunk])
        copied += len(chunk)
    return copied


def _advance_sequences(dst: Connection) -> int:
    """Move every serial sequence past its table's largest id, and the message counter
    past the largest message id; returns that id."""
    for table in Base.metadata.sorted_tables:
        if "id" not in table.c or not table.c.id.primary_key or not table.c.id.autoincrement:
            continue
        dst.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:t, 'id'),"
                f" GREATEST((SELECT MAX(id) FROM {table.name}), 1),"
                f" (SELECT MAX(id) FROM {table.name}) IS NOT NULL)"
            ),
            {"t": table.name},
        )
    top = int(dst.scalar(select(func.coalesce(func.max(Message.id), 0))) or 0)
    dst.execute(text("UPDATE message_counter SET pos = :top"), {"top": top})
    return top


def copy_database(
    source_url: str,
    target_url: str,
    *,
    backup: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy the SQLite database at *source_url* into the empty PostgreSQL database at
    *target_url*. CopyRefused when either is the wrong kind or the target holds data."""
    if not is_sqlite(source_url):
        raise CopyRefused(f"the source must be a SQLite database, not {source_url}")
    if not is_postgresql(target_url):
        raise CopyRefused("the target must be a PostgreSQL database (postgresql://...)")
    target_url = normalized_url(target_url)
    source_migration = upgrade_to_head(source_url, backup=backup)
    upgrade_to_head(target_url, backup=False)
    src_engine = create_engine(source_url)
    dst_engine = create_engine(target_url)
    rows: dict[str, int] = {}
    try:
        with src_engine.connect() as src, dst_engine.begin() as dst:
            if _has_data(dst):
                raise CopyRefused(
                    "the target database already holds accounts, rooms or messages; copy "
                    "into a new, empty database (nothing was changed)"
                )
            # The fresh schema's #lobby: the source has its own.
            dst.execute(delete(Room))
            for table in Base.metadata.sorted_tables:
                rows[table.name] = _copy_table(src, dst, table)
                if progress is not None:
                    progress(table.name, rows[table.name])
            top = _advance_sequences(dst)
            for table in Base.metadata.sorted_tables:
                count = dst.scalar(select(func.count()).select_from(table))
                if count != rows[table.name]:
                    raise CopyRefused(
                        f"{table.name}: {count} rows arrived of {rows[table.name]} (rolled back)"
                    )
    finally:
        src_engine.dispose()
        dst_engine.dispose()
    return CopyReport(rows=rows, max_message_id=top, source_migration=source_migration)
