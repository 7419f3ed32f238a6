"""Peers' public keys pinned on first contact (trust on first use), per server.

A JSON file {folded nick: {"sign", "box", "at", "verified"}}. A peer's keys are
pinned the first time they are seen (from the server's directory, or from a
message they sent); afterwards a different key is a KeyChanged, which blocks
sending to that peer until the user accepts the new key (accept()).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from parley_chat.protocol import fold

from .crypto import E2EError, PublicKeys, b64, unb64
from .keystore import write_private


class KeyChanged(E2EError):
    """A peer's key is not the pinned one: nothing is sent until the user accepts it."""

    def __init__(self, nick: str, pinned: PublicKeys, seen: PublicKeys) -> None:
        super().__init__(
            f"{nick}'s encryption key has CHANGED since you first talked "
            f"(pinned {pinned.fingerprint()}, now {seen.fingerprint()}). It may be a new "
            f"install of theirs, or someone (even the server) impersonating them. Nothing was "
            f"sent. Compare the safety number with {nick} in person, then accept the new key."
        )
        self.nick = nick
        self.pinned = pinned
        self.seen = seen


class PinStore:
    """The pinned keys of one account's peers; thread-safe; kept in *path* (or memory if None)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._pins: dict[str, dict[str, object]] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise E2EError(f"the key pins in {path} cannot be read: {exc}") from exc
            if isinstance(loaded, dict):
                self._pins = {str(k): v for k, v in loaded.items() if isinstance(v, dict)}

    def get(self, nick: str) -> PublicKeys | None:
        """The pinned keys of *nick*, or None (never seen)."""
        with self._lock:
            entry = self._pins.get(fold(nick))
        if entry is None:
            return None
        return PublicKeys(
            unb64(entry.get("sign"), 32, "pinned key"),
            unb64(entry.get("box"), 32, "pinned key"),
            b"",
        )

    def check(self, nick: str, seen: PublicKeys) -> bool:
        """Pin *seen* on first contact (returns True then); KeyChanged when it differs."""
        pinned = self.get(nick)
        if pinned is None:
            self._put(nick, seen)
            return True
        if not pinned.same_as(seen):
            raise KeyChanged(nick, pinned, seen)
        return False

    def accept(self, nick: str, seen: PublicKeys) -> None:
        """The user accepted *seen* as *nick*'s key (after a KeyChanged)."""
        self._put(nick, seen)

    def _put(self, nick: str, keys: PublicKeys) -> None:
        with self._lock:
            self._pins[fold(nick)] = {
                "sign": b64(keys.sign),
                "box": b64(keys.box),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            data = json.dumps(self._pins, indent=1, sort_keys=True).encode() + b"\n"
            if self._path is not None:
                write_private(self._path, data)
