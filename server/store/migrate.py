"""Bring a database to the latest Alembic revision,
backing up a non-empty database first. Alembic owns the schema: this module
only drives it (the same as `alembic upgrade head` from the project root).
The script directory is the installed parley_chat.migrations package, found from
its module, so an installed copy migrates without the checkout's alembic.ini.

A database already at head (every start but the first after an upgrade) is
recognised without Alembic: one SELECT of alembic_version against
`HEAD_REVISION`. Alembic is imported only when there is something to upgrade,
which keeps it (about 11 MB, and most of a start's time) out of a running server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text

from parley_chat import migrations as migrations_pkg

from .backup import copy_sqlite
from .engine import database_path, normalized_url

if TYPE_CHECKING:
    from alembic.config import Config

#: Alembic's script directory: env.py, script.py.mako and versions/, wherever installed.
SCRIPT_LOCATION = Path(migrations_pkg.__file__).resolve().parent

#: The newest revision in migrations/versions, written out so that a start on a
#: database already there needs no Alembic. A new migration must change it:
#: tests/server/store/test_migrations.py proves it equal to Alembic's own head.
HEAD_REVISION = "0006_change_indexes"

#: Alembic's bookkeeping table (its default name; env.py does not change it).
VERSION_TABLE = "alembic_version"


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
    from alembic.config import Config

    url = normalized_url(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False  # keep the server's logging as it is
    return cfg


def head_revision() -> str | None:
    """The newest revision in migrations/, as Alembic computes it from the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> tuple[str | None, bool]:
    """The database's revision, and whether it holds any tables at all.

    Read with a plain SELECT (what Alembic's MigrationContext reads): None when the
    version table is missing or empty. A database with several rows there (branches
    parley never makes) is read by Alembic, which refuses it as Alembic would."""
    engine = create_engine(normalized_url(url))
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            if VERSION_TABLE not in tables:
                return None, bool(tables)
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            if len(rows) > 1:
                from alembic.runtime.migration import MigrationContext

                return MigrationContext.configure(conn).get_current_revision(), True
            return (rows[0][0] if rows else None), True
    finally:
        engine.dispose()


def upgrade_to_head(url: str, *, backup: bool = True) -> MigrationReport:
    """Upgrade the database at *url* to head; back it up first if it holds data."""
    path = database_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    before, has_tables = current_revision(url)
    if before == HEAD_REVISION:
        return MigrationReport(from_revision=before, to_revision=before, backup_path=None)
    from alembic import command

    head = head_revision()
    backup_path = None
    if before != head:
        if backup and has_tables and path is not None and path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            backup_path = path.with_name(f"{path.name}.before-{head}-{stamp}.bak")
            copy_sqlite(path, backup_path)
        command.upgrade(alembic_config(url), "head")
    return MigrationReport(from_revision=before, to_revision=head, backup_path=backup_path)
