"""Where a device keeps its end-to-end state, and opening it for a ChatClient.

Per server and account, under the data folder (client.settings.data_dir):
e2e/<host>_<port>/<nick>/ holds keys.json (the account keys, encrypted: a
passphrase or the OS keyring), pins.json (peers' pinned keys) and local.db (the
decrypted private messages, each sealed under a key derived from the account
key). Both clients use this, so the terminal and desktop client on one
machine share keys, pins and local history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from parley_chat.protocol import fold

from ..connection import ChatClient
from ..settings import data_dir
from .crypto import AccountKeys, E2EError
from .keystore import (
    decrypt_keys,
    encrypt_keys,
    encrypt_keys_keyring,
    key_file_protection,
    write_private,
)
from .localstore import LocalStore
from .pins import PinStore
from .session import E2ESession

#: The environment variable holding the key passphrase (scripts, tests).
PASSPHRASE_ENV = "PARLEY_KEY_PASSPHRASE"


def account_dir(root: Path, host: str, port: int, nick: str) -> Path:
    """The folder of one account's end-to-end state under the client's folder *root*."""
    server = re.sub(r"[^A-Za-z0-9._-]", "_", f"{host}_{port}")
    return root / "e2e" / server / fold(nick)


class DeviceKeys:
    """The key file of one account on this device, protected by *passphrase* or,
    when it is None, by the OS keyring."""

    def __init__(self, folder: Path, passphrase: str | None, keyring_name: str) -> None:
        self.folder = folder
        self.path = folder / "keys.json"
        self.passphrase = passphrase
        self.keyring_name = keyring_name

    @property
    def protection(self) -> str | None:
        """How the key file on this device is protected: "argon2id" (a passphrase),
        "keyring", or None when there is no key file yet. E2EError: not a key file."""
        if not self.path.exists():
            return None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise E2EError(f"cannot read {self.path}: {exc.strerror}") from exc
        return key_file_protection(data)

    def load(self) -> AccountKeys | None:
        """The keys, or None when this device has none. E2EError: wrong passphrase, ..."""
        if not self.path.exists():
            return None
        return decrypt_keys(self.path.read_bytes(), self.passphrase, self.keyring_name)

    def save(self, keys: AccountKeys) -> None:
        """Write *keys* encrypted (owner-only file)."""
        if self.passphrase is not None:
            data = encrypt_keys(keys, self.passphrase)
        else:
            data = encrypt_keys_keyring(keys, self.keyring_name)
        write_private(self.path, data)


def keyring_usable() -> bool:
    """Whether an OS keyring is there to keep a key in (not keyring's "fail" or "null"
    backends, which are what a machine without a keyring service gets)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration is no keyring
        return False
    return not isinstance(backend, fail.Keyring | null.Keyring)


def device_keys(client: ChatClient, root: Path, passphrase: str | None) -> DeviceKeys:
    """The key file of *client*'s account on this device, under the client's folder *root*."""
    folder = account_dir(root, client.host, client.port, client.nick)
    return DeviceKeys(folder, passphrase, f"{client.nick}@{client.host}:{client.port}")


def session_for(client: ChatClient, device: DeviceKeys, keys: AccountKeys | None) -> E2ESession:
    """An E2ESession for *client* with *keys* (None: none on this device yet, or
    locked), the pins and local store in *device*'s folder; saves new keys there."""
    folder = device.folder
    pins = PinStore(folder / "pins.json")

    def local(keys: AccountKeys) -> LocalStore:
        return LocalStore(folder / "local.db", keys.local_key(), client.nick)

    def saved(keys: AccountKeys) -> None:
        try:
            device.save(keys)
        except E2EError:
            raise
        except OSError as exc:
            raise E2EError(f"cannot save the keys in {device.path}: {exc}") from exc

    return E2ESession(client, keys, pins, local_factory=local, on_keys=saved)


def open_session(
    client: ChatClient,
    env: Mapping[str, str],
    passphrase: str | None,
    root: Path | None = None,
) -> tuple[E2ESession, DeviceKeys]:
    """An E2ESession for *client* with this device's keys, pins and local store, kept
    under *root* (default: the data folder, client.settings.data_dir).

    Raises E2EError when the key file cannot be opened (wrong passphrase, no keyring).
    """
    device = device_keys(client, root or data_dir(env), passphrase)
    keys = device.load()
    return session_for(client, device, keys), device
