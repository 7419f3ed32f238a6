# server/store/migrate.py: bring a database to the latest Alembic revision,
# backing up a non-empty database first. Alembic owns the schema: this module
# only drives it (the same as `alembic upgrade head` from the project root).
# The script directory is the installed parley_chat.migrations package, found from
# its module, so an installed copy migrates without the checkout's alembic.ini.

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from parley_chat import migrations as migrations_pkg

from .engine import database_path, normalized_url

#: Alembic's script directory: env.py, script.py.mako and versions/, wherever installed.
SCRIPT_LOCATION = Path(migrations_pkg.__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What upgrade_to_head did: revisions before and after, and the backup if one was made."""

    from_revision: str | None
    to_revision: str | None
    backup_path: Path | None

    @property
    def changed(self) -> bool:
        """True when the schema was upgraded."""
        return self.from_revision != self.to_revision


def alembic_config(url: str) -> Config:
    """An Alembic config for *url* that works from any working directory and install.

    Built in code rather than read from alembic.ini: the ini file stays in the checkout
    for running `alembic` by hand, and is not part of an installed copy.
    """
    url = normalized_url(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False  # keep the server's logging as it is
    return cfg


def head_revision() -> str | None:
    """The newest revision in migrations/."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> tuple[str | None, bool]:
    """The database's revision, and whether it holds any tables at all."""
    engine = create_engine(normalized_url(url))
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return MigrationContext.configure(conn).get_current_revision(), bool(tables)
    finally:
        engine.dispose()


def backup_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def upgrade_to_head(url: str, *, backup: bool = True) -> MigrationReport:
    """Upgrade the database at *url* to head; back it up first if it holds data."""
    path = database_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    before, has_tables = current_revision(url)
    head = head_revision()
    backup_path = None
    if before != head:
        if backup and has_tables and path is not None and path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            backup_path = path.with_name(f"{path.name}.before-{head}-{stamp}.bak")
            backup_sqlite(path, backup_path)
        command.upgrade(alembic_config(url), "head")
    return MigrationReport(from_revision=before, to_revision=head, backup_path=backup_path)
