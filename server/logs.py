"""`parley-logs`, the operator's chat-logs tool: ad-hoc
SQL, export, search, statistics and online backups of the server's database.

Rules this module keeps:
1. It is the OPERATOR's tool. The operator owns the database file and sees
   everything in it, private messages and password hashes included; the
   visibility rules of server/store/queries.py protect chat users from each
   other and do not apply here (DESIGN.md section 5).
2. Read-only by construction, not by convention: every subcommand but
   `backup` reads through ReadOnlyDatabase (PostgreSQL: PgReadOnlyDatabase
   in server/logs_pg.py, with a read-only transaction, one statement per
   call and a statement timeout), which opens the file with
   `mode=ro`, sets `query_only`, allows no attached databases, and installs
   an authorizer that lets SELECT, reads, functions and recursive CTEs
   through and refuses everything else before it runs. `backup` writes only
   its target file.
2b. No command that writes a file (backup, export --out) ever writes over
   the database or its sidecars (-wal, -shm, -journal, the server's .lock),
   however the target is spelled: symlinks and hard links are seen through
   (refuse_database_files). Writing a backup over the live -wal lost
   acknowledged messages after a crash.
3. It never creates a database: a missing file is an error.
4. Output that can be large streams (export, csv and json query output);
   only the aligned table is built in memory, because its widths depend on
   every row.

This is the one module outside server/store/ that writes SQL by hand: that
is its purpose (the operator's SQL over the documented schema, docs/schema.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from . import logs_audit
from .config import add_db_argument, operator_config
from .logs_errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, LogsError, ReadOnlyViolation, UsageError
from .logs_format import FORMATS, parse_time, positive_int, write_rows, write_table
from .logs_pg import PgReadOnlyDatabase, pg_dump
from .store.backup import BackupFailed, copy_sqlite, open_partial, remove_partial
from .store.engine import BUSY_TIMEOUT_MS, database_path, is_postgresql, normalized_url
from .store.queries import fts_query, like_pattern, search_terms

#: Rows fetched from SQLite at a time while streaming.
FETCH_ROWS = 1000

#: An export of at least this many rows shows a progress bar even when stderr
#: is not a terminal (a long export in a cron job or a pipe still reports).
LARGE_EXPORT_ROWS = 100_000

#: The columns of the chat_log view, in order (docs/schema.md).
CHAT_LOG_COLUMNS = ("id", "ts", "room", "sender", "recipient", "kind", "text")

_PROG = "parley-logs"


# --- the read-only connection -----------------------------------------------------------

# sqlite3_set_authorizer action codes and how a refusal names them.
_ACTION_NAMES: dict[int, str] = {
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_PRAGMA: "PRAGMA",
    sqlite3.SQLITE_READ: "READ",
    sqlite3.SQLITE_SELECT: "SELECT",
    sqlite3.SQLITE_TRANSACTION: "TRANSACTION",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
    sqlite3.SQLITE_FUNCTION: "FUNCTION",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT",
    sqlite3.SQLITE_RECURSIVE: "RECURSIVE",
}

#: What a query may do: start a SELECT, read a column, call a function, recurse.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)

#: Refused although function calls are allowed: load_extension could load
#: native code. It is off in the sqlite3 module by default; this keeps it off
#: whatever the build.
_REFUSED_FUNCTIONS = frozenset({"load_extension"})

# The statement's own kind (`CREATE TEMP TABLE`, `VACUUM`), after comments.
_STATEMENT_KIND = re.compile(
    r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*"
    r"((?:CREATE|DROP)(?:\s+(?:TEMP|TEMPORARY|UNIQUE|VIRTUAL))?\s+(?:TABLE|VIEW|INDEX|TRIGGER)"
    r"|[A-Za-z]+)",
    re.DOTALL | re.IGNORECASE,
)

# Statements whose first refused action is SQLite's bookkeeping (an INSERT into
# sqlite_schema for CREATE or ANALYZE, an ATTACH for VACUUM), so a refusal
# names the statement too.
_NAMED_STATEMENTS = ("CREATE", "DROP", "VACUUM", "ANALYZE")


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    """A refused authorizer action in words, e.g. `INSERT on messages`."""
    name = _ACTION_NAMES.get(action, f"action {action}")
    if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
        return f"{name} on {arg1}"
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f"={arg2}" if arg2 is not None else "")
    if action == sqlite3.SQLITE_ATTACH:
        return f"ATTACH {arg1!r}"
    if action == sqlite3.SQLITE_TRANSACTION:
        return f"{arg1} (transaction control)"
    if action == sqlite3.SQLITE_SAVEPOINT:
        return f"SAVEPOINT {arg2}"
    if action == sqlite3.SQLITE_FUNCTION:
        return f"the function {arg2}()"
    return f"{name} {arg1}" if arg1 else name


class _ReadOnlyGuard:
    """The authorizer: allows reading, refuses everything else and remembers what it refused.

    SQLite stops preparing at the first refusal, so that is the one named.
    """

    def __init__(self) -> None:
        self.refused: str | None = None

    def reset(self) -> None:
        """Forget an earlier refusal (before each statement)."""
        self.refused = None

    def __call__(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        _db: str | None,
        _trigger: str | None,
    ) -> int:
        if action in _ALLOWED_ACTIONS:
            if action != sqlite3.SQLITE_FUNCTION or (arg2 or "").lower() not in _REFUSED_FUNCTIONS:
                return sqlite3.SQLITE_OK
        # FTS5 reads `PRAGMA data_version` (no value: a read) on each query to
        # know whether its cached index structure is stale; without it every
        # MATCH would be refused. Setting it is impossible anyway.
        elif action == sqlite3.SQLITE_PRAGMA and arg1 == "data_version" and arg2 is None:
            return sqlite3.SQLITE_OK
        if self.refused is None:
            self.refused = _describe(action, arg1, arg2)
        return sqlite3.SQLITE_DENY


def resolve_database(url: str) -> Path:
    """The existing SQLite file behind *url*; LogsError if there is none (never creates one)."""
    path = database_path(url)
    if path is None:
        raise LogsError(
            f"{url} is not a SQLite file database; the logs tool reads SQLite files "
            "and PostgreSQL databases"
        )
    if not path.exists():
        raise LogsError(
            f"no database at {path} (check --db or PARLEY_DB; the server creates it when it "
            "first starts)"
        )
    if not path.is_file():
        raise LogsError(f"{path} is not a file")
    return path


class ReadOnlyDatabase:
    """A connection to the server's SQLite file that cannot change anything.

    Layers, each enough on its own for most statements: the file is opened
    with `mode=ro` (SQLite refuses writes), `PRAGMA query_only=ON`, no database
    may be attached (`VACUUM INTO` and `ATTACH` write or open other files),
    and an authorizer refuses every action but SELECT, column reads, function
    calls and recursive CTEs, at prepare time, before anything runs.
    Works while the server runs: in WAL mode readers never block the writer.
    (PostgreSQL's counterpart: server/logs_pg.py, PgReadOnlyDatabase.)
    """

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        uri = path.resolve().as_uri() + "?mode=ro"
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise LogsError(f"cannot open {path}: {exc}") from exc
        try:
            # Our own settings first: the authorizer refuses every PRAGMA afterwards.
            self._conn.execute("PRAGMA query_only=ON")
            self._connect_virtual_tables()
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            self._guard = _ReadOnlyGuard()
            self._conn.set_authorizer(self._guard)
        except sqlite3.Error as exc:
            self._conn.close()
            raise LogsError(f"cannot read {path} as a SQLite database: {exc}") from exc

    def _connect_virtual_tables(self) -> None:
        # A virtual table's constructor declares its columns through a path the
        # authorizer reports as an UPDATE of sqlite_schema, so a first MATCH
        # under the authorizer would be refused. Connecting each virtual table
        # (messages_fts) once now keeps it connected for this connection.
        names = [
            row[0]
            for row in self._conn.execute(
                "SELECT name FROM sqlite_schema "
                "WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
            )
        ]
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                self._conn.execute(f"SELECT * FROM {quoted} LIMIT 0").fetchall()
            except sqlite3.Error:
                pass  # an unknown module: a query that uses it will say so itself

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ReadOnlyDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _translate(self, exc: Exception, sql: str) -> LogsError:
        refused = self._guard.refused
        if refused is not None:
            match = _STATEMENT_KIND.match(sql)
            kind = " ".join(match.group(1).upper().split()) if match else ""
            if kind.startswith(_NAMED_STATEMENTS):
                refused = f"{kind} (it would {refused})"
            elif refused == "UPDATE on sqlite_master":
                # What connecting a virtual table looks like to the authorizer.
                refused = (
                    "a table-valued PRAGMA function or virtual table such as pragma_table_info "
                    "(read sqlite_schema for the schema instead)"
                )
            return ReadOnlyViolation(
                f"refused: {refused}. The logs tool is read-only: only SELECT queries "
                "run, and nothing was changed."
            )
        return LogsError(f"SQL error: {exc}")

    def rows(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """Column names and a lazy iterator over the rows of one statement.

        ReadOnlyViolation if the statement would change anything (raised at
        once, or while iterating for refusals that happen inside a running
        query); LogsError for any other SQL error.
        """
        self._guard.reset()
        try:
            cur = self._conn.execute(sql, params)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise self._translate(exc, sql) from exc
        headers = [d[0] for d in cur.description or ()]

        def iterate() -> Iterator[tuple[Any, ...]]:
            try:
                while batch := cur.fetchmany(FETCH_ROWS):
                    yield from batch
            except sqlite3.Error as exc:
                raise self._translate(exc, sql) from exc
            finally:
                cur.close()

        return headers, iterate()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there are no rows)."""
        _headers, it = self.rows(sql, params)
        try:
            row = next(it, None)
        finally:
            it.close()  # type: ignore[attr-defined]  # a generator: closes the cursor
        return None if row is None else row[0]


#: Either dialect's read-only connection: both have dialect, path, rows() and scalar().
LogsDatabase = ReadOnlyDatabase | PgReadOnlyDatabase


# --- query ---------------------------------------------------------------------------------


def run_query(db: LogsDatabase, sql: str, out: TextIO, fmt: str = "table") -> int:
    """Run one read-only statement and print its rows in *fmt*; returns the row count."""
    headers, rows = db.rows(sql)
    return write_rows(out, fmt, headers, rows)


# --- export --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which chat_log rows to export: a room, and a time range (since inclusive, until exclusive)."""

    room: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self, dialect: str = "sqlite") -> tuple[str, list[Any]]:
        """A WHERE clause (or '') and its parameters over chat_log."""
        conds, params = [], []
        if self.room is not None:
            # Room names are unique case-insensitively (ASCII), as NOCASE compares.
            room = self.room if self.room.startswith("#") else "#" + self.room
            conds.append(
                "room = ? COLLATE NOCASE" if dialect == "sqlite" else "lower(room) = lower(?)"
            )
            params.append(room)
        if self.since is not None:
            conds.append("ts >= ?")
            params.append(self.since)
        if self.until is not None:
            conds.append("ts < ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(conds) if conds else ""), params


def _jsonl_writer(out: TextIO) -> Callable[[tuple[Any, ...]], None]:
    def write(row: tuple[Any, ...]) -> None:
        out.write(json.dumps(dict(zip(CHAT_LOG_COLUMNS, row, strict=True)), ensure_ascii=False))
        out.write("\n")

    return write


def export(
    db: LogsDatabase,
    out: TextIO,
    fmt: str,
    filt: ExportFilter,
    *,
    progress: bool | None = None,
    err: TextIO | None = None,
) -> int:
    """Stream the chat_log rows *filt* selects to *out* as jsonl or csv, oldest first.

    *progress*: True/False forces the tqdm bar on stderr on or off; None shows it
    when stderr is a terminal or the export has LARGE_EXPORT_ROWS or more.
    Returns the number of rows written.
    """
    err = sys.stderr if err is None else err
    where, params = filt.where(db.dialect)
    total = int(db.scalar(f"SELECT count(*) FROM chat_log{where}", params) or 0)
    tty = err.isatty()
    show = progress if progress is not None else (tty or total >= LARGE_EXPORT_ROWS)
    # One SELECT is one read snapshot (WAL), so the export is consistent even
    # while the server writes; the count above is only the bar's estimate.
    _headers, rows = db.rows(
        f"SELECT {', '.join(CHAT_LOG_COLUMNS)} FROM chat_log{where} ORDER BY id", params
    )
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CHAT_LOG_COLUMNS)
        write: Callable[[tuple[Any, ...]], Any] = writer.writerow
    elif fmt == "jsonl":
        write = _jsonl_writer(out)
    else:
        raise UsageError(f"unknown export format {fmt!r}; use jsonl or csv")
    n = 0
    # Off a terminal the bar prints a line per update, so it updates rarely there.
    with tqdm(
        total=total,
        unit="msg",
        unit_scale=True,
        file=err,
        disable=not show,
        mininterval=0.5 if tty else 10.0,
        desc="export",
    ) as bar:
        pending = 0
        for row in rows:
            write(row)
            n += 1
            pending += 1
            if pending == FETCH_ROWS:
                bar.update(pending)
                pending = 0
        bar.update(pending)
    return n


