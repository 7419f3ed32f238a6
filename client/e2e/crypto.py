"""End-to-end encryption primitives for private messages (libsodium through PyNaCl).

Nothing here is home-made cryptography: keys are Ed25519 (signatures) and X25519
(crypto_box key agreement), messages are sealed with crypto_secretbox
(XSalsa20-Poly1305) under a fresh random key per message, and that key is wrapped
with crypto_box for the recipient's account and for the sender's own account
(so the sender's other devices can read what it sent). This module only does
the arithmetic; who trusts which key is client/e2e/pins.py, and the wire is
docs/protocol.md. The formats are versioned (`v`), see docs/security.md.

Envelope v1 (the JSON text a `send`/`message` carries in `e2e`)::

    {"v": 1, "sk": sender's Ed25519 key, "bk": sender's X25519 key,
     "n": nonce, "c": secretbox(payload), "w": {folded nick: crypto_box(key)},
     "s": Ed25519 signature over everything else}

All binary values are standard base64. The payload is the JSON
{"text", "from", "to"}; the receiver checks that `from`/`to` are the ones the
server's frame names, so the server cannot relabel a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey

from parley_chat.protocol import fold

ENVELOPE_VERSION = 1
_KEYS_CONTEXT = b"parley-keys-v1\x00"
_ENVELOPE_CONTEXT = b"parley-e2e-v1\x00"
#: Signal's iteration count for the numeric fingerprint.
SAFETY_ITERATIONS = 5200
#: Link codes: no 0/O or 1/I to misread.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_ID_CHARS = 4
CODE_SECRET_CHARS = 8


class E2EError(Exception):
    """Something could not be decrypted, verified or parsed; the text says what."""


def b64(data: bytes) -> str:
    """Standard base64 text of *data*."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, size: int | None = None, what: str = "value") -> bytes:
    """Bytes of base64 *text*; E2EError when it is not base64 (of *size* bytes)."""
    if not isinstance(text, str):
        raise E2EError(f"{what} is not base64 text")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise E2EError(f"{what} is not base64") from exc
    if size is not None and len(data) != size:
        raise E2EError(f"{what} is {len(data)} bytes, not {size}")
    return data


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """An account's public keys as the server's directory holds them."""

    sign: bytes  #: Ed25519 verify key, 32 bytes: the identity (safety number, pins)
    box: bytes  #: X25519 public key, 32 bytes
    sig: bytes  #: the sign key's signature over the box key

    def to_wire(self) -> dict[str, str]:
        """The `sign`, `box`, `sig` fields of a keys frame."""
        return {"sign": b64(self.sign), "box": b64(self.box), "sig": b64(self.sig)}

    @classmethod
    def from_wire(cls, sign: str, box: str, sig: str) -> PublicKeys:
        """Parse and verify (the signature binds the box key to the identity key)."""
        keys = cls(
            unb64(sign, 32, "sign key"), unb64(box, 32, "box key"), unb64(sig, 64, "signature")
        )
        try:
            VerifyKey(keys.sign).verify(_KEYS_CONTEXT + keys.box, keys.sig)
        except nacl.exceptions.BadSignatureError as exc:
            raise E2EError("the box key is not signed by the identity key") from exc
        return keys

    def fingerprint(self) -> str:
        """A short hex fingerprint of the identity key (for logs and prompts)."""
        return hashlib.sha256(self.sign).hexdigest()[:16]

    def same_as(self, other: PublicKeys) -> bool:
        """Whether both keys are the same (the signature may differ)."""
        return self.sign == other.sign and self.box == other.box


