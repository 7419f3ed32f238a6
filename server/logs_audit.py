"""`parley-logs audit`, the moderation audit log (issue 11)
as a table: who did what to whom, where, when and why, newest first.

A read of the documented schema (moderation_actions, docs/schema.md) through
the logs tool's read-only connection, like its other subcommands.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .logs_format import positive_int, write_table

#: The columns shown, in order.
AUDIT_COLUMNS = ("id", "ts", "actor", "action", "room", "target", "message", "reason", "until")

_AUDIT_SQL = """SELECT a.id, a.created_at, COALESCE(u.nick, '(' || COALESCE(a.detail, 'admin') || ')'),
       a.action, r.name, t.nick, a.message_id, a.reason, a.until
FROM moderation_actions AS a
LEFT JOIN users AS u ON u.id = a.actor_id
LEFT JOIN users AS t ON t.id = a.target_id
LEFT JOIN rooms AS r ON r.id = a.room_id"""


def add_parser(sub: Any) -> None:
    """Add the `audit` subcommand to parley-logs."""
    a = sub.add_parser(
        "audit",
        help="the moderation audit log: who did what to whom, where, when and why",
        description="Every moderation action (kick, ban, mute, delete, edit, topic, op, "
        "lock, ...), newest first. Actions of parley-admin show the actor as (parley-admin).",
    )
    a.add_argument("--room", help="only this room (case-insensitive; the # is optional)")
    a.add_argument("--nick", help="only actions by or on this account")
    a.add_argument("--limit", type=positive_int, default=50, help="most rows shown (default 50)")


def run(db: Any, args: argparse.Namespace, out: TextIO) -> int:
    """Print the audit rows *args* select; returns how many."""
    conds: list[str] = []
    params: list[Any] = []
    if args.room:
        room = args.room if args.room.startswith("#") else f"#{args.room}"
        conds.append("r.name_key = ?")
        params.append(room.lower())
    if args.nick:
        conds.append("(u.nick_key = ? OR t.nick_key = ?)")
        params += [args.nick.lower()] * 2
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    _headers, rows = db.rows(
        f"{_AUDIT_SQL}{where} ORDER BY a.id DESC LIMIT ?", (*params, max(1, args.limit))
    )
    return write_table(out, AUDIT_COLUMNS, rows)
