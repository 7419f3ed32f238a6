"""A real PostgreSQL server for tests, started by the project itself.

initdb and pg_ctl from Debian's ``postgresql`` package (``make test`` installs it when
root and missing) make a throw-away cluster in a temporary directory, listening on a free
loopback port and on a unix socket in that directory; ``stop()`` shuts it down and removes
everything. pytest-postgresql is not used: it refuses to run as root, and CI runs as root.
As root, every PostgreSQL program runs as the ``postgres`` user through ``runuser``
(PostgreSQL itself refuses root), and the directory is given to that user.

The cluster trusts local connections (no password: it lives as long as the test session
and listens on loopback only) and runs with fsync off: tests do not pull the power, and
each test's CREATE DATABASE would otherwise cost a flush on a shared machine.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: Where Debian puts each PostgreSQL version's programs.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

#: How long initdb, start and stop may take on a busy shared machine.
PG_CTL_TIMEOUT = 120


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL programs on this machine (or no user to run them as)."""


def find_bindir() -> Path:
    """The newest PostgreSQL bin directory: $PARLEY_PG_BIN, Debian's layout, or pg_config."""
    env = os.environ.get("PARLEY_PG_BIN")
    if env:
        return Path(env)
    found = sorted(
        (p for p in DEBIAN_PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb): `make test` installs it when root "
        "(apt-get install postgresql), or set PARLEY_PG_BIN"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throw-away PostgreSQL cluster: ``start()``, ``url(dbname)``, ``stop()``."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.base: Path | None = None
        self.port = 0
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and there is no postgres user") from exc
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        assert self.base is not None, "start() first"
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's unix socket."""
        assert self.base is not None, "start() first"
        return self.base

    def _run(self, args: Sequence[str], *, timeout: float = PG_CTL_TIMEOUT) -> str:
        cmd = [*self._as_user, str(self.bindir / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def start(self) -> None:
        """initdb a new cluster in a fresh temporary directory and start it."""
        # Under /tmp itself: pytest's own temp root is 0700 root, which postgres cannot enter.
        self.base = Path(tempfile.mkdtemp(prefix="parley-pg-"))
        if self._as_user:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(
            [
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]
        )
        last: Exception | None = None
        for _attempt in range(5):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.socket_dir}",
                    "-c fsync=off",
                    "-c synchronous_commit=on",
                    "-c max_connections=300",
                    "-c shared_buffers=32MB",
                ]
            )
            try:
                self._run(
                    [
                        "pg_ctl",
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.base / "server.log"),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(PG_CTL_TIMEOUT),
                        "start",
                    ]
                )
                return
            except RuntimeError as exc:
                last = exc
        raise RuntimeError(f"PostgreSQL did not start: {last}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log (for failure messages)."""
        if self.base is None:
            return ""
        try:
            text = (self.base / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def url(self, dbname: str = "postgres", *, user: str = "postgres") -> str:
        """A SQLAlchemy URL for *dbname* on this server (psycopg 3, TCP on loopback)."""
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres", *, user: str = "postgres") -> str:
        """A libpq connection string for *dbname* (psycopg.connect, pg_dump)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def create_database(self, prefix: str = "t", *, template: str | None = None) -> str:
        """A new database, empty or a copy of *template* (which nobody may be connected
        to: PostgreSQL copies it file by file); returns its name."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return name

    def replace_database(self, name: str, template: str) -> None:
        """Drop *name* and make it again as a copy of *template* (same name, so a URL
        already handed out stays valid)."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def drop_database(self, name: str) -> None:
        """Drop *name*, ending whatever connections a test left open on it."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call twice."""
        if self.base is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(["pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
