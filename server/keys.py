"""The server's part in end-to-end encryption: the key directory and the link relay.

Handlers for `keys_put`, `keys_get` and `link` (docs/protocol.md), registered
in commands.HANDLERS. The server stores public keys and relays linking frames
between two connections of the same account; it holds no secret and can read
no encrypted message (docs/security.md says what it can still do).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from parley_chat.protocol import Error, ErrorCode, Keys, KeysGet, KeysPut, Link, encode
from parley_chat.protocol.vocab import LinkOp

from .store import keys as key_store
from .store import queries
from .store.errors import StoreConflict, StoreError

if TYPE_CHECKING:
    from .commands import Client, Commands

log = logging.getLogger(__name__)

#: How long a new device's link offer waits for the old device (seconds).
LINK_TTL = 600.0
#: Offers one account may have open at once (each is a connection waiting).
MAX_OFFERS_PER_USER = 4


@dataclass(slots=True)
class _Offer:
    conn: Client
    frame: Link
    expires: float


class LinkRelay:
    """Open link offers, per account: code -> the offering connection. Thread-safe."""

    def __init__(self, ttl: float = LINK_TTL) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._offers: dict[int, dict[str, _Offer]] = {}

    def offer(self, user_id: int, conn: Client, frame: Link) -> bool:
        """Keep *frame* (an offer) for *conn*; False when the account has too many open."""
        now = time.monotonic()
        with self._lock:
            mine = self._offers.setdefault(user_id, {})
            for code in [c for c, o in mine.items() if o.expires < now]:
                del mine[code]
            if frame.code not in mine and len(mine) >= MAX_OFFERS_PER_USER:
                return False
            mine[frame.code] = _Offer(conn, frame, now + self._ttl)
            return True

    def find(self, user_id: int, code: str) -> _Offer | None:
        """The live offer for *code* of this account, or None."""
        with self._lock:
            found = self._offers.get(user_id, {}).get(code)
        if found is None or found.expires < time.monotonic():
            return None
        return found

    def take(self, user_id: int, code: str) -> _Offer | None:
        """Remove and return the live offer for *code* (an answer is relayed once)."""
        with self._lock:
            found = self._offers.get(user_id, {}).pop(code, None)
        if found is None or found.expires < time.monotonic():
            return None
        return found


def _keys_frame(nick: str, record: key_store.KeyRecord | None, tag: str | None) -> Keys:
    if record is None:
        return Keys(nick=nick, tag=tag)
    return Keys(nick=record.nick, sign=record.sign, box=record.box, sig=record.sig, tag=tag)


def keys_get(cmds: Commands, conn: Client, f: KeysGet) -> None:
    """keys_get {nick, tag?}: the published keys (a keys frame without keys: none;
    with `no_account`: there is no such account)."""
    with cmds.store.read() as s:
        record = key_store.get_keys(s, f.nick)
        # A deleted account frees its nick (nick_key is cleared): not found either.
        missing = record is None and queries.get_user(s, f.nick) is None
    if missing:
        conn.send_frame(Keys(nick=f.nick, tag=f.tag, no_account=True))
        return
    conn.send_frame(_keys_frame(f.nick, record, f.tag))


def keys_put(cmds: Commands, conn: Client, f: KeysPut) -> None:
    """keys_put {sign, box, sig, replace?}: publish; answered with the account's keys frame."""
    assert conn.user_id is not None and conn.nick is not None
    from .store import utcnow

    op = partial(
        key_store.put_keys,
        user_id=conn.user_id,
        sign=f.sign,
        box=f.box,
        sig=f.sig,
        now=utcnow(),
        replace=f.replace,
    )
    nick = conn.nick

    def done(result: bool | None, exc: BaseException | None) -> None:
        if isinstance(exc, StoreConflict):
            conn.send_frame(Error(code=ErrorCode.KEYS_EXIST, message=str(exc)))
            return
        if exc is not None:
            log.error("could not store the keys of %s: %s", nick, exc)
            message = f"the keys were NOT stored ({exc})" if isinstance(exc, StoreError) else ""
            conn.send_frame(
                Error(code=ErrorCode.STORE_FAILED, message=message or "the keys were NOT stored")
            )
            return
        if result:
            log.info("%s published end-to-end keys (replace=%s)", nick, f.replace)
        conn.send_frame(Keys(nick=nick, sign=f.sign, box=f.box, sig=f.sig))

    cmds.store.submit(op, done, what="keys_put")


def link(cmds: Commands, conn: Client, f: Link) -> None:
    """link {op, code, ...}: relay device linking between connections of one account."""
    assert conn.user_id is not None
    relay: LinkRelay = cmds.links
    if f.op is LinkOp.OFFER:
        if not relay.offer(conn.user_id, conn, f):
            conn.send_frame(
                Error(code=ErrorCode.BAD_FRAME, message="too many devices are waiting to be linked")
            )
        return
    found = (
        relay.find(conn.user_id, f.code)
        if f.op is LinkOp.FETCH
        else relay.take(conn.user_id, f.code)
    )
    if found is None or found.conn is conn:
        conn.send_frame(
            Error(
                code=ErrorCode.NO_SUCH_LINK,
                message=f"no device of yours is waiting with the code {f.code}-...; "
                "check the code, or start again on the new device",
            )
        )
        return
    if f.op is LinkOp.FETCH:
        conn.send_frame(found.frame)
    else:
        found.conn.deliver(encode(f))  # unsolicited on that connection
