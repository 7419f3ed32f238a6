"""A consistent copy of a live SQLite database: the one backup routine.

Both backups use it: the copy the server and parley-admin make before a migration
(server/store/migrate.py) and `parley-logs backup` (server/logs.py). The copy:
1. is one read snapshot, taken with SQLite's online backup API in one step while the
   server keeps writing (WAL readers never block the writer);
2. is written under a temporary name created with mode 0600 (it holds password
   hashes and private messages), never world-readable for a moment;
3. is switched to the rollback journal, so it is one self-contained file;
4. passes `PRAGMA quick_check` before it is renamed into place. On any failure the
   partial file and its journals are removed and the target is left untouched.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .engine import BUSY_TIMEOUT_MS
from .errors import StoreError


class BackupFailed(StoreError):
    """The copy could not be made or failed its integrity check; the target is untouched."""


@dataclass(frozen=True, slots=True)
class SqliteCopy:
    """What copy_sqlite() wrote: the file, its size, and how many messages it holds.

    `messages` is None for a database without a messages table (not a parley one).
    """

    path: Path
    size: int
    messages: int | None


def open_partial(target: Path) -> tuple[Path, int]:
    """A new empty file beside *target*, mode 0600, to write a copy into and then
    rename over *target*: its path and an open descriptor. BackupFailed, naming
    the folder, when nothing can be created there (missing, closed, a file)."""
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise BackupFailed(f"cannot write in {target.parent}: {exc.strerror or exc}") from exc


def copy_sqlite(source: Path, target: Path) -> SqliteCopy:
    """Copy the live SQLite database *source* to *target* (replaced if it exists).

    BackupFailed if SQLite refuses or the copy is not sound. The caller decides
    whether *target* may be replaced and that it is not the live database itself.
    """
    tmp, fd = open_partial(target)
    os.close(fd)
    try:
        src = sqlite3.connect(
            source.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(dst)  # pages=-1: every page in one step, hence one snapshot
                dst.execute("PRAGMA journal_mode=DELETE")
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                has_messages = dst.execute(
                    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'messages'"
                ).fetchone()
                messages = (
                    dst.execute("SELECT count(*) FROM messages").fetchone()[0]
                    if has_messages
                    else None
                )
            finally:
                dst.close()
        finally:
            src.close()
        if check != "ok":
            raise BackupFailed(f"the copy failed its integrity check: {check}")
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        remove_partial(tmp)
        raise BackupFailed(f"backup failed: {exc}") from exc
    except BaseException:
        remove_partial(tmp)
        raise
    return SqliteCopy(path=target, size=target.stat().st_size, messages=messages)


def remove_partial(tmp: Path) -> None:
    """Remove a partial copy at *tmp* and any SQLite companions it grew."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        tmp.with_name(tmp.name + suffix).unlink(missing_ok=True)