@dataclass(frozen=True, slots=True)
class AccountKeys:
    """An account's secret keys (the same on every device of the account)."""

    signing: SigningKey
    private: PrivateKey

    @classmethod
    def generate(cls) -> AccountKeys:
        """Fresh keys, from the OS's random source."""
        return cls(SigningKey.generate(), PrivateKey.generate())

    @property
    def public(self) -> PublicKeys:
        """The public half, signed."""
        box = bytes(self.private.public_key)
        sig = self.signing.sign(_KEYS_CONTEXT + box).signature
        return PublicKeys(bytes(self.signing.verify_key), box, sig)

    def to_secret_json(self) -> bytes:
        """The secret keys as JSON bytes (only ever written encrypted)."""
        return _canonical(
            {"v": 1, "sign": b64(bytes(self.signing)), "box": b64(bytes(self.private))}
        )

    @classmethod
    def from_secret_json(cls, data: bytes) -> AccountKeys:
        """Inverse of to_secret_json(); E2EError on anything else."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise E2EError("the key data is not JSON") from exc
        if not isinstance(obj, dict) or obj.get("v") != 1:
            raise E2EError("unknown key data version")
        return cls(
            SigningKey(unb64(obj.get("sign"), 32, "sign key")),
            PrivateKey(unb64(obj.get("box"), 32, "box key")),
        )

    def local_key(self) -> bytes:
        """A key for the client's local message store, derived from the account key."""
        return hashlib.blake2b(bytes(self.private), digest_size=32, person=b"parley-local").digest()


# --- messages ----------------------------------------------------------------------


def seal(keys: AccountKeys, sender: str, recipient: str, to_keys: PublicKeys, text: str) -> str:
    """The envelope (JSON text) of *text* from *sender* (holding *keys*) to *recipient*."""
    message_key = secrets.token_bytes(SecretBox.KEY_SIZE)
    nonce = secrets.token_bytes(SecretBox.NONCE_SIZE)
    payload = _canonical({"text": text, "from": sender, "to": recipient})
    sealed = SecretBox(message_key).encrypt(payload, nonce).ciphertext
    me = keys.public
    wraps = {
        fold(recipient): b64(bytes(Box(keys.private, PublicKey(to_keys.box)).encrypt(message_key))),
        fold(sender): b64(bytes(Box(keys.private, PublicKey(me.box)).encrypt(message_key))),
    }
    body: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "sk": b64(me.sign),
        "bk": b64(me.box),
        "n": b64(nonce),
        "c": b64(sealed),
        "w": wraps,
    }
    body["s"] = b64(keys.signing.sign(_ENVELOPE_CONTEXT + _canonical(body)).signature)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Opened:
    """A decrypted envelope: the text and the keys it was sent with (check them against a pin)."""

    text: str
    sender_sign: bytes
    sender_box: bytes


