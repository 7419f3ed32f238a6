"""`parley-admin`, the operator's account tool: list,
add, reset and delete accounts, and open or close registration (and, in
admin_moderation.py, the server operator role and locked accounts; in
admin_migrate.py, copying a SQLite database into PostgreSQL).

Rules this module keeps:
1. It works while the server runs. Every change goes through
   server.store.Store and the functions of server/store/writes.py, the same
   code the server runs, in short transactions; SQLite's WAL and busy
   timeout let it share the file with the server's writer. The running
   server reads the registration setting at each login, so a change takes
   effect without a restart.
2. The database is brought to the latest schema first (as the server does
   at start, with the same backup of a non-empty database).
3. Passwords come from PARLEY_PASSWORD or a prompt on a terminal, never from
   the command line (it is visible to every user in `ps` and lands in shell
   history). They are hashed with server.auth.PasswordHasher at the server's
   scrypt cost, so the accounts made here log in to the server.
4. Exit codes: 0 done, 1 an error (no such account, nick taken, database
   failure), 2 usage (bad arguments, invalid nick, no way to get a password).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

# The hello frame's cap: a longer password could be set here but never typed at login.
from parley_chat.protocol import DEFAULT_ROOM, MAX_PASSWORD_CHARS, has_surrogate, valid_nick

from . import admin_migrate, admin_moderation
from .auth import PasswordHasher
from .config import ServerConfig, add_db_argument, operator_config
from .logs_format import short_time, write_table
from .store import (
    NoSuchUser,
    Store,
    StoreConflict,
    StoreError,
    StoreRejected,
    queries,
    upgrade_to_head,
    utcnow,
    writes,
)
from .store.copy import CopyRefused
from .store.engine import database_path
from .store.errors import database_said

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

#: The server_settings key the server reads at each login ("true" / "false").
REGISTRATION_KEY = "registration_open"

#: How long to wait for the writer (it may queue behind the server's own writes).
WRITE_TIMEOUT = 30.0

#: What a write returns (Admin._write hands it back).
T = TypeVar("T")

_PROG = "parley-admin"


class AdminError(Exception):
    """The command could not be done; the message says why. Exit code 1."""

    exit_code = EXIT_ERROR


class AdminUsage(AdminError):
    """The command line cannot be carried out as given. Exit code 2."""

    exit_code = EXIT_USAGE


def read_password(
    nick: str,
    environ: Mapping[str, str],
    stdin: TextIO,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """The new password for *nick*: PARLEY_PASSWORD, else asked twice on a terminal."""
    password = environ.get("PARLEY_PASSWORD")
    if password is None:
        if not stdin.isatty():
            raise AdminUsage(
                "no password: set PARLEY_PASSWORD, or run this on a terminal to be asked "
                "(a password is never a command-line argument)"
            )
        password = prompt(f"New password for {nick}: ")
        if prompt("Repeat it: ") != password:
            raise AdminError("the two passwords differ; nothing was changed")
    if not 1 <= len(password) <= MAX_PASSWORD_CHARS:
        raise AdminUsage(f"a password is 1 to {MAX_PASSWORD_CHARS} characters")
    if has_surrogate(password):  # PARLEY_PASSWORD with bytes that are not UTF-8
        raise AdminUsage("the password holds bytes that are not UTF-8 text")
    return password


def check_nick(nick: str) -> None:
    """AdminUsage unless *nick* is valid by the protocol's rule (protocol.valid_nick)."""
    if not valid_nick(nick):
        raise AdminUsage(
            f"{nick!r} is not a valid nick: 1 to 24 letters, digits, '_' or '-' (ASCII)"
        )


