"""`parley-logs` on PostgreSQL: the read-only connection and the pg_dump backup.

The same operator's tool as on SQLite (server/logs.py), with PostgreSQL's guards in place
of SQLite's file mode and authorizer, each enough on its own for most statements:

1. Every statement runs in a transaction begun READ ONLY (psycopg's ``read_only``), and
   the session's default is read-only too (``default_transaction_read_only``): INSERT,
   UPDATE, DELETE, CREATE, DROP, nextval() and the like are refused by the server.
2. One statement per call: the operator's SQL is sent as a prepared statement, which
   PostgreSQL refuses to hold more than one command (``SELECT 1; COMMIT; DROP ...``
   never gets past its first ``;``), and each call's transaction is rolled back.
3. A statement timeout (``LOGS_STATEMENT_TIMEOUT_MS``): a runaway query cannot hold
   locks or a snapshot for ever on a database the servers are writing.
4. Where it matters, the operator connects as a role that may only SELECT
   (docs/operations.md, "A read-only role for parley-logs"): then nothing this tool
   could send changes anything, whatever the layers above miss.

Values come back as on SQLite: times as the store's naive-UTC text, integral numerics
as ints and the rest as floats, so the output of every subcommand reads the same on both dialects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from .logs_errors import LogsError, ReadOnlyViolation
from .logs_format import DB_TIME_FORMAT
from .store.engine import display_url
from .store.node_lock import libpq_params

#: How long one statement of the logs tool may run on PostgreSQL.
LOGS_STATEMENT_TIMEOUT_MS = 60_000

#: Rows fetched at a time while streaming (a server-side cursor).
FETCH_ROWS = 1000

#: Where Debian keeps each PostgreSQL version's programs (pg_dump among them).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime(DB_TIME_FORMAT)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):  # numeric: as SQLite gives it, an int or a float
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class PgReadOnlyDatabase:
    """A connection to the PostgreSQL database that cannot change anything (see above)."""

    dialect = "postgresql"
    #: No file: the export and backup targets are checked against none.
    path: Path | None = None

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={LOGS_STATEMENT_TIMEOUT_MS}"
        )
        try:
            self._conn = psycopg.connect(
                **libpq_params(url), options=options, application_name="parley-logs"
            )
        except psycopg.Error as exc:
            raise LogsError(f"cannot connect to {display_url(url)}: {exc}") from exc
        self._conn.read_only = True

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> PgReadOnlyDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def rows(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """Column names and a lazy iterator over the rows of one statement.

        The tool's own statements use ``?`` placeholders (as on SQLite); the
        operator's SQL comes without parameters and is sent as it is, ``%`` and all.
        """
        import psycopg

        self._conn.rollback()  # every call in a fresh read-only transaction
        cur = self._conn.cursor()
        try:
            if params:
                cur.execute(sql.replace("?", "%s"), list(params), prepare=True)
            else:
                cur.execute(sql, prepare=True)
        except psycopg.Error as exc:
            cur.close()
            self._conn.rollback()
            raise _error(exc) from exc
        headers = [d.name for d in cur.description or ()]

        def iterate() -> Iterator[tuple[Any, ...]]:
            try:
                if cur.description is None:
                    return
                while batch := cur.fetchmany(FETCH_ROWS):
                    for row in batch:
                        yield tuple(_plain(v) for v in row)
            except psycopg.Error as exc:
                raise _error(exc) from exc
            finally:
                cur.close()
                self._conn.rollback()

        return headers, iterate()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there are no rows)."""
        _headers, it = self.rows(sql, params)
        try:
            row = next(it, None)
        finally:
            it.close()  # type: ignore[attr-defined]  # a generator: closes the cursor
        return None if row is None else row[0]


def _error(exc: Exception) -> LogsError:
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # 25006: read-only transaction; 42501: insufficient privilege (a SELECT-only role);
    # 42601 "cannot insert multiple commands": more than one statement.
    if state in ("25006", "42501") or "multiple commands" in text:
        return ReadOnlyViolation(
            f"refused: {text}. The logs tool is read-only: one SELECT query at a time runs, "
            "and nothing was changed."
        )
    if state == "57014":
        return LogsError(f"the query ran past {LOGS_STATEMENT_TIMEOUT_MS // 1000} s: {text}")
    return LogsError(f"SQL error: {text}")


def find_pg_dump() -> str | None:
    """pg_dump on PATH, else the newest of Debian's PostgreSQL versions."""
    found = shutil.which("pg_dump")
    if found:
        return found
    candidates = sorted(
        (p for p in DEBIAN_PG_ROOT.glob("*/bin/pg_dump") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    return str(candidates[-1]) if candidates else None


def pg_dump(url: str, tmp: Path) -> None:
    """Dump the database at *url* into *tmp* in pg_dump's custom format (restore with
    pg_restore). One snapshot: pg_dump reads in one repeatable-read transaction while
    the servers keep writing. RuntimeError with pg_dump's message if it fails."""
    program = find_pg_dump()
    if program is None:
        raise RuntimeError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    params = libpq_params(url)
    env = dict(os.environ)
    # The password goes through the environment, never the command line (ps shows that).
    if "password" in params:
        env["PGPASSWORD"] = str(params.pop("password"))
    dsn = " ".join(f"{k}={_quote(str(v))}" for k, v in params.items())
    done = subprocess.run(
        [program, "--format=custom", "--no-owner", f"--file={tmp}", f"--dbname={dsn}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"pg_dump exited with {done.returncode}")


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/:" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
