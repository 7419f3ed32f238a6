"""Every setting of the server, in one frozen dataclass.

Rules this module keeps:
1. ServerConfig.from_args() (through server/config_file.py, which reads the
   TOML file, the environment and the flags) is the only code in the server
   that reads the command line or the environment; everything else receives
   the object. What each field is for the operator (its table in the file,
   its range, its variable and flag) is in server/config_schema.py.
2. Every limit and deadline is a field with a sane default, so tests pass
   their own values (ServerConfig.for_tests) and the defaults have tests of
   their own.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from parley_chat.protocol import (
    MAX_LINE_BYTES,
    MAX_ROOMS_LISTED,
    MAX_SERVER_NAME_CHARS,
    MAX_TEXT_CHARS,
)

DEFAULT_DB_URL = "sqlite:///parley.db"
DEFAULT_PORT = 5555
#: The longest node name (sessions.node is VARCHAR(64)).
MAX_NODE_CHARS = 64


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """All settings of one server. Each field is also a key of the operator's
    configuration file, with its table, range, variable and flag in
    server/config_schema.py (docs/operations.md). Limits (defaults in brackets):

    Network: host [127.0.0.1], port [5555, 0 = any free port], max_connections_per_ip [16],
    max_handshakes [256] concurrent TLS handshakes, max_handshakes_per_ip [16] of them
    from one address, listen_backlog [1024], io_threads [1] selector loops,
    switch_interval [1 ms] for the interpreter's GIL hand-over,
    login_workers [4] and request_workers [4] threads, handshake_timeout [10 s],
    login_timeout [30 s] from TCP accept to a successful hello, idle_ping_after [60 s]
    of silence before the server pings, idle_close_after [90 s] of silence before it
    closes, send_queue_bytes [1 MiB] queued for one client before it is dropped
    ("send queue exceeded"), max_reply_queue_bytes [8 MiB] of replies to its own requests,
    socket_send_buffer [256 KiB] of kernel send buffer per connection.
    Frames: max_line_bytes [64 KiB], max_text_chars [4000], max_bad_frames [20]
    protocol errors before the connection is closed.
    Flood: flood_burst [10] messages at once, then flood_rate [5/s]; excess input
    is delayed (the connection's reads pause), and a client with more than
    flood_backlog [200] unprocessed frames is disconnected.
    Accounts: registration_open [True] (the operator can override it in the
    database with `parley-admin`), scrypt_n [2**17] (scrypt_r 8,
    scrypt_p 1), max_concurrent_hashes [2], login_failures [5] per
    login_failure_window [300 s] per (nick, address) and login_failures_per_ip [30]
    per address, registrations_per_ip [30] per registration_window [600 s],
    token_ttl [14 days].
    Rooms: max_rooms_per_user [100], max_rooms [1000], join_burst [10] then
    join_rate [0.5/s] per user, rooms_page [500] rooms per `rooms` frame.
    History: replay_cap [500] and replay_max_bytes [1 MiB], fresh_room_messages [50],
    fresh_private_messages [50].
    Storage: db_url [sqlite:///parley.db] (or postgresql://...), node ["main"]
    this server's name among the nodes sharing a database, group_max [512] writes per commit,
    backup_before_migrate [True].
    LAN: mdns [True] advertises the server by DNS-SD/mDNS.
    Presence: presence_grace [20 s] a user whose last connection ended stays listed
    as online, so a reconnect within it makes no left/joined noise.
    Nodes: bus [local] (postgres: several nodes share one PostgreSQL database and
    hear of each other's commits by LISTEN/NOTIFY), node_timeout [20 s] of silence
    before another node is taken for dead.
    IRC: irc_port [0 = off; 6697 is IRC's TLS port], irc_guests [False],
    irc_show_lobby [True] (docs/irc.md).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db_url: str = DEFAULT_DB_URL
    certs_dir: Path = field(default_factory=lambda: Path("certs"))
    server_name: str = "parley"
    #: This server's node name: its sessions carry it, and on PostgreSQL it is what
    #: only one running server may hold (an advisory lock), so several nodes sharing
    #: one database each need their own. "main" by default: a host name can change
    #: under a container, and one machine needs no name.
    node: str = "main"

    max_connections_per_ip: int = 16
    #: Handshakes in flight. They are non-blocking (server/handshake.py), so a
    #: slot costs a descriptor and a TLS object, not a thread: room for a
    #: classroom connecting at once, with the rest waiting for a slot.
    max_handshakes: int = 256
    #: Handshakes one address may have in flight: its share of max_handshakes,
    #: so silent sockets from one address can never starve everyone else.
    max_handshakes_per_ip: int = 16
    #: The listening socket's accept queue: a classroom logging in at once
    #: (a thousand SYNs within a second) must not be dropped and retried.
    listen_backlog: int = 1024
    #: I/O threads, each serving many connections through one selector. One is
    #: the default: measured beside ngIRCd, a second loop only fought the first
    #: for the GIL (p99 at 1000 clients and 100 msgs/s: 134 ms with one loop,
    #: 215 ms with two; at 200 clients and 20 msgs/s 9.3 ms against 12.3 ms).
    io_threads: int = 1
    #: The interpreter's thread switch interval (sys.setswitchinterval), set
    #: when the server starts. Python's 5 ms default makes a thread that
    #: returns from I/O (the writer after its fsync) wait up to 5 ms for the
    #: GIL while an I/O loop is busy encrypting: that was most of a message's
    #: latency under load. 1 ms trades a little switching for it.
    switch_interval: float = 0.001
    #: Threads for logins (password hashing, session rows, replay reads).
    login_workers: int = 4
    #: Threads for other requests that read the database (history, search, who, rooms).
    request_workers: int = 4
    handshake_timeout: float = 10.0
    login_timeout: float = 30.0
    idle_ping_after: float = 60.0
    idle_close_after: float = 90.0
    send_queue_bytes: int = 1024 * 1024
    #: The kernel's send buffer per connection (SO_SNDBUF; 0 keeps the kernel's
    #: autotuning, which lets each socket buffer up to 4 MB). Bounded, so that a
    #: reader that stops reading is seen in send_queue_bytes instead of hiding
    #: megabytes in the kernel, and a thousand connections cannot pin gigabytes.
    socket_send_buffer: int = 256 * 1024
    #: Replies to a client's own requests (history pages, search results) may
    #: queue up to this much before the client is dropped for not reading.
    max_reply_queue_bytes: int = 8 * 1024 * 1024

    max_line_bytes: int = MAX_LINE_BYTES
    max_text_chars: int = 4000
    max_bad_frames: int = 20

    flood_burst: int = 10
    flood_rate: float = 5.0
    flood_backlog: int = 200

    registration_open: bool = True
    scrypt_n: int = 2**17
    scrypt_r: int = 8
    scrypt_p: int = 1
    max_concurrent_hashes: int = 2
    login_failures: int = 5
    login_failure_window: float = 300.0
    #: Failed logins one address may make across all nicks per window (nick spraying).
    login_failures_per_ip: int = 30
    #: Accounts one address may create per registration_window (Ergo: 30 per 10 min).
    registrations_per_ip: int = 30
    registration_window: float = 600.0
    token_ttl: float = 14 * 24 * 3600.0
    #: How often open sessions are checked against the operator's changes: a
    #: password reset or a deleted account ends that user's open connections.
    revocation_check_interval: float = 5.0

    replay_cap: int = 500
    #: A replay (fresh login or rejoin) carries at most this many bytes; older
    #: messages past it are left out and marked as a gap (history pages them in).
    replay_max_bytes: int = 1024 * 1024
    #: Rooms a user may be a member of, rooms on the server, and the pace of joins.
    max_rooms_per_user: int = 100
    max_rooms: int = 1000
    join_burst: int = 10
    join_rate: float = 0.5
    #: Rooms per `rooms` frame: the list is paged so every frame fits the line cap.
    rooms_page: int = 500
    fresh_room_messages: int = 50
    fresh_private_messages: int = 50

    group_max: int = 512
    backup_before_migrate: bool = True
    shutdown_grace: float = 5.0
    log_level: str = "INFO"
    #: Advertise the server on the LAN by DNS-SD/mDNS (server/mdns.py), so clients
    #: list it without typing an address. `python -m parley_chat.server` does it, not ChatServer.
    mdns: bool = True
    #: Seconds a user whose last connection ended stays listed as online (0: none).
    presence_grace: float = 20.0
    #: How committed messages reach connections: "local" (this process alone) or
    #: "postgres" (several nodes sharing a PostgreSQL database; server/bus_postgres.py).
    bus: str = "local"
    #: Seconds another node may stay silent on the bus before it is taken for dead
    #: and its users are listed as offline (each node speaks every quarter of it).
    node_timeout: float = 20.0
    #: The IRC listener's TCP port (TLS only, the same certificates); 0: no IRC
    #: listener (the default: docs/irc.md). 6697 is IRC's TLS port.
    irc_port: int = 0
    #: IRC clients without an account may connect with a temporary nick.
    irc_guests: bool = False
    #: IRC clients see the default room as a joined channel (else they join it by hand).
    irc_show_lobby: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_text_chars <= MAX_TEXT_CHARS:
            raise ValueError(f"max_text_chars must be 1..{MAX_TEXT_CHARS}")
        if not 1024 <= self.max_line_bytes <= MAX_LINE_BYTES:
            raise ValueError(f"max_line_bytes must be 1024..{MAX_LINE_BYTES}")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        if not 0 <= self.irc_port <= 65535:
            raise ValueError("irc_port must be 0..65535")
        for name in ("handshake_timeout", "login_timeout", "idle_ping_after", "idle_close_after"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.idle_close_after <= self.idle_ping_after:
            raise ValueError("idle_close_after must be longer than idle_ping_after")
        for name in ("io_threads", "login_workers", "request_workers", "rooms_page"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        # Frames the server builds must stay within the protocol's caps.
        if self.rooms_page > MAX_ROOMS_LISTED or self.max_rooms_per_user > MAX_ROOMS_LISTED:
            raise ValueError(f"rooms_page and max_rooms_per_user are at most {MAX_ROOMS_LISTED}")
        if self.presence_grace < 0:
            raise ValueError("presence_grace must be 0 or more")
        if not 1 <= len(self.node) <= MAX_NODE_CHARS or not self.node.isprintable():
            raise ValueError(f"node is 1 to {MAX_NODE_CHARS} printable characters")
        if not 1 <= len(self.server_name) <= MAX_SERVER_NAME_CHARS:
            raise ValueError(f"server_name is 1 to {MAX_SERVER_NAME_CHARS} characters")
        if self.node_timeout <= 0:
            raise ValueError("node_timeout must be positive")
        if self.bus not in ("local", "postgres"):
            raise ValueError("bus is local or postgres")
        if self.bus == "postgres" and not self.db_url.startswith("postgresql"):
            raise ValueError("bus = postgres needs a PostgreSQL db_url (postgresql+psycopg://...)")

    @property
    def cert_file(self) -> Path:
        """The server certificate (PEM) in certs_dir."""
        return self.certs_dir / "server.pem"

    @property
    def ca_file(self) -> Path:
        """The local CA's certificate (PEM) in certs_dir, sent with server.pem when present."""
        return self.certs_dir / "ca.pem"

    @property
    def key_file(self) -> Path:
        """The server's private key (PEM) in certs_dir."""
        return self.certs_dir / "server.key"

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with *changes* applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def for_tests(cls, db_url: str, certs_dir: Path | str, **overrides: object) -> ServerConfig:
        """A config for tests: any free port, cheap scrypt, short deadlines, generous limits."""
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "db_url": db_url,
            "certs_dir": Path(certs_dir),
            "scrypt_n": 2**4,
            "handshake_timeout": 5.0,
            "login_timeout": 10.0,
            "max_connections_per_ip": 64,
            "flood_burst": 10_000,
            "flood_rate": 10_000.0,
            "registrations_per_ip": 100_000,
            "max_handshakes_per_ip": 64,
            "join_burst": 1_000,
            "backup_before_migrate": False,
            "shutdown_grace": 2.0,
            "presence_grace": 0.0,  # tests of the grace ask for one
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Build the config from the defaults, the configuration file, PARLEY_*
        variables and command-line flags, the later winning (server/config_file.py).
        Raises config_schema.ConfigError (a ValueError) naming a refused key and its source."""
        from .config_file import load

        return load(argv, environ).config


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """The --db and --config options the operator's tools share with the server
    (admin, logs): they find the server's database as the server does."""
    parser.add_argument(
        "--db",
        default=None,
        help="the server's database URL (default: env PARLEY_DB, else db_url in the "
        f"server's configuration file, else {DEFAULT_DB_URL})",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the server's configuration file, read for db_url and the scrypt settings "
        "(default: env PARLEY_CONFIG, else the file the server would read)",
    )


def operator_config(args: argparse.Namespace, environ: Mapping[str, str]) -> ServerConfig:
    """The server's settings from its configuration file and PARLEY_* variables, with
    --db on top: what the operator's tools work with. Sets args.db to the URL to use.
    Raises config_schema.ConfigError (a ValueError) naming a refused key and its source."""
    from .config_file import load
    from .config_schema import BY_NAME, check

    cfg = load(["--config", args.config] if args.config else [], environ).config
    if args.db is not None:
        cfg = cfg.replace(db_url=check(BY_NAME["db_url"], args.db, "flag --db"))
    args.db = cfg.db_url
    return cfg