def _private_file(target: Path) -> tuple[Path, TextIO]:
    """A new temporary file beside *target*, mode 0600 (logs hold private messages)."""
    tmp, fd = _partial(target)
    return tmp, open(fd, "w", encoding="utf-8", newline="")  # closed by the caller


def _partial(target: Path) -> tuple[Path, int]:
    """store.backup.open_partial, its failure said as this tool's error."""
    try:
        return open_partial(target)
    except BackupFailed as exc:
        raise LogsError(str(exc)) from exc


# --- never write over the live database ------------------------------------------------

#: What lives beside the database and must never be written over by a logs
#: command, with what it is. Writing a backup over `-wal` while the server runs
#: throws away every committed message not yet checkpointed into the main
#: file: the next start finds no valid log and those acked messages are gone.
#: Pre-migration backups (`<db>.before-*.bak`) are ordinary copies and are not
#: listed: an operator may replace one on purpose (backup --force).
DATABASE_FILES: tuple[tuple[str, str], ...] = (
    ("", "the database itself"),
    ("-wal", "the database's write-ahead log, which holds its latest committed messages"),
    ("-shm", "the database's shared-memory index of its write-ahead log"),
    ("-journal", "the database's rollback journal"),
    (".lock", "the running server's lock file"),
)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file *path* names, following symlinks; None if none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_database_files(database: Path, target: Path) -> None:
    """UsageError (exit code 2) if writing *target* would write over the database
    or one of its sidecar files (DATABASE_FILES).

    Compared after resolving symlinks (also a dangling one, or a sidecar that
    does not exist yet), and by device and inode, which also catches a hard
    link. Sidecars are looked for beside the database both as named and as
    resolved, since SQLite may name them after either.
    """
    target_path = target.resolve()
    target_id = _identity(target)
    bases = {database, database.resolve()}
    for base in bases:
        for suffix, what in DATABASE_FILES:
            protected = base.with_name(base.name + suffix)
            same_path = target_path == protected.resolve()
            same_file = target_id is not None and target_id == _identity(protected)
            if same_path or same_file:
                raise UsageError(
                    f"refusing to write {target}: it is {what} ({protected}). Writing there "
                    "could lose committed messages; choose a file outside the database's own "
                    "(nothing was written)"
                )


