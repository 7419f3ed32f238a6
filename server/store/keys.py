"""The end-to-end key directory: each account's published public keys (table user_keys).

The server only stores and hands out public keys; it never checks them beyond
their form (clients verify the signature and pin what they see, docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley_chat.protocol import fold

from .errors import StoreConflict
from .models import User, UserKey


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An account's public keys, as published (base64)."""

    nick: str
    sign: str
    box: str
    sig: str


class KeysExist(StoreConflict):
    """Other keys are published for the account and `replace` was not asked for."""


def get_keys(s: Session, nick: str) -> KeyRecord | None:
    """The keys published for the live account *nick*, or None (no account, or no keys)."""
    row = s.execute(
        select(User.nick, UserKey.sign_key, UserKey.box_key, UserKey.sig)
        .join(UserKey, UserKey.user_id == User.id)
        .where(User.nick_key == fold(nick), User.deleted_at.is_(None))
    ).first()
    return KeyRecord(*row) if row is not None else None


def put_keys(
    s: Session,
    user_id: int,
    sign: str,
    box: str,
    sig: str,
    now: datetime,
    *,
    replace: bool = False,
) -> bool:
    """Publish keys for *user_id*; True when they changed. KeysExist when other keys
    are published and *replace* is false (publishing the same keys again is a no-op)."""
    row = s.get(UserKey, user_id)
    if row is None:
        s.add(UserKey(user_id=user_id, sign_key=sign, box_key=box, sig=sig, updated_at=now))
        s.flush()
        return True
    if (row.sign_key, row.box_key) == (sign, box):
        return False
    if not replace:
        raise KeysExist(
            "this account already has other end-to-end keys: link this device from one "
            "that has them, import an exported key file, or reset the keys (replace)"
        )
    row.sign_key, row.box_key, row.sig, row.updated_at = sign, box, sig, now
    s.flush()
    return True