class Admin:
    """The operator's operations on one database, through a started Store."""

    def __init__(self, store: Store, hasher: PasswordHasher, out: TextIO) -> None:
        self.store = store
        self.hasher = hasher
        self.out = out

    def _write(self, op: Callable[[Session], T]) -> T:
        try:
            return self.store.submit(op).result(WRITE_TIMEOUT)
        except (StoreConflict, StoreRejected) as exc:
            raise AdminError(str(exc)) from exc
        except StoreError as exc:
            raise AdminError(f"the database failed: {exc}") from exc
        except TimeoutError as exc:
            raise AdminError(
                f"the database did not answer within {WRITE_TIMEOUT:.0f} s; nothing may have "
                "been changed"
            ) from exc

    def _live_user(self, nick: str) -> tuple[int, str, int]:
        """(id, stored nick, messages sent) of the live account *nick*; AdminError if none."""
        with self.store.read() as s:
            user = queries.get_user(s, nick)
            if user is None:
                raise AdminError(f"there is no account named {nick}")
            sent = queries.messages_sent(s, user.id)
        return user.id, user.nick, sent

    # --- subcommands ---------------------------------------------------------------------

    def users(self) -> int:
        """List every account (removed ones too) with its last session start; returns the count."""
        with self.store.read() as s:
            rows = queries.account_report(s)
        table = [
            (
                r.nick,
                short_time(r.created_at),
                short_time(r.deleted_at),
                short_time(r.last_session),
            )
            for r in rows
        ]
        write_table(
            self.out, ["nick", "created (UTC)", "deleted (UTC)", "last session (UTC)"], table
        )
        removed = sum(1 for row in rows if row.deleted_at is not None)
        self.out.write(f"{len(rows)} account(s), {removed} removed\n")
        return len(rows)

    def add(self, nick: str, password: Callable[[], str]) -> None:
        """Create the account *nick* (a member of the default room)."""
        check_nick(nick)
        with self.store.read() as s:
            if queries.get_user(s, nick) is not None:  # say so before asking for a password
                raise AdminError(f"the nick {nick} is already taken")
        password_hash = self.hasher.hash(password())
        now = utcnow()
        user = self._write(lambda s: writes.create_user(s, nick, password_hash, now))
        self.out.write(f"created the account {user.nick} (a member of {DEFAULT_ROOM})\n")

    def passwd(self, nick: str, password: Callable[[], str]) -> int:
        """Set a new password for *nick* and revoke its resume tokens; returns how many."""
        self._live_user(nick)  # fail before asking for a password
        password_hash = self.hasher.hash(password())
        now = utcnow()

        def op(s: Session) -> tuple[str, int]:
            user = queries.get_user(s, nick)
            if user is None:
                raise NoSuchUser(f"there is no account named {nick}")
            revoked = writes.revoke_tokens(s, user.id, now)
            writes.set_password(s, nick, password_hash, now)  # revokes too: none left by now
            return user.nick, revoked

        stored_nick, revoked = self._write(op)
        self.out.write(
            f"changed the password of {stored_nick} and revoked its {revoked} resume token(s): "
            "its clients must log in again with the new password. A running server ends its "
            "open connections within seconds.\n"
        )
        return revoked

    def delete(self, nick: str, confirm: Callable[[str], bool]) -> bool:
        """Delete *nick* after *confirm*; its messages stay, shown as "nick (removed)"."""
        _uid, stored_nick, sent = self._live_user(nick)
        question = (
            f"Delete the account {stored_nick}? Its {sent} message(s) stay, shown as "
            f"'{stored_nick} (removed)', and the nick becomes free. [y/N] "
        )
        if not confirm(question):
            self.out.write("nothing deleted\n")
            return False
        now = utcnow()
        self._write(lambda s: writes.delete_user(s, nick, now))
        self.out.write(
            f"deleted the account {stored_nick}: it can no longer log in, its {sent} message(s) "
            f"stay, attributed to '{stored_nick} (removed)', and the nick {stored_nick} can be "
            "registered again. A running server ends its open connections within seconds.\n"
        )
        return True

    def registration(self, action: str) -> str | None:
        """Open or close registration, or report it (action "status"); returns the stored value."""
        if action in ("open", "closed"):
            value = "true" if action == "open" else "false"
            self._write(lambda s: writes.set_setting(s, REGISTRATION_KEY, value))
            self.out.write(
                f"registration is now {action}; the running server applies it at the next login\n"
            )
            return value
        with self.store.read() as s:
            stored = queries.get_setting(s, REGISTRATION_KEY)
        if stored is None:
            self.out.write(
                "registration: not set here; the server's --registration flag decides "
                "(default open)\n"
            )
        else:
            state = "open" if stored == "true" else "closed"
            self.out.write(f"registration is {state} (stored setting, overrides --registration)\n")
        return stored


