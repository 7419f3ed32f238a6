"""What each setting of ServerConfig is, for the
operator: its table in the configuration file, its type, its allowed range,
its environment variable and flags, and one line of help.

Rules this module keeps:
1. One Key per ServerConfig field, no more, no fewer (tests/server/
   test_config_file.py checks it): a field added without a Key fails a test
   instead of being silently unreachable from the file.
2. Every value from outside (TOML, environment, flag) passes check() before
   ServerConfig sees it; a refusal is a ConfigError whose message names the
   key, the value and where it came from (the file, the variable, the flag).
3. Ranges refuse what cannot work (zero threads, a negative deadline, NaN,
   a port past 65535) and what would take the machine down (a billion
   connections, a terabyte send queue), and leave room for the rest.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parley_chat.protocol import (
    MAX_LINE_BYTES,
    MAX_ROOMS_LISTED,
    MAX_SERVER_NAME_CHARS,
    MAX_TEXT_CHARS,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MINUTE = 60.0
HOUR = 3600.0
DAY = 24 * HOUR

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The buses between nodes (server/bus.py).
BUS_KINDS = ("local", "postgres")


class ConfigError(ValueError):
    """A setting cannot be used; the message names the key and its source."""


#: The tables of the configuration file, in the order the sample lists them.
TABLES: dict[str, str] = {
    "server": "Where the server listens and what it calls itself.",
    "tls": "Certificates and TLS handshakes.",
    "connections": "One connection's deadlines and buffers.",
    "irc": "The IRC listener (docs/irc.md): off unless irc_port is set.",
    "threads": "The server's threads (whatever the number of clients).",
    "frames": "Protocol lines and message text.",
    "flood": "Flood control, before and after login.",
    "accounts": "Registration, password hashing, login throttling, sessions.",
    "rooms": "Rooms per user and per server, and the pace of joins.",
    "history": "What a login or a reconnect replays.",
    "database": "The database and its writer.",
    "logging": "What the server logs.",
}


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: a ServerConfig field as the operator sets it."""

    name: str
    table: str
    kind: type  # int, float, bool, str or Path
    help: str
    low: float | None = None
    high: float | None = None
    #: A unit for the sample's and --print-config's remarks: "bytes" or "s".
    unit: str = ""
    choices: tuple[str, ...] = ()
    power_of_two: bool = False
    #: The environment variable; PARLEY_<NAME> unless given.
    env_name: str = ""
    #: Flags, the first one shown as the source; --<name-with-dashes> unless given.
    flag_names: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable that sets this key."""
        return self.env_name or f"PARLEY_{self.name.upper()}"

    @property
    def flags(self) -> tuple[str, ...]:
        """The command-line flags that set this key."""
        return self.flag_names or ("--" + self.name.replace("_", "-"),)

    def describe_range(self) -> str:
        """The allowed values in words, e.g. "1 to 16000" or "one of DEBUG, INFO"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        if self.low is None:
            return "any text" if self.kind is str else "a path"
        low, high = _num(self.low), _num(self.high)
        if self.kind is str:
            return f"{low} to {high} characters"
        words = f"{low} to {high}"
        if self.unit:
            words += " seconds" if self.unit == "s" else f" {self.unit}"
        return f"a power of two, {words}" if self.power_of_two else words


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    if float(value).is_integer():
        return str(int(value))
    return repr(value)


def _k(
    name: str,
    table: str,
    kind: type,
    help: str,
    low: float | None = None,
    high: float | None = None,
    **kw: Any,
) -> Key:
    """A Key, with the range as positional arguments (the table below reads better)."""
    return Key(name, table, kind, help, low, high, **kw)