def open_envelope(keys: AccountKeys, me: str, envelope: str, sender: str, recipient: str) -> Opened:
    """Decrypt *envelope* as *me*, for a message the server says went *sender* -> *recipient*.

    Verifies the signature, the wrap and that the payload names the same two
    parties. Raises E2EError (with a short reason) on anything wrong. The caller
    still has to check `sender_sign`/`sender_box` against the sender's pinned keys.
    """
    try:
        body = json.loads(envelope)
    except ValueError as exc:
        raise E2EError("the envelope is not JSON") from exc
    if not isinstance(body, dict):
        raise E2EError("the envelope is not an object")
    if body.get("v") != ENVELOPE_VERSION:
        raise E2EError(f"unknown envelope version {body.get('v')!r}")
    sig = unb64(body.pop("s", None), 64, "signature")
    sign = unb64(body.get("sk"), 32, "sender key")
    box = unb64(body.get("bk"), 32, "sender box key")
    try:
        VerifyKey(sign).verify(_ENVELOPE_CONTEXT + _canonical(body), sig)
    except nacl.exceptions.BadSignatureError as exc:
        raise E2EError("the signature does not verify") from exc
    wraps = body.get("w")
    if not isinstance(wraps, dict) or fold(me) not in wraps:
        raise E2EError("the message is not encrypted for this account")
    try:
        message_key = Box(keys.private, PublicKey(box)).decrypt(
            unb64(wraps[fold(me)], None, "wrapped key")
        )
        payload = SecretBox(message_key).decrypt(
            unb64(body.get("c"), None, "ciphertext"), unb64(body.get("n"), 24, "nonce")
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise E2EError("the message does not decrypt with this account's key") from exc
    try:
        inner = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise E2EError("the decrypted payload is not JSON") from exc
    if not isinstance(inner, dict) or not isinstance(inner.get("text"), str):
        raise E2EError("the decrypted payload has no text")
    if fold(str(inner.get("from"))) != fold(sender) or fold(str(inner.get("to"))) != fold(
        recipient
    ):
        raise E2EError("the message names other parties than the server says")
    return Opened(inner["text"], sign, box)


# --- the safety number ---------------------------------------------------------------


def _fingerprint_digits(key: bytes, stable_id: str, iterations: int) -> str:
    # libsignal's NumericFingerprintGenerator: start from version (2 bytes, zero),
    # key and identifier, then *iterations* rounds of SHA-512(hash || key); the
    # first 30 bytes become six 5-digit groups (5 bytes each, mod 100000).
    digest = b"\x00\x00" + key + stable_id.encode()
    for _ in range(iterations):
        digest = hashlib.sha512(digest + key).digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def safety_number(
    local_id: str,
    local_key: bytes,
    remote_id: str,
    remote_key: bytes,
    iterations: int = SAFETY_ITERATIONS,
) -> str:
    """The 60-digit safety number of two identities, computed as Signal does.

    Both sides get the same digits (the two 30-digit halves are ordered). For
    parley the ids are folded nicks and the keys the 32-byte Ed25519 identity keys.
    """
    halves = sorted(
        (
            _fingerprint_digits(local_key, local_id, iterations),
            _fingerprint_digits(remote_key, remote_id, iterations),
        )
    )
    return halves[0] + halves[1]


def group_digits(number: str, size: int = 5) -> str:
    """The digits in groups of *size* (how people read them out)."""
    return " ".join(number[i : i + size] for i in range(0, len(number), size))


# --- device linking --------------------------------------------------------------------


def new_link_code() -> str:
    """A one-time link code, shown as XXXX-XXXX-XXXX: an id the server sees, and a secret it never does."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_ID_CHARS + CODE_SECRET_CHARS))
    return f"{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def split_link_code(code: str) -> tuple[str, str]:
    """(id, secret) of a link code as a person typed it (case, spaces and dashes ignored)."""
    clean = "".join(ch for ch in code.upper() if ch not in " -")
    if len(clean) != CODE_ID_CHARS + CODE_SECRET_CHARS or any(
        ch not in CODE_ALPHABET for ch in clean
    ):
        raise E2EError("a link code is 12 letters and digits, like ABCD-EFGH-JKLM")
    return clean[:CODE_ID_CHARS], clean[CODE_ID_CHARS:]


def link_mac(secret: str, *parts: bytes) -> bytes:
    """The code-keyed MAC over *parts*: proves they come from someone holding the code."""
    return hashlib.blake2b(b"".join(parts), digest_size=32, key=secret.encode()).digest()


def check_link_mac(secret: str, mac: bytes, *parts: bytes) -> None:
    """E2EError("wrong code") unless *mac* is link_mac(secret, *parts)."""
    if not hmac.compare_digest(link_mac(secret, *parts), mac):
        raise E2EError("the link code does not match (a typo, or another device's code)")


def comparison_code(secret: str, new_device_key: bytes) -> str:
    """The short code both screens show during linking (6 digits, as 123 456)."""
    digest = hashlib.blake2b(new_device_key, digest_size=8, key=secret.encode(), person=b"sas")
    number = int.from_bytes(digest.digest(), "big") % 1_000_000
    return f"{number // 1000:03d} {number % 1000:03d}"


def wrap_for_device(keys: AccountKeys, device_key: bytes) -> tuple[bytes, bytes]:
    """(one-time public key, box) carrying the account's secret keys to a new device's key."""
    one_time = PrivateKey.generate()
    sealed = Box(one_time, PublicKey(device_key)).encrypt(keys.to_secret_json())
    return bytes(one_time.public_key), bytes(sealed)


def unwrap_on_device(device: PrivateKey, one_time_key: bytes, sealed: bytes) -> AccountKeys:
    """The account keys a linking device sent (inverse of wrap_for_device)."""
    try:
        data = Box(device, PublicKey(one_time_key)).decrypt(sealed)
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise E2EError("the keys from the other device do not decrypt") from exc
    return AccountKeys.from_secret_json(data)
