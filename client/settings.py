"""Everything parley's clients remember between runs, as small JSON files in
the user's folders. Pure: no Tk, no sockets. The desktop client keeps its
form and window here; both clients share the pins and the last-seen ids (so
trusting a server once covers both), which is why this module lives beside
the client library and not in client/gui: importing it never loads the GUI
toolkit.

Files, in the folders platformdirs gives for the app "parley" (config_dir()
and data_dir(); docs/gui.md lists them per system):
  settings.json       (config) the connect form's last values, appearance, window size
  known_servers.json  (data)   certificates pinned on first use, per host and port
  last_seen.json      (data)   the id of the last message shown, per server and nick

Rules this module keeps:
1. The password is never written: Settings has no field for it, and save()
   writes only Settings' own fields.
2. Every write is atomic (temp file + rename), so a crash never leaves half a
   file; a missing or unreadable file reads as empty, never as an error that
   stops the app from starting.
3. A pin is only ever replaced by an explicit forget_pin() then set_pin(): the
   caller decides, with the user, never this module.
4. Files from the folder used before platformdirs ($XDG_CONFIG_HOME/parley,
   else ~/.config/parley) are moved once to their new folder, never over a
   file already there (SettingsStore.for_user).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from parley_chat.protocol import fold

APP_NAME = "parley"
#: Overrides both folders (tests and scripts point it at a temp dir).
CONFIG_DIR_ENV = "PARLEY_CONFIG_DIR"
#: Overrides the data folder alone (pins and last-seen ids).
DATA_DIR_ENV = "PARLEY_DATA_DIR"

SETTINGS_FILE = "settings.json"
KNOWN_SERVERS_FILE = "known_servers.json"
LAST_SEEN_FILE = "last_seen.json"
#: Which folder each file lives in: settings are configuration, the rest is data.
DATA_FILES = (KNOWN_SERVERS_FILE, LAST_SEEN_FILE)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of settings.json: $PARLEY_CONFIG_DIR, else the user's config
    folder (~/.config/parley or $XDG_CONFIG_HOME/parley on Linux,
    ~/Library/Application Support/parley on macOS, %LOCALAPPDATA%\\parley on Windows)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV])
    import platformdirs

    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the pins and last-seen ids: $PARLEY_DATA_DIR, else
    $PARLEY_CONFIG_DIR, else the user's data folder (~/.local/share/parley or
    $XDG_DATA_HOME/parley on Linux, the same folders as config_dir() elsewhere)."""
    env = os.environ if environ is None else environ
    for name in (DATA_DIR_ENV, CONFIG_DIR_ENV):
        if env.get(name):
            return Path(env[name])
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def legacy_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The one folder the client used before platformdirs: $XDG_CONFIG_HOME/parley,
    else ~/.config/parley (on every system)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / APP_NAME


def migrate_legacy(old: Path, store: SettingsStore) -> list[tuple[Path, Path]]:
    """Move the files in *old* to *store*'s folders; returns what moved (from, to).

    A file already at the new place wins (it is newer than anything left
    behind), so the old one stays. A failure leaves the old file where it was:
    the app starts with defaults and can be pointed at it again."""
    moved: list[tuple[Path, Path]] = []
    for name in (SETTINGS_FILE, *DATA_FILES):
        source = old / name
        target = (store.data_directory if name in DATA_FILES else store.directory) / name
        try:
            if not source.is_file() or target.exists() or source.resolve() == target.resolve():
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
            os.close(fd)
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            source.unlink()
        except OSError:
            continue
        moved.append((source, target))
    return moved


def server_key(host: str, port: int) -> str:
    """The key a server is remembered under: `host:port` (host lower-cased,
    IPv6 literals in brackets)."""
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


@dataclass(slots=True)
class Settings:
    """The values the app remembers. There is deliberately no password field."""

    host: str = "127.0.0.1"
    port: int = 5555
    ca_file: str = "certs/ca.pem"
    nick: str = ""
    register: bool = False
    appearance: str = "light"  # "light" or "dark"
    geometry: str = "1120x720"  # "WIDTHxHEIGHT" of the main window
    font_size: int = 14  # the chat's text size in pixels (Ctrl+plus/minus)
    muted: list[str] = field(default_factory=list)  # conversation keys without notifications
    # Protect the end-to-end keys with a passphrase even where an OS keyring is there.
    key_passphrase: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """Settings from a decoded settings.json; unknown keys and values of the
        wrong type are ignored (defaults stand in for them)."""
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            wanted = type(getattr(defaults, f.name))
            if wanted is int and isinstance(value, bool):
                continue
            if isinstance(value, wanted):
                values[f.name] = value
        settings = cls(**values)
        if settings.appearance not in ("light", "dark"):
            settings.appearance = defaults.appearance
        if not 0 < settings.port < 65536:
            settings.port = defaults.port
        if not valid_geometry(settings.geometry):  # Tk would refuse to open the window
            settings.geometry = defaults.geometry
        return settings