KEYS: tuple[Key, ...] = (
    # [server]
    _k("host", "server", str, "Address to listen on; 0.0.0.0 serves the LAN.", 1, 255),
    _k("port", "server", int, "TCP port (TLS only); 0 picks any free port.", 0, 65535),
    _k(
        "server_name",
        "server",
        str,
        "The name the server gives itself in its welcome.",
        1,
        MAX_SERVER_NAME_CHARS,
    ),
    _k(
        "mdns",
        "server",
        bool,
        "Advertise the server on the LAN by DNS-SD/mDNS, so clients list it (--no-mdns: off).",
    ),
    # [tls]
    _k(
        "certs_dir",
        "tls",
        Path,
        "Directory holding server.pem and server.key (relative paths: to the working directory).",
        env_name="PARLEY_CERTS",
        flag_names=("--certs", "--certs-dir"),
    ),
    _k(
        "handshake_timeout",
        "tls",
        float,
        "A TLS handshake taking longer is dropped.",
        0.1,
        HOUR,
        unit="s",
    ),
    _k(
        "max_handshakes",
        "tls",
        int,
        "TLS handshakes in flight; a socket that finds no slot waits for one.",
        1,
        100_000,
    ),
    _k(
        "max_handshakes_per_ip",
        "tls",
        int,
        "Handshakes one address may have in flight (its share of max_handshakes).",
        1,
        100_000,
    ),
    # [connections]
    _k(
        "max_connections_per_ip",
        "connections",
        int,
        "Connections from one address; more are refused (too-many-connections).",
        1,
        100_000,
    ),
    _k("listen_backlog", "connections", int, "The listening socket's accept queue.", 1, 65535),
    _k(
        "login_timeout",
        "connections",
        float,
        "From TCP accept to a successful hello.",
        0.1,
        HOUR,
        unit="s",
    ),
    _k(
        "idle_ping_after",
        "connections",
        float,
        "Silence before the server pings a client.",
        0.1,
        DAY,
        unit="s",
    ),
    _k(
        "idle_close_after",
        "connections",
        float,
        "Silence before the server closes (ping timeout); longer than idle_ping_after.",
        0.1,
        DAY,
        unit="s",
    ),
    _k(
        "send_queue_bytes",
        "connections",
        int,
        "Output queued for one client before it is dropped (send queue exceeded).",
        MAX_LINE_BYTES,
        GiB,
        unit="bytes",
    ),
    _k(
        "max_reply_queue_bytes",
        "connections",
        int,
        "Replies to a client's own requests (history, search) queued before it is dropped.",
        MAX_LINE_BYTES,
        4 * GiB,
        unit="bytes",
    ),
    _k(
        "socket_send_buffer",
        "connections",
        int,
        "Kernel send buffer per connection (SO_SNDBUF); 0 keeps the kernel's autotuning.",
        0,
        64 * MiB,
        unit="bytes",
    ),
    _k(
        "shutdown_grace",
        "connections",
        float,
        "How long a stop waits for connections to end.",
        0,
        HOUR,
        unit="s",
    ),
    _k(
        "presence_grace",
        "connections",
        float,
        "Seconds a user whose last connection ended stays listed as online (0: none).",
        0.0,
        HOUR,
        unit="s",
    ),
    # [irc]
    _k(
        "irc_port",
        "irc",
        int,
        "The IRC listener's port (TLS only, same certificates); 0: no IRC listener.",
        0,
        65535,
    ),
    _k("irc_guests", "irc", bool, "IRC clients without an account may use a temporary nick."),
    _k("irc_show_lobby", "irc", bool, "IRC clients see the default room as a joined channel."),
    # [threads]
    _k("io_threads", "threads", int, "Selector I/O loops (one is fastest under the GIL).", 1, 64),
    _k(
        "switch_interval",
        "threads",
        float,
        "The interpreter's GIL switch interval, set at start.",
        0.0001,
        1.0,
        unit="s",
    ),
    _k("login_workers", "threads", int, "Threads for logins (hashing, replay reads).", 1, 256),
    _k(
        "request_workers",
        "threads",
        int,
        "Threads for other database reads (history, search, who, rooms).",
        1,
        256,
    ),
    # [frames]
    _k(
        "max_line_bytes",
        "frames",
        int,
        "One protocol line; a longer one ends the connection (line-too-long).",
        1024,
        MAX_LINE_BYTES,
        unit="bytes",
    ),
    _k(
        "max_text_chars",
        "frames",
        int,
        "One message's text, in characters (the protocol allows up to 16000).",
        1,
        MAX_TEXT_CHARS,
    ),
    _k(
        "max_bad_frames",
        "frames",
        int,
        "Protocol errors before the connection is closed.",
        1,
        1_000_000,
    ),
    # [flood]
    _k("flood_burst", "flood", int, "Messages a client may send at once.", 1, 1_000_000),
    _k(
        "flood_rate",
        "flood",
        float,
        "Then messages per second; excess input is delayed, not refused.",
        0.01,
        1_000_000.0,
    ),
    _k(
        "flood_backlog",
        "flood",
        int,
        "Unprocessed frames before a flooding client is disconnected.",
        1,
        1_000_000,
    ),
    # [accounts]
    _k(
        "registration_open",
        "accounts",
        bool,
        "Whether new nicks may register (a setting stored with server.admin takes precedence).",
    ),
    _k(
        "scrypt_n",
        "accounts",
        int,
        "scrypt cost of new password hashes (each hash keeps its own cost).",
        2,
        2**20,
        power_of_two=True,
    ),
    _k("scrypt_r", "accounts", int, "scrypt block size.", 1, 32),
    _k("scrypt_p", "accounts", int, "scrypt parallelism.", 1, 16),
    _k(
        "max_concurrent_hashes",
        "accounts",
        int,
        "scrypt computations at once (128 MiB each at the default cost).",
        1,
        64,
    ),
    _k(
        "login_failures",
        "accounts",
        int,
        "Failed logins per (nick, address) per window before logins are throttled.",
        1,
        10_000,
    ),
    _k(
        "login_failure_window",
        "accounts",
        float,
        "The window of login_failures and login_failures_per_ip.",
        1,
        7 * DAY,
        unit="s",
    ),
    _k(
        "login_failures_per_ip",
        "accounts",
        int,
        "Failed logins per address across all nicks per window.",
        1,
        100_000,
    ),
    _k(
        "registrations_per_ip",
        "accounts",
        int,
        "Accounts one address may create per registration_window.",
        1,
        1_000_000,
    ),
    _k(
        "registration_window",
        "accounts",
        float,
        "The window of registrations_per_ip.",
        1,
        30 * DAY,
        unit="s",
    ),
    _k("token_ttl", "accounts", float, "Lifetime of a resume token.", MINUTE, 365 * DAY, unit="s"),
    _k(
        "revocation_check_interval",
        "accounts",
        float,
        "How often open sessions are checked for revoked tokens (passwd, delete).",
        0.05,
        HOUR,
        unit="s",
    ),
    # [rooms]
    _k(
        "max_rooms_per_user",
        "rooms",
        int,
        "Rooms a user may be in (too-many-rooms).",
        1,
        MAX_ROOMS_LISTED,
    ),
    _k("max_rooms", "rooms", int, "Rooms on the server (too-many-rooms).", 1, 1_000_000),
    _k("join_burst", "rooms", int, "Joins a user may make at once.", 1, 100_000),
    _k("join_rate", "rooms", float, "Then joins per second.", 0.0001, 10_000.0),
    _k(
        "rooms_page",
        "rooms",
        int,
        "Rooms per rooms frame (the list is paged).",
        1,
        MAX_ROOMS_LISTED,
    ),
    # [history]
    _k(
        "replay_cap",
        "history",
        int,
        "Messages replayed after a reconnect; older ones are marked as a gap.",
        1,
        100_000,
    ),
    _k(
        "replay_max_bytes",
        "history",
        int,
        "Bytes one replay may carry.",
        MAX_LINE_BYTES,
        GiB,
        unit="bytes",
    ),
    _k(
        "fresh_room_messages",
        "history",
        int,
        "Messages a fresh login shows per room.",
        0,
        10_000,
    ),
    _k(
        "fresh_private_messages",
        "history",
        int,
        "Private messages a fresh login shows.",
        0,
        10_000,
    ),
    # [database]
    _k(
        "db_url",
        "database",
        str,
        "The database URL (a relative sqlite path is relative to the working directory).",
        1,
        4096,
        env_name="PARLEY_DB",
        flag_names=("--db", "--db-url"),
    ),
    _k(
        "node",
        "database",
        str,
        "This server's node name among the servers sharing one PostgreSQL database "
        "(one running server per name).",
        1,
        64,
    ),
    _k("group_max", "database", int, "Writes committed together in one transaction.", 1, 100_000),
    _k(
        "bus",
        "database",
        str,
        "How committed messages reach connections: local (one node) or postgres "
        "(several nodes sharing a PostgreSQL database, by LISTEN/NOTIFY).",
        choices=BUS_KINDS,
    ),
    _k(
        "node_timeout",
        "database",
        float,
        "Silence on the bus after which another node is taken for dead (its users offline).",
        1.0,
        3600.0,
        unit="s",
    ),
    _k(
        "backup_before_migrate",
        "database",
        bool,
        "Back up a non-empty database before a schema upgrade.",
    ),
    # [logging]
    _k("log_level", "logging", str, "The least severe level logged.", choices=LOG_LEVELS),
)

BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


def check(key: Key, value: object, origin: str) -> object:
    """*value* (as TOML gives it) converted to the field's type, or ConfigError.

    *origin* says where the value came from, e.g. "parley.toml [frames]" or
    "environment variable PARLEY_PORT"; every error message starts with it.
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{origin}: {key.name} = {_show(value)}: {problem}")

    if key.kind is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true or false, got {_kind_of(value)}")
        return value
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected a whole number, got {_kind_of(value)}")
        number: float = value
    elif key.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"expected a number, got {_kind_of(value)}")
        if not math.isfinite(value):
            raise fail("expected a finite number")
        number = value = float(value)
    else:  # str or Path
        if not isinstance(value, str):
            raise fail(f"expected a string, got {_kind_of(value)}")
        if key.choices:
            # Case-insensitive; the value is the choice as listed.
            chosen = {c.upper(): c for c in key.choices}.get(value.strip().upper())
            if chosen is None:
                raise fail(f"must be {key.describe_range()}")
            return chosen
        if not value.strip():
            raise fail("must not be empty")
        if key.kind is Path:
            return Path(value)
        number = len(value)
    if key.low is not None and key.high is not None and not key.low <= number <= key.high:
        raise fail(f"must be {key.describe_range()}")
    if key.power_of_two and int(number) & (int(number) - 1):
        raise fail(f"must be {key.describe_range()}")
    return value


def parse_text(key: Key, text: str, origin: str) -> object:
    """*text* from an environment variable or a flag, converted and checked like check()."""
    value: object = text
    stripped = text.strip()
    if key.kind is bool:
        words = {"true": True, "1": True, "yes": True, "on": True}
        words |= {"false": False, "0": False, "no": False, "off": False}
        if stripped.lower() not in words:
            raise ConfigError(
                f"{origin}: {key.name} = {_show(text)}: expected true or false "
                "(or 1/0, yes/no, on/off)"
            )
        value = words[stripped.lower()]
    elif key.kind is int:
        try:
            value = int(stripped)
        except ValueError:
            raise ConfigError(
                f"{origin}: {key.name} = {_show(text)}: expected a whole number"
            ) from None
    elif key.kind is float:
        try:
            value = float(stripped)
        except ValueError:
            raise ConfigError(f"{origin}: {key.name} = {_show(text)}: expected a number") from None
    return check(key, value, origin)


def _kind_of(value: object) -> str:
    names = {bool: "a boolean", int: "a whole number", float: "a decimal number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dt.date | dt.time):
        return "a date or time"
    return type(value).__name__


def _show(value: object) -> str:
    """*value* for an error message: as TOML would write it, cut to a readable length."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
