"""The account's secret keys at rest: always encrypted, with a passphrase or the OS keyring.

A key file is JSON {"v": 1, "kdf": "argon2id" | "keyring", ...,"n", "c"}: the
secret keys (crypto.AccountKeys.to_secret_json) under crypto_secretbox. With a
passphrase the box key comes from Argon2id (libsodium's pwhash, with its salt and
limits in the file); with the keyring a random key is kept by the OS keyring
(`keyring`) under service KEYRING_SERVICE. The passphrase form is also the
export format (`/keys export`), the fallback to linking a device.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
from nacl.secret import SecretBox

from .crypto import AccountKeys, E2EError, b64, unb64

KEYRING_SERVICE = "parley-e2e"
#: Argon2id cost: libsodium's "interactive" limits (about 0.1 s, 64 MiB).
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


def _passphrase_key(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    if not passphrase:
        raise E2EError("the passphrase is empty")
    try:
        secret = passphrase.encode()
    except UnicodeEncodeError as exc:  # an environment variable with bytes that are not UTF-8
        raise E2EError("the passphrase holds bytes that are not UTF-8 text") from exc
    return nacl.pwhash.argon2id.kdf(SecretBox.KEY_SIZE, secret, salt, ops, mem)


def encrypt_keys(
    keys: AccountKeys, passphrase: str, *, ops: int = OPSLIMIT, mem: int = MEMLIMIT
) -> bytes:
    """The key file bytes for *keys* under *passphrase* (also the export format)."""
    salt = secrets.token_bytes(nacl.pwhash.argon2id.SALTBYTES)
    box = SecretBox(_passphrase_key(passphrase, salt, ops, mem))
    sealed = box.encrypt(keys.to_secret_json())
    doc = {
        "v": 1,
        "kdf": "argon2id",
        "salt": b64(salt),
        "ops": ops,
        "mem": mem,
        "n": b64(sealed.nonce),
        "c": b64(sealed.ciphertext),
    }
    return json.dumps(doc, indent=1).encode() + b"\n"


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise E2EError("not a parley key file") from exc
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise E2EError("not a parley key file (or a newer version)")
    return doc


def key_file_protection(data: bytes) -> str:
    """What protects key file *data*: "argon2id" (a passphrase) or "keyring"."""
    kdf = _load(data).get("kdf")
    if kdf not in ("argon2id", "keyring"):
        raise E2EError(f"unknown key protection {kdf!r}")
    return str(kdf)


def decrypt_keys(
    data: bytes, passphrase: str | None = None, keyring_name: str | None = None
) -> AccountKeys:
    """The keys in key file *data*; E2EError for a wrong passphrase or a damaged file."""
    doc = _load(data)
    if doc.get("kdf") == "argon2id":
        if passphrase is None:
            raise E2EError("this key file needs its passphrase")
        ops, mem = doc.get("ops"), doc.get("mem")
        if not isinstance(ops, int) or not isinstance(mem, int):
            raise E2EError("the key file's limits are damaged")
        key = _passphrase_key(passphrase, unb64(doc.get("salt"), 16, "salt"), ops, mem)
    elif doc.get("kdf") == "keyring":
        key = _keyring_key(keyring_name or str(doc.get("name")), create=False)
    else:
        raise E2EError(f"unknown key protection {doc.get('kdf')!r}")
    try:
        data = SecretBox(key).decrypt(
            unb64(doc.get("c"), None, "keys"), unb64(doc.get("n"), 24, "nonce")
        )
    except nacl.exceptions.CryptoError as exc:
        raise E2EError("wrong passphrase (or a damaged key file)") from exc
    return AccountKeys.from_secret_json(data)


def _keyring_key(name: str, *, create: bool) -> bytes:
    import keyring  # imported here: only this form needs an OS keyring
    import keyring.errors

    try:
        stored = keyring.get_password(KEYRING_SERVICE, name)
        if stored is None:
            if not create:
                raise E2EError(f"the OS keyring holds no key for {name}")
            stored = b64(secrets.token_bytes(SecretBox.KEY_SIZE))
            keyring.set_password(KEYRING_SERVICE, name, stored)
    except keyring.errors.KeyringError as exc:
        raise E2EError(f"the OS keyring is not usable: {exc}") from exc
    return unb64(stored, SecretBox.KEY_SIZE, "keyring key")


def encrypt_keys_keyring(keys: AccountKeys, name: str) -> bytes:
    """The key file bytes for *keys*, its box key kept in the OS keyring under *name*."""
    box = SecretBox(_keyring_key(name, create=True))
    sealed = box.encrypt(keys.to_secret_json())
    doc = {
        "v": 1,
        "kdf": "keyring",
        "name": name,
        "n": b64(sealed.nonce),
        "c": b64(sealed.ciphertext),
    }
    return json.dumps(doc, indent=1).encode() + b"\n"


def write_private(path: Path, data: bytes) -> None:
    """Write *data* to *path* readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