#: A window geometry Tk takes: WIDTHxHEIGHT, then optionally +X+Y (either may be -).
_GEOMETRY = re.compile(r"[0-9]{1,5}x[0-9]{1,5}(?:[+-]-?[0-9]{1,6}[+-]-?[0-9]{1,6})?")


def valid_geometry(text: str) -> bool:
    """True for a window size Tk accepts ("1120x720", "1120x720+40+30")."""
    return _GEOMETRY.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Pin:
    """A server certificate pinned on first use."""

    pem: str
    fingerprint: str  # SHA-256, 64 lowercase hex digits


class SettingsStore:
    """Reads and writes the client's files (folders created on first write).

    *directory* holds settings.json, *data_directory* the pins and last-seen ids;
    given only *directory*, both live there (tests, PARLEY_CONFIG_DIR); given
    neither, the user's folders (config_dir(), data_dir())."""

    def __init__(
        self, directory: Path | str | None = None, data_directory: Path | str | None = None
    ) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        if data_directory is not None:
            self.data_directory = Path(data_directory)
        else:
            self.data_directory = self.directory if directory is not None else data_dir()
        #: Files moved from the folder used before platformdirs (for_user()).
        self.migrated: list[tuple[Path, Path]] = []

    @classmethod
    def for_user(cls, environ: Mapping[str, str] | None = None) -> SettingsStore:
        """The store of the user running the app: the override variables or the
        platformdirs folders, after moving the files of the old folder there
        (not when an override variable names the folders)."""
        env = os.environ if environ is None else environ
        store = cls(config_dir(env), data_dir(env))
        if not env.get(CONFIG_DIR_ENV) and not env.get(DATA_DIR_ENV):
            store.migrated = migrate_legacy(legacy_dir(env), store)
        return store

    # --- the connect form and window -------------------------------------------------

    def load(self) -> Settings:
        """The remembered settings (defaults when there are none)."""
        return Settings.from_json(self._read(SETTINGS_FILE))

    def save(self, settings: Settings) -> None:
        """Remember *settings* (never a password: Settings has none)."""
        self._write(SETTINGS_FILE, asdict(settings))

    # --- trust on first use ------------------------------------------------------------

    def get_pin(self, host: str, port: int) -> Pin | None:
        """The certificate pinned for *host*:*port*, if any."""
        entry = self._read(KNOWN_SERVERS_FILE).get(server_key(host, port))
        if not isinstance(entry, dict):
            return None
        pem, fingerprint = entry.get("pem"), entry.get("fingerprint")
        if not isinstance(pem, str) or not isinstance(fingerprint, str):
            return None
        return Pin(pem=pem, fingerprint=fingerprint)

    def set_pin(self, host: str, port: int, pin: Pin) -> None:
        """Pin *pin* for *host*:*port*. Refuses (ValueError) to overwrite a different
        pin: a changed certificate must be forgotten explicitly first."""
        data = self._read(KNOWN_SERVERS_FILE)
        key = server_key(host, port)
        old = data.get(key)
        if isinstance(old, dict) and old.get("fingerprint") not in (None, pin.fingerprint):
            raise ValueError(f"{key} already has a different pinned certificate; forget it first")
        data[key] = {"pem": pin.pem, "fingerprint": pin.fingerprint}
        self._write(KNOWN_SERVERS_FILE, data)

    def forget_pin(self, host: str, port: int) -> bool:
        """Remove the pin of *host*:*port*; True if there was one."""
        data = self._read(KNOWN_SERVERS_FILE)
        if data.pop(server_key(host, port), None) is None:
            return False
        self._write(KNOWN_SERVERS_FILE, data)
        return True

    # --- replay across restarts -----------------------------------------------------------

    def get_last_seen(self, host: str, port: int, nick: str) -> int | None:
        """The id of the last message shown to *nick* on *host*:*port*, if known."""
        value = self._read(LAST_SEEN_FILE).get(_seen_key(host, port, nick))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_last_seen(self, host: str, port: int, nick: str, message_id: int) -> None:
        """Remember *message_id* as the last shown to *nick* on *host*:*port*."""
        data = self._read(LAST_SEEN_FILE)
        key = _seen_key(host, port, nick)
        if data.get(key) == message_id:
            return
        data[key] = message_id
        self._write(LAST_SEEN_FILE, data)

    # --- files ------------------------------------------------------------------------------

    @property
    def known_servers_path(self) -> Path:
        """Where pinned certificates are kept (shown to the user in warnings)."""
        return self.path_of(KNOWN_SERVERS_FILE)

    def path_of(self, name: str) -> Path:
        """Where the file *name* lives: the data folder for pins and last-seen ids,
        the config folder for settings.json."""
        return (self.data_directory if name in DATA_FILES else self.directory) / name

    def _read(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path_of(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: Mapping[str, Any]) -> None:
        path = self.path_of(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _seen_key(host: str, port: int, nick: str) -> str:
    return f"{fold(nick)}@{server_key(host, port)}"