def export_to_file(
    db: LogsDatabase,
    target: Path,
    fmt: str,
    filt: ExportFilter,
    *,
    progress: bool | None = None,
    err: TextIO | None = None,
) -> int:
    """export() into *target*, written under a temporary name and renamed when
    complete, so an interrupted export never leaves a truncated file behind."""
    if db.path is not None:  # a SQLite file (PostgreSQL's files are not ours to write)
        refuse_database_files(db.path, target)
    if target.is_dir():
        raise UsageError(f"{target} is a directory")
    tmp, handle = _private_file(target)
    try:
        with handle:
            n = export(db, handle, fmt, filt, progress=progress, err=err)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


# --- search --------------------------------------------------------------------------------


def search(db: LogsDatabase, text: str, limit: int = 50) -> tuple[list[tuple[Any, ...]], bool]:
    """Messages containing every word of *text* (substring, case-insensitive), newest first.

    All messages, private ones included (the operator's view). Words of three
    or more characters go through the messages_fts trigram index, each quoted
    as an FTS phrase so `example.com`, `C++` or `"` are never FTS syntax;
    shorter words, which trigrams cannot match, use LIKE with its wildcards
    escaped. On PostgreSQL every word is an ILIKE over messages.body, which the
    pg_trgm index serves. Returns up to *limit* rows and whether there were more.
    """
    long_terms, short_terms = search_terms(text)
    if not long_terms and not short_terms:
        raise UsageError("nothing to search for")
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    conds: list[str] = []
    params: list[Any] = []
    if db.dialect == "postgresql":
        for term in long_terms + short_terms:
            conds.append("id IN (SELECT id FROM messages WHERE body ILIKE ? ESCAPE '\\')")
            params.append(like_pattern(term))
        long_terms, short_terms = [], []
    if long_terms:
        conds.append("id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)")
        params.append(fts_query(long_terms))
    for term in short_terms:
        conds.append("text LIKE ? ESCAPE '\\'")
        params.append(like_pattern(term))
    _headers, rows = db.rows(
        f"SELECT {', '.join(CHAT_LOG_COLUMNS)} FROM chat_log WHERE {' AND '.join(conds)} "
        "ORDER BY id DESC LIMIT ?",
        [*params, limit + 1],
    )
    found = list(rows)
    return found[:limit], len(found) > limit


