"""Where the server's settings come from, and in which
order: the defaults of ServerConfig, then one TOML file, then environment
variables (PARLEY_<KEY>), then command-line flags; the later wins.

Rules this module keeps:
1. One file at most, never a merge of several: --config FILE, else
   $PARLEY_CONFIG, else the first that exists of ./parley.toml, the user's
   config folder and the machine's (default_paths()). A file named by
   --config or $PARLEY_CONFIG must exist; the default locations may not.
2. Every value is checked by config_schema.check() with its origin, so an
   error names the key and the file, variable or flag it came from. Unknown
   tables and keys in the file are errors (a typo must not be ignored);
   unknown PARLEY_* variables are not (other tools use the prefix:
   PARLEY_PASSWORD, PARLEY_CONFIG_DIR).
3. An empty environment variable counts as unset.
4. The result remembers the source of each value, for --print-config.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TextIO

from .config import ServerConfig
from .config_schema import BY_NAME, KEYS, TABLES, ConfigError, Key, check, parse_text

#: Names the configuration file (like --config FILE).
CONFIG_ENV = "PARLEY_CONFIG"
#: The file looked for in the working directory.
LOCAL_FILE = "parley.toml"
#: The file looked for in the user's and the machine's parley config folders.
FOLDER_FILE = "server.toml"
APP_NAME = "parley"

DEFAULT_SOURCE = "default"


def default_paths(cwd: Path | None = None) -> tuple[Path, ...]:
    """Where the server looks for its file when none is named, first match wins:
    ./parley.toml, then server.toml in the user's config folder
    (~/.config/parley on Linux, ~/Library/Application Support/parley on macOS,
    %LOCALAPPDATA%\\parley on Windows), then in the machine's (/etc/xdg/parley,
    /Library/Application Support/parley, C:\\ProgramData\\parley)."""
    import platformdirs

    return (
        (cwd if cwd is not None else Path.cwd()) / LOCAL_FILE,
        platformdirs.user_config_path(APP_NAME, appauthor=False) / FOLDER_FILE,
        platformdirs.site_config_path(APP_NAME, appauthor=False) / FOLDER_FILE,
    )


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The effective configuration and where each value came from."""

    config: ServerConfig
    #: Field name -> "default", "file PATH", "env PARLEY_X" or "flag --x".
    sources: dict[str, str]
    #: The file read, if any, and what named it ("--config", "PARLEY_CONFIG",
    #: "default location").
    file: Path | None
    file_named_by: str
    #: The default locations looked at (when no file was named).
    searched: tuple[Path, ...]
    #: "print-config", "print-sample" or None (run the server).
    action: str | None = None


def build_parser() -> argparse.ArgumentParser:
    """The server's command line: --config, the print actions, and one flag per key."""
    parser = argparse.ArgumentParser(
        prog="parley-server",
        usage="%(prog)s [--config FILE] [--print-config | --print-sample] [--KEY VALUE ...]",
        description="parley: a TLS-only chat server for a local network. Every setting can "
        "be given in a TOML file, an environment variable or a flag; the later wins: "
        "defaults < file < environment < flags. See docs/operations.md.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the TOML configuration file (env {CONFIG_ENV}; default: the first of "
        f"./{LOCAL_FILE} and {FOLDER_FILE} in the user's, then the machine's parley "
        "config folder)",
    )
    parser.add_argument(
        "--print-config",
        action="store_const",
        const="print-config",
        dest="action",
        help="print the effective settings and where each comes from, then exit",
    )
    parser.add_argument(
        "--print-sample",
        action="store_const",
        const="print-sample",
        dest="action",
        help="print a commented configuration file with every default, then exit",
    )
    groups = {
        table: parser.add_argument_group(f"[{table}]", about) for table, about in TABLES.items()
    }
    for key in KEYS:
        group = groups[key.table]
        help_text = f"{key.help} ({key.describe_range()}; env {key.env})"
        if key.kind is bool:
            group.add_argument(
                *key.flags,
                dest=key.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                *key.flags,
                dest=key.name,
                metavar=_metavar(key),
                default=argparse.SUPPRESS,
                help=help_text,
            )
        if key.name == "registration_open":
            # The flag from before the configuration file, kept.
            group.add_argument(
                "--registration",
                choices=("open", "closed"),
                dest="registration",
                default=argparse.SUPPRESS,
                help="the same as --registration-open / --no-registration-open",
            )
    return parser


def _metavar(key: Key) -> str:
    special = {"host": "ADDRESS", "server_name": "NAME", "db_url": "URL"}
    if key.name in special:
        return special[key.name]
    if key.kind is int:
        return "N"
    if key.kind is float:
        return "SECONDS" if key.unit == "s" else "X"
    if key.kind is Path:
        return "DIR"
    return "LEVEL" if key.choices else "TEXT"


