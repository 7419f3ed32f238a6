"""The moderation subcommands of `parley-admin`
(issue 11): grant or take back the server operator role, lock or unlock an
account, and list the operators.

Like the rest of the admin tool these work while the server runs: the
server reads the operator role from the database at each moderation request,
and a lock revokes the account's resume tokens, so the running server ends
its connections at its next check (server/chat_server.py) and refuses its logins.
Each change is a row of the audit log with no actor (the admin tool).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from .store import moderation as mstore
from .store import utcnow

#: The subcommands this module adds.
COMMANDS = ("op", "deop", "lock", "unlock", "operators")


def add_parsers(sub: Any) -> None:
    """Add the moderation subcommands to parley-admin's subparsers."""
    op = sub.add_parser(
        "op", help="make an account a server operator (moderates every room, server-wide)"
    )
    op.add_argument("nick")
    deop = sub.add_parser("deop", help="take the server operator role back")
    deop.add_argument("nick")
    lock = sub.add_parser(
        "lock", help="lock an account: no login until unlocked; its connections end"
    )
    lock.add_argument("nick")
    lock.add_argument("--reason", default=None, help="shown to the user when a login is refused")
    unlock = sub.add_parser("unlock", help="unlock a locked account")
    unlock.add_argument("nick")
    sub.add_parser("operators", help="list the server operators and the locked accounts")


def run(admin: Any, args: argparse.Namespace) -> None:
    """Carry out one moderation subcommand through the Admin's store (AdminError on failure)."""
    if args.command == "operators":
        with admin.store.read() as s:
            rows = mstore.operators_and_locked(s)
        for acct in rows:
            marks = (["operator"] if acct.operator else []) + (
                [
                    f"locked {_when(acct.locked_at)}"
                    + (f" ({acct.lock_reason})" if acct.lock_reason else "")
                ]
                if acct.locked_at
                else []
            )
            admin.out.write(f"{acct.nick}: {', '.join(marks)}\n")
        if not rows:
            admin.out.write("no operators and no locked accounts\n")
        return
    now = utcnow()
    nick, command = args.nick, args.command

    def op(s: Session) -> str:
        if command in ("op", "deop"):
            acct = mstore.set_operator(s, nick, command == "op")
        else:
            acct = mstore.set_locked(s, nick, command == "lock", getattr(args, "reason", None), now)
        mstore.record(
            s,
            now=now,
            action=command,
            actor_id=None,
            target_id=acct.id,
            reason=getattr(args, "reason", None),
            detail="parley-admin",
        )
        return acct.nick

    stored = admin._write(op)
    done = {
        "op": f"{stored} is now a server operator",
        "deop": f"{stored} is no longer a server operator",
        "lock": f"locked {stored}: no login until `parley-admin unlock {stored}`",
        "unlock": f"unlocked {stored}",
    }[command]
    admin.out.write(done + "\n")


def _when(t: datetime) -> str:
    return t.replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")