# --- stats ---------------------------------------------------------------------------------

#: The three stats tables: title and SQL. Users and rooms without messages are
#: listed with zeros (a removed account shows as "nick (removed)", as in chat_log).
STATS_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Messages per room",
        """SELECT r.name AS room,
                  count(m.id) AS messages,
                  coalesce(sum(m.kind = 'public'), 0) AS public,
                  coalesce(sum(m.kind = 'system'), 0) AS system,
                  max(m.created_at) AS last
           FROM rooms AS r LEFT JOIN messages AS m ON m.room_id = r.id
           GROUP BY r.id ORDER BY messages DESC, r.name_key""",
    ),
    (
        "Messages per user",
        """SELECT u.nick || CASE WHEN u.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END
                    AS user,
                  count(m.id) AS messages,
                  coalesce(sum(m.kind = 'public'), 0) AS public,
                  coalesce(sum(m.kind = 'private'), 0) AS private,
                  max(m.created_at) AS last
           FROM users AS u LEFT JOIN messages AS m ON m.sender_id = u.id
           GROUP BY u.id ORDER BY messages DESC, u.nick""",
    ),
    (
        "Messages per day (UTC)",
        """SELECT substr(created_at, 1, 10) AS day,
                  count(*) AS messages,
                  sum(kind = 'public') AS public,
                  sum(kind = 'private') AS private,
                  sum(kind = 'system') AS system
           FROM messages GROUP BY day ORDER BY day""",
    ),
)