def load(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    paths: Sequence[Path] | None = None,
) -> LoadedConfig:
    """Resolve the configuration from *argv*, *environ* and the file; ConfigError if
    any value is refused. *paths* replaces default_paths() (tests)."""
    env = os.environ if environ is None else environ
    given = vars(build_parser().parse_args(argv))

    values: dict[str, object] = {}
    sources: dict[str, str] = {f.name: DEFAULT_SOURCE for f in fields(ServerConfig)}

    searched: tuple[Path, ...] = ()
    named_by = ""
    path: Path | None = None
    if given.get("config"):
        path, named_by = Path(given["config"]), "--config"
    elif env.get(CONFIG_ENV):
        path, named_by = Path(env[CONFIG_ENV]), CONFIG_ENV
    else:
        searched = tuple(paths) if paths is not None else default_paths()
        path = next((p for p in searched if p.is_file()), None)
        named_by = "default location" if path is not None else ""
    if path is not None:
        for name, value in read_file(path, named_by).items():
            values[name] = value
            sources[name] = f"file {path}"

    for key in KEYS:
        text = env.get(key.env)
        if text:
            values[key.name] = parse_text(key, text, f"environment variable {key.env}")
            sources[key.name] = f"env {key.env}"

    for key in KEYS:
        if key.name in given:
            flag = key.flags[0]
            raw = given[key.name]
            if isinstance(raw, bool):
                values[key.name] = check(key, raw, f"flag {flag}")
                flag = flag if raw else "--no-" + flag[2:]
            else:
                values[key.name] = parse_text(key, raw, f"flag {flag}")
            sources[key.name] = f"flag {flag}"
    if "registration" in given:
        values["registration_open"] = given["registration"] == "open"
        sources["registration_open"] = "flag --registration"

    config = _build(values, sources)
    return LoadedConfig(config, sources, path, named_by, searched, given.get("action"))


def read_file(path: Path, named_by: str = "--config") -> dict[str, object]:
    """The checked values of the TOML file at *path*, by field name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} (from {named_by}) does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOMLDecodeError, or an integer of thousands of digits
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, object] = {}
    for table, content in data.items():
        if table not in TABLES:
            if table in BY_NAME:
                where = BY_NAME[table].table
                raise ConfigError(f"{path}: {table} must be inside a table: put it under [{where}]")
            raise ConfigError(
                f"{path}: unknown table [{table}]{_suggest(table, TABLES)} "
                f"(tables: {', '.join(TABLES)})"
            )
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {table} must be one table, written [{table}]")
        for name, value in content.items():
            key = BY_NAME.get(name)
            if key is None:
                raise ConfigError(f"{path} [{table}]: unknown key {name}{_suggest(name, BY_NAME)}")
            if key.table != table:
                raise ConfigError(f"{path}: {name} belongs in [{key.table}], not [{table}]")
            values[name] = check(key, value, f"{path} [{table}]")
    return values


def _suggest(word: str, choices: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(values: dict[str, object], sources: Mapping[str, str]) -> ServerConfig:
    defaults = ServerConfig()

    def said(name: str) -> str:
        return f"{name} = {values.get(name, getattr(defaults, name))} ({sources[name]})"

    ping = values.get("idle_ping_after", defaults.idle_ping_after)
    close = values.get("idle_close_after", defaults.idle_close_after)
    if close <= ping:  # type: ignore[operator]
        raise ConfigError(
            f"idle_close_after must be longer than idle_ping_after: "
            f"idle_close_after = {close} ({sources['idle_close_after']}), "
            f"idle_ping_after = {ping} ({sources['idle_ping_after']})"
        )
    try:
        return ServerConfig(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        # The schema's ranges cover ServerConfig's own checks; this is a last line.
        changed = ", ".join(said(n) for n in values) or "defaults only"
        raise ConfigError(f"{exc} (settings: {changed})") from None


def command_line_config(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ServerConfig:
    """The server's configuration from the command line, for `parley-server`.

    Like argparse's --help: --print-config and --print-sample print and exit 0,
    and a refused setting prints `parley: config error: ...` and exits 2, with
    no traceback (SystemExit)."""
    from .config_render import render_effective, render_sample

    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        loaded = load(argv, environ)
    except ConfigError as exc:
        print(f"parley: config error: {exc}", file=err, flush=True)
        raise SystemExit(2) from None
    if loaded.action == "print-config":
        out.write(render_effective(loaded))
        out.flush()
        raise SystemExit(0)
    if loaded.action == "print-sample":
        out.write(render_sample())
        out.flush()
        raise SystemExit(0)
    return loaded.config
