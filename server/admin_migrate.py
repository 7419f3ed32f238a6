"""`parley-admin migrate-db`: copy an existing SQLite database into a new PostgreSQL one.

For a site that outgrows one machine: stop the server, copy its SQLite database into an
empty PostgreSQL database (server/store/copy.py does the work, in one transaction on the
target), then start the nodes with ``--db postgresql://...``. The SQLite file is only read
(and, if its schema is older, upgraded with a backup first, as a server's start does).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .store.copy import CopyRefused, copy_database
from .store.engine import database_path

#: The subcommand's name.
COMMAND = "migrate-db"


def add_parser(sub: Any) -> None:
    """Add `migrate-db` to parley-admin's subcommands."""
    m = sub.add_parser(
        COMMAND,
        help="copy a SQLite database into a new, empty PostgreSQL database",
        description="Copy every account, room, message (ids kept), session, token, read "
        "marker, key and moderation record from a SQLite database into an empty PostgreSQL "
        "database, in one transaction, and move the target's id counters past the copied "
        "ids. Stop the server first: writes made during the copy would not be copied. "
        "Example: parley-admin migrate-db --from sqlite:///parley.db "
        "--to postgresql://parley@db.example/parley",
    )
    m.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        default=None,
        help="the SQLite database to copy (default: the server's, --db / PARLEY_DB)",
    )
    m.add_argument(
        "--to", dest="target", metavar="URL", required=True, help="the empty PostgreSQL database"
    )


def run(args: argparse.Namespace, default_source: str, out: TextIO, backup: bool) -> None:
    """Copy args.source (or *default_source*) into args.target; report on *out*.

    CopyRefused when the databases are of the wrong kinds or the target holds data."""
    source = args.source or default_source
    path = database_path(source)
    if path is not None and not path.exists():
        raise CopyRefused(f"no database at {path} (check --from)")

    def progress(table: str, rows: int) -> None:
        out.write(f"  {table}: {rows} row(s)\n")

    report = copy_database(source, args.target, backup=backup, progress=progress)
    if report.source_migration.backup_path is not None:
        out.write(
            f"(the source was upgraded first; backup at {report.source_migration.backup_path})\n"
        )
    total = sum(report.rows.values())
    out.write(
        f"copied {total} row(s) from {source} into the PostgreSQL database "
        f"({report.rows.get('messages', 0)} message(s), ids kept; the next message id is "
        f"{report.max_message_id + 1})\n"
    )