#: The same tables in PostgreSQL's SQL (no sum() of booleans, times are timestamps,
#: and "user" is a reserved word).
PG_STATS_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Messages per room",
        """SELECT r.name AS room,
                  count(m.id) AS messages,
                  count(m.id) FILTER (WHERE m.kind = 'public') AS public,
                  count(m.id) FILTER (WHERE m.kind = 'system') AS system,
                  max(m.created_at) AS last
           FROM rooms AS r LEFT JOIN messages AS m ON m.room_id = r.id
           GROUP BY r.id ORDER BY messages DESC, r.name_key""",
    ),
    (
        "Messages per user",
        """SELECT u.nick || CASE WHEN u.deleted_at IS NOT NULL THEN ' (removed)' ELSE '' END
                    AS "user",
                  count(m.id) AS messages,
                  count(m.id) FILTER (WHERE m.kind = 'public') AS public,
                  count(m.id) FILTER (WHERE m.kind = 'private') AS private,
                  max(m.created_at) AS last
           FROM users AS u LEFT JOIN messages AS m ON m.sender_id = u.id
           GROUP BY u.id ORDER BY messages DESC, u.nick""",
    ),
    (
        "Messages per day (UTC)",
        """SELECT to_char(created_at, 'YYYY-MM-DD') AS day,
                  count(*) AS messages,
                  count(*) FILTER (WHERE kind = 'public') AS public,
                  count(*) FILTER (WHERE kind = 'private') AS private,
                  count(*) FILTER (WHERE kind = 'system') AS system
           FROM messages GROUP BY day ORDER BY day""",
    ),
)


