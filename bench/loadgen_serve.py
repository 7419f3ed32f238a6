"""The parley server as the load generator runs it, in its
own process, and the launcher that starts and stops that process.

Owns: `python -m bench.loadgen_serve` (a small entry that builds
server.config.ServerConfig with the benchmark's relaxed limits and runs
server.chat_server.ChatServer, so no server change is needed for limits the CLI does
not expose), the pre-created accounts (made by a child process before the
server starts, so the server opens a database at head), and ParleyServer (temp dir, certs,
subprocess, PID for /proc, stop by PID).

Relaxed on purpose: per-address connection cap, handshake cap, flood limits,
the send-queue cap, login and idle deadlines. Left as shipped: everything
that is the server's own work (TLS settings, scrypt concurrency, commits with
synchronous=FULL, fan-out). The scrypt cost is a flag because the issue asks
for logins at a cheap cost and at the default one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path
from types import TracebackType

from bench.loadgen_stats import log_tail, terminate

#: Fields of ServerConfig the benchmark relaxes. Fields an older or newer
#: ServerConfig lacks are skipped (and named on stderr), so the bench keeps
#: working while the server is being rewritten.
RELAXED: dict[str, object] = {
    "max_connections_per_ip": 100_000,
    "max_handshakes": 4096,
    "max_handshakes_per_ip": 4096,
    "registrations_per_ip": 1_000_000,
    "login_failures_per_ip": 1_000_000,
    "handshake_timeout": 60.0,
    "login_timeout": 300.0,
    "idle_ping_after": 600.0,
    "idle_close_after": 900.0,
    "send_queue_bytes": 64 * 1024 * 1024,
    "flood_burst": 1_000_000,
    "flood_rate": 1_000_000.0,
    "flood_backlog": 1_000_000,
    "backup_before_migrate": False,
    "shutdown_grace": 2.0,
}

DEFAULT_SCRYPT_N = 2**17  # ServerConfig's default; the bench says which one it used


def create_accounts(db_url: str, prefix: str, count: int, password: str, scrypt_n: int) -> None:
    """Accounts prefix0 .. prefix<count-1>, through the store's own write API.

    One hash at the requested cost is computed and shared (the salt is the
    same for all of them: irrelevant here), so preparing a thousand accounts
    at the default cost takes one hash, not a thousand. Logging in still
    verifies at that cost, since the stored hash carries its parameters.
    """
    from parley_chat.server.auth import PasswordHasher
    from parley_chat.server.store import Store, upgrade_to_head, utcnow, writes

    upgrade_to_head(db_url, backup=False)
    password_hash = PasswordHasher(n=scrypt_n).hash(password)
    store = Store(db_url)
    store.start()
    try:

        def make(s: object) -> None:
            now = utcnow()
            for i in range(count):
                writes.create_user(s, f"{prefix}{i}", password_hash, now)  # type: ignore[arg-type]

        store.submit(make).result(120)
    finally:
        store.close()


def serve(argv: list[str] | None = None) -> int:
    """Entry of the server process: accounts, relaxed config, run until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen_serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", required=True, help="SQLite file, or a database URL")
    parser.add_argument("--certs", required=True, help="directory with server.pem/server.key")
    parser.add_argument("--scrypt-n", type=int, default=16)
    parser.add_argument("--users", type=int, default=0, help="accounts to create first")
    parser.add_argument("--user-prefix", default="lg")
    parser.add_argument("--password", default="bench-pw")
    args = parser.parse_args(argv)

    from parley_chat.server.chat_server import ChatServer
    from parley_chat.server.config import ServerConfig

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("parley.memory").setLevel(logging.INFO)
    db_url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    if args.users:
        # In a child process: the server then starts as it does on any day but the
        # first, on a database already at head, and its memory is the server's
        # alone (the migration's Alembic and the accounts' store stay in the child).
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from bench.loadgen_serve import create_accounts; "
                "create_accounts(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], "
                "int(sys.argv[5]))",
                db_url,
                args.user_prefix,
                str(args.users),
                args.password,
                str(args.scrypt_n),
            ],
            check=True,
        )
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    values: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "db_url": db_url,
        "certs_dir": Path(args.certs),
        "scrypt_n": args.scrypt_n,
        "log_level": "WARNING",
    }
    for name, value in RELAXED.items():
        if name in known:
            values[name] = value
        else:
            print(f"bench.loadgen_serve: ServerConfig has no {name}; left alone", file=sys.stderr)
    # BENCH_PARLEY_SET="io_threads=2 presence_grace=0": try a setting without editing
    # the bench (values parsed as the config file's would be: numbers, true/false).
    for item in os.environ.get("BENCH_PARLEY_SET", "").split():
        name, _, text = item.partition("=")
        if name not in known:
            raise SystemExit(f"bench.loadgen_serve: BENCH_PARLEY_SET: no setting {name}")
        values[name] = tomllib.loads(f"v = {text}")["v"]
    server = ChatServer(ServerConfig(**values))  # type: ignore[arg-type]
    server.start()
    host, port = server.address
    print(f"listening {host} {port}", flush=True)

    def _stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.stop, name="shutdown").start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve_forever()
    return 0