# --- command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `parley-admin`."""
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "The operator's account tool for a parley server: list, add, reset and delete "
            "accounts, open or close registration, grant the server operator role, lock "
            "accounts. Safe while the server runs. Passwords come from PARLEY_PASSWORD or a "
            "prompt, never from the command line."
        ),
    )
    add_db_argument(parser)
    parser.add_argument(
        "--scrypt-n",
        type=int,
        default=None,
        help="scrypt cost for new passwords, a power of two (default: the server's, "
        f"scrypt_n in its configuration file, else {defaults.scrypt_n})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    sub.add_parser("users", help="list accounts: nick, created, deleted, last session")
    add = sub.add_parser(
        "add", help="create an account (password from PARLEY_PASSWORD or a prompt)"
    )
    add.add_argument("nick")
    pw = sub.add_parser("passwd", help="set a new password; revokes the account's resume tokens")
    pw.add_argument("nick")
    delete = sub.add_parser(
        "delete", help='delete an account; its messages stay, shown as "nick (removed)"'
    )
    delete.add_argument("nick")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reg = sub.add_parser(
        "registration",
        help="open or close registration of new accounts, or show the setting",
        description="Stored in the database (server_settings.registration_open); the "
        "running server reads it at each login and it overrides --registration.",
    )
    reg.add_argument("action", choices=("open", "closed", "status"))
    admin_moderation.add_parsers(sub)  # op, deop, lock, unlock, operators
    admin_migrate.add_parser(sub)  # migrate-db: SQLite to PostgreSQL
    return parser


def _confirm_with(stdin: TextIO, out: TextIO, yes: bool) -> Callable[[str], bool]:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not stdin.isatty():
            raise AdminUsage("not on a terminal: pass --yes to delete without being asked")
        out.write(question)
        out.flush()
        return stdin.readline().strip().lower() in ("y", "yes")

    return confirm


#: The subcommands that may create the database: setting a server up before its
#: first start (an operator's account, closed registration).
_CREATING = frozenset({("add", None), ("registration", "open"), ("registration", "closed")})


def _refuse_a_missing_database(args: argparse.Namespace) -> None:
    """AdminError when *args* name a SQLite file that does not exist and the
    subcommand only reads or changes what is already there: a mistyped --db
    must not answer "0 account(s)" from a new, empty database it just made."""
    if (args.command, getattr(args, "action", None)) in _CREATING:
        return
    path = database_path(args.db)
    if path is not None and not path.exists():
        raise AdminError(
            f"no database at {path} (check --db or PARLEY_DB; the server creates it when it "
            "first starts, and `parley-admin add` does too)"
        )


def _migrate(url: str, err: TextIO, backup_first: bool) -> None:
    path = database_path(url)
    existed = path is not None and path.exists()
    report = upgrade_to_head(url, backup=backup_first)
    if report.changed:
        if report.from_revision is None and not existed:
            err.write(f"created the database {path or url} (schema {report.to_revision})\n")
        else:
            backup = f", backup at {report.backup_path}" if report.backup_path else ""
            err.write(
                f"upgraded the database {report.from_revision or 'empty'} -> "
                f"{report.to_revision}{backup}\n"
            )


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Run `parley-admin`; returns the exit code (0 ok, 1 error, 2 usage)."""
    env = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return int(exc.code or 0)
    try:
        try:
            cfg = operator_config(args, env)  # the server's file and PARLEY_* variables
        except ValueError as exc:
            raise AdminUsage(f"config error: {exc}") from exc
        try:
            n = cfg.scrypt_n if args.scrypt_n is None else args.scrypt_n
            hasher = PasswordHasher(n, cfg.scrypt_r, cfg.scrypt_p, cfg.max_concurrent_hashes)
        except ValueError as exc:
            raise AdminUsage(f"--scrypt-n: {exc}") from exc
        if args.command == admin_migrate.COMMAND:
            try:
                admin_migrate.run(args, args.db, out, cfg.backup_before_migrate)
            except CopyRefused as exc:
                raise AdminError(str(exc)) from exc
            return EXIT_OK
        if args.command == "add":
            check_nick(args.nick)  # before the database is touched (or created)
        _refuse_a_missing_database(args)
        _migrate(args.db, err, cfg.backup_before_migrate)
        store = Store(args.db)
        store.start()
        try:
            admin = Admin(store, hasher, out)

            def password() -> str:
                return read_password(args.nick, env, stdin, prompt)

            if args.command == "users":
                admin.users()
            elif args.command == "add":
                admin.add(args.nick, password)
            elif args.command == "passwd":
                admin.passwd(args.nick, password)
            elif args.command == "delete":
                admin.delete(args.nick, _confirm_with(stdin, out, args.yes))
            elif args.command == "registration":
                admin.registration(args.action)
            elif args.command in admin_moderation.COMMANDS:
                admin_moderation.run(admin, args)
        finally:
            store.close()
    except AdminError as exc:
        print(f"{_PROG}: {exc}", file=err)
        return exc.exit_code
    except (SQLAlchemyError, StoreError, OSError) as exc:
        print(f"{_PROG}: the database failed: {database_said(exc)}", file=err)
        return EXIT_ERROR
    except (KeyboardInterrupt, EOFError):
        print(f"\n{_PROG}: interrupted", file=err)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