def stats(db: LogsDatabase) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """The three statistics tables: (title, headers, rows) per room, per user and per day."""
    out = []
    for title, sql in PG_STATS_QUERIES if db.dialect == "postgresql" else STATS_QUERIES:
        headers, rows = db.rows(sql)
        out.append((title, headers, list(rows)))
    return out


# --- backup --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What backup() wrote: the file, its size, and how many messages it holds."""

    target: Path
    size: int
    messages: int | None


def backup(source: Path, target: Path, *, force: bool = False) -> BackupReport:
    """A consistent copy of the live database *source* at *target*.

    The copy itself is server.store.backup.copy_sqlite (one snapshot, mode 0600,
    checked, renamed into place; the same routine as the pre-migration backup).
    This adds the guards of a command: never over the live database or its
    companions, never over an existing file without *force*. Nothing but the
    target is written.
    """
    refuse_database_files(source, target)
    _check_target(target, force)
    try:
        copy = copy_sqlite(source, target)
    except BackupFailed as exc:
        raise LogsError(str(exc)) from exc
    return BackupReport(target=copy.path, size=copy.size, messages=copy.messages)


def backup_postgresql(url: str, target: Path, *, force: bool = False) -> BackupReport:
    """pg_dump of the PostgreSQL database at *url* into *target* (custom format, mode
    0600), written under a temporary name and renamed when complete. One snapshot, taken
    while the servers keep writing; restore it with pg_restore (docs/operations.md)."""
    _check_target(target, force)
    with PgReadOnlyDatabase(url) as db:
        messages = db.scalar("SELECT count(*) FROM messages")
    tmp, fd = _partial(target)
    os.close(fd)
    try:
        pg_dump(url, tmp)
        os.replace(tmp, target)
    except RuntimeError as exc:
        remove_partial(tmp)
        raise LogsError(f"backup failed: {exc}") from exc
    except BaseException:
        remove_partial(tmp)
        raise
    return BackupReport(target=target, size=target.stat().st_size, messages=messages)


def _check_target(target: Path, force: bool) -> None:
    """A backup is written to a file name, in a folder that exists, never over a file
    unless *force*."""
    if target.is_dir():
        raise UsageError(f"{target} is a directory; name the backup file")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; remove it or pass --force to replace it")
    if not target.parent.is_dir():
        raise LogsError(f"the directory {target.parent} does not exist")


# --- command line --------------------------------------------------------------------------


