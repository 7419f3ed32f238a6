"""The client's own store of decrypted private messages (the server cannot search them).

An SQLite file per account and server. Each text is kept encrypted under a key
derived from the account's key (AccountKeys.local_key), so the file is as
safe as the key file; search decrypts the rows in memory and matches every
word as a case-insensitive substring, like the server's search of public
messages. Rows are keyed by the server's message id, so a message seen live,
in a replay and in a history page is stored once.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
from nacl.secret import SecretBox

from parley_chat.protocol import fold

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    peer TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sealed BLOB NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class LocalMessage:
    """A decrypted private message as the local store keeps it."""

    id: int
    ts: str
    sender: str
    recipient: str
    text: str


class LocalStore:
    """Decrypted private messages of one account, at *path* (":memory:" for none on disk)."""

    def __init__(self, path: Path | str, key: bytes, me: str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._box = SecretBox(key)
        self._me = fold(me)
        self._lock = threading.Lock()

    def add(self, message_id: int, ts: str, sender: str, recipient: str, text: str) -> None:
        """Keep one decrypted message (again is a no-op)."""
        peer = fold(recipient) if fold(sender) == self._me else fold(sender)
        sealed = bytes(self._box.encrypt(text.encode()))
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, ts, peer, sender, recipient, sealed),
            )
            self._db.commit()

    def get(self, message_id: int) -> LocalMessage | None:
        """One message by its server id, or None."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts, sender, recipient, sealed FROM messages WHERE id = ?",
                (message_id,),
            ).fetchall()
        found = self._open(rows)
        return found[0] if found else None

    def search(self, words: str, limit: int = 50) -> list[LocalMessage]:
        """Messages holding every word of *words* (newest first, at most *limit*)."""
        terms = [w.casefold() for w in words.split()]
        if not terms:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts, sender, recipient, sealed FROM messages ORDER BY id DESC"
            ).fetchall()
        hits = [m for m in self._open(rows) if all(t in m.text.casefold() for t in terms)]
        return hits[:limit]

    def _open(self, rows: list[tuple[int, str, str, str, bytes]]) -> list[LocalMessage]:
        out = []
        for mid, ts, sender, recipient, sealed in rows:
            try:
                text = self._box.decrypt(sealed).decode()
            except (nacl.exceptions.CryptoError, UnicodeDecodeError):
                continue  # written under another key (keys were reset): unreadable, skipped
            out.append(LocalMessage(mid, ts, sender, recipient, text))
        return out

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