class ParleyServer:
    """A parley server in a child process on 127.0.0.1, with its own temp dir.

    Use as a context manager; `pid` is the server process for /proc figures.
    """

    dialect = "parley"
    name = "parley"

    def __init__(
        self,
        *,
        scrypt_n: int = 16,
        users: int = 0,
        password: str = "bench-pw",
        db_url: str | None = None,
        certs: Path | None = None,
        settings: str = "",
    ) -> None:
        """*db_url*, *certs* and *settings* (BENCH_PARLEY_SET) let several nodes
        (bench/nodes.py) share one database and one CA; by default each server
        gets a fresh SQLite file and certificates of its own."""
        self.scrypt_n = scrypt_n
        self.users = users
        self.password = password
        self.db_url = db_url
        self.certs = certs
        self.settings = settings
        self.host = "127.0.0.1"
        self.port = 0
        self.pid = 0
        self.ca_file = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ParleyServer:
        self.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Make certs and a fresh database, start the server, wait for it to listen."""
        from parley_chat.certs import generate

        self._tmp = tempfile.TemporaryDirectory(prefix="parley-loadgen-")
        root = Path(self._tmp.name)
        certs = self.certs or root / "certs"
        if self.certs is None:
            generate(certs)
        self.ca_file = str(certs / "ca.pem")
        repo = Path(__file__).resolve().parent.parent
        cmd = [
            sys.executable,
            "-m",
            "bench.loadgen_serve",
            "--db",
            self.db_url or str(root / "chat.db"),
            "--certs",
            str(certs),
            "--scrypt-n",
            str(self.scrypt_n),
            "--users",
            str(self.users),
            "--password",
            self.password,
        ]
        self._log = open(root / "server.log", "w")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        if self.settings:
            env["BENCH_PARLEY_SET"] = (
                env.get("BENCH_PARLEY_SET", "") + " " + self.settings
            ).strip()
        self._proc = subprocess.Popen(
            cmd, cwd=repo, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env
        )
        self.pid = self._proc.pid
        assert self._proc.stdout is not None
        try:
            # The child prints exactly one line once it listens (after the accounts
            # exist); wait for it with a deadline, never on a bare readline().
            ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
            line = self._proc.stdout.readline() if ready else ""
            if not line.startswith("listening "):
                raise RuntimeError(f"parley did not start: {line!r}\n{self.log_tail()}")
            _, self.host, port = line.split()
            self.port = int(port)
        except BaseException:
            self.stop()  # never leave a server behind, not even on Ctrl-C
            raise

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's stderr (for failure reports)."""
        return "" if self._tmp is None else log_tail(Path(self._tmp.name) / "server.log", lines)

    def stop(self) -> None:
        """SIGTERM the server's PID, wait (bounded), SIGKILL if it hangs; remove the temp dir."""
        proc = self._proc
        if proc is not None:
            terminate(proc, 30)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


if __name__ == "__main__":
    raise SystemExit(serve())