def _time_arg(end_of_day: bool) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return parse_time(text, end_of_day=end_of_day)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `parley-logs`."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "The OPERATOR's tools for parley's chat logs: read-only SQL, export, search, "
            "statistics and online backups. The operator owns the database and sees "
            "everything in it, private messages included. Every subcommand but `backup` "
            "only reads; all of them work while the server runs. Schema and example "
            "queries: docs/schema.md."
        ),
    )
    add_db_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    q = sub.add_parser(
        "query",
        help="run one read-only SQL statement",
        description="Run one SELECT over the database. Anything that would change a file "
        "(INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH, PRAGMA, VACUUM ...) is refused "
        "before it runs, with exit code 2. In the table format NULL is an empty cell; "
        "use --format json to tell NULL (null) from an empty string.",
    )
    q.add_argument("sql", help='the statement, e.g. "SELECT * FROM chat_log LIMIT 10"')
    q.add_argument("--format", choices=FORMATS, default="table", help="output (default table)")

    e = sub.add_parser(
        "export",
        help="export chat_log rows as jsonl or csv",
        description="Stream chat_log (id, ts, room, sender, recipient, kind, text) oldest "
        "first. Times are ISO 8601 in UTC (a time without an offset is UTC). --since is "
        "inclusive, --until exclusive; a date alone for --until means the end of that day.",
    )
    e.add_argument("--format", choices=("jsonl", "csv"), required=True)
    e.add_argument("--room", help="only this room (case-insensitive; the # is optional)")
    e.add_argument("--since", type=_time_arg(False), metavar="T", help="from this time on")
    e.add_argument("--until", type=_time_arg(True), metavar="T", help="before this time")
    e.add_argument(
        "--out", type=Path, metavar="FILE", help="write to FILE (mode 0600) instead of stdout"
    )
    e.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal or the export "
        f"has {LARGE_EXPORT_ROWS:,} rows or more)",
    )

    s = sub.add_parser(
        "search",
        help="find messages containing every word",
        description="Substring search over every message (private ones included), newest "
        "first. Each word must appear, case-insensitively; punctuation is literal.",
    )
    s.add_argument("text", nargs="+", help="the words to find")
    s.add_argument("--limit", type=positive_int, default=50, help="most rows shown (default 50)")

    sub.add_parser(
        "stats",
        help="messages per room, per user and per day",
        description="Three tables: messages per room, per user and per day (UTC).",
    )

    b = sub.add_parser(
        "backup",
        help="a consistent copy of the database, safe while the server runs",
        description="Copy the live database with SQLite's online backup API to FILE "
        "(mode 0600), check it and rename it into place; on PostgreSQL, pg_dump in its "
        "custom format (restore with pg_restore). Only FILE is written.",
    )
    b.add_argument("file", type=Path, metavar="FILE")
    b.add_argument("--force", action="store_true", help="replace FILE if it exists")
    logs_audit.add_parser(sub)
    return parser


def open_database(url: str) -> LogsDatabase:
    """The read-only connection for *url*: a SQLite file, or a PostgreSQL database."""
    if is_postgresql(url):
        return PgReadOnlyDatabase(normalized_url(url))
    return ReadOnlyDatabase(resolve_database(url))


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "backup":
        if is_postgresql(args.db):
            report = backup_postgresql(normalized_url(args.db), args.file, force=args.force)
            where = "the PostgreSQL database"
        else:
            where = str(resolve_database(args.db))
            report = backup(Path(where), args.file, force=args.force)
        held = f", {report.messages} messages" if report.messages is not None else ""
        print(f"backup of {where} written to {report.target} ({report.size} bytes{held})", file=out)
        return EXIT_OK
    with open_database(args.db) as db:
        if args.command == "query":
            n = run_query(db, args.sql, out, args.format)
            if args.format == "table":
                print(f"({n} row{'s' if n != 1 else ''})", file=err)
        elif args.command == "export":
            filt = ExportFilter(room=args.room, since=args.since, until=args.until)
            if args.out is None:
                n = export(db, out, args.format, filt, progress=args.progress, err=err)
            else:
                n = export_to_file(db, args.out, args.format, filt, progress=args.progress, err=err)
                print(f"exported {n} message(s) to {args.out}", file=err)
        elif args.command == "search":
            rows, more = search(db, " ".join(args.text), args.limit)
            write_table(out, CHAT_LOG_COLUMNS, rows)
            if more:
                print(f"(more than {args.limit} matches; raise --limit to see more)", file=err)
        elif args.command == "audit":
            logs_audit.run(db, args, out)
        elif args.command == "stats":
            for i, (title, headers, rows) in enumerate(stats(db)):
                if i:
                    out.write("\n")
                out.write(f"{title}\n\n")
                write_table(out, headers, rows)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run `parley-logs`; returns the exit code (0 ok, 1 error, 2 usage or refused)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return int(exc.code or 0)
    try:
        operator_config(args, os.environ if environ is None else environ)  # sets args.db
    except ValueError as exc:
        print(f"{_PROG}: config error: {exc}", file=err)
        return EXIT_USAGE
    try:
        return _run(args, out, err)
    except LogsError as exc:
        print(f"{_PROG}: {exc}", file=err)
        return exc.exit_code
    except BrokenPipeError:
        # `... | head`: the reader left; stop quietly, and keep Python's exit
        # flush from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
