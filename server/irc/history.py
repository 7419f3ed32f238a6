"""draft/chathistory: CHATHISTORY LATEST, BEFORE, AFTER, AROUND, BETWEEN, TARGETS.

References are `msgid=<parley message id>` or `timestamp=<ISO 8601 UTC>`, `*` for
"now" in LATEST; endpoints are exclusive. Results come in a `chathistory` batch
(TARGETS in `draft/chathistory-targets`), rendered as live messages are, and only
what the user may see (server/store/chathistory.py): a room's messages to its
members, a private conversation to its two parties.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from parley_chat.ircproto import Message
from parley_chat.protocol import MAX_ID, format_ts, message_wire

from ..hub import message_frame
from ..store import chathistory as ch
from ..store.records import StoredMessage
from .gateway import CHATHISTORY_MAX, REQUEST, Spec

if TYPE_CHECKING:
    from .connection import IrcConnection
    from .gateway import IrcGateway

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS")


class _BadParams(ValueError):
    """A reference or a limit that cannot be read."""


def parse_time(text: str) -> datetime:
    """A timestamp reference as naive UTC. Raises _BadParams."""
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            # 0001-01-01T00:00:00+14:00 is before year 1 in UTC: OverflowError.
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise _BadParams(f"bad timestamp {text}") from exc
    return moment


def parse_ref(text: str) -> ch.Bound:
    """msgid=N (a multi-line piece N-k counts as N) or timestamp=T. Raises _BadParams."""
    kind, sep, value = text.partition("=")
    if not sep:
        raise _BadParams(f"bad message reference {text}")
    if kind == "msgid":
        head = value.split("-", 1)[0]
        # isdecimal, not isdigit: int() refuses "²", which isdigit accepts.
        if not head.isdecimal() or int(head) > MAX_ID:
            raise _BadParams(f"unknown msgid {value}")
        return ch.Bound(id=int(head))
    if kind == "timestamp":
        return ch.Bound(at=parse_time(value))
    raise _BadParams(f"bad message reference {text}")


def _limit(text: str) -> int:
    if not text.isdecimal():
        raise _BadParams(f"bad limit {text}")
    return min(int(text), CHATHISTORY_MAX)


def chathistory(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """CHATHISTORY <subcommand> ..."""
    p = msg.params
    sub = p[0].upper() if p else ""
    if sub not in SUBCOMMANDS:
        conn.reply(gw.fail("CHATHISTORY", "INVALID_PARAMS", sub or "*", "Unknown subcommand"))
        return
    try:
        if sub == "TARGETS":
            if len(p) < 4:
                raise _BadParams("CHATHISTORY TARGETS <timestamp> <timestamp> <limit>")
            _targets(gw, conn, parse_ref(p[1]), parse_ref(p[2]), _limit(p[3]))
            return
        if len(p) < 4 or (sub == "BETWEEN" and len(p) < 5):
            raise _BadParams(f"not enough parameters for CHATHISTORY {sub}")
        target = p[1]
        messages = _select(gw, conn, sub, target, p)
    except _BadParams as exc:
        conn.reply(gw.fail("CHATHISTORY", "INVALID_PARAMS", sub, str(exc)))
        return
    if messages is None:
        conn.reply(gw.fail("CHATHISTORY", "INVALID_TARGET", sub, target, "No such channel or nick"))
        return
    _send_batch(gw, conn, target, messages)


def _select(
    gw: IrcGateway, conn: IrcConnection, sub: str, target: str, p: tuple[str, ...]
) -> list[StoredMessage] | None:
    uid = conn.user_id
    assert uid is not None
    if target.startswith("#") and conn.shows(target) is None:
        return None  # only the channels this client has (and so may see)
    with gw.store.read() as s:
        if sub == "LATEST":
            limit = _limit(p[3])
            after = None if p[2] == "*" else parse_ref(p[2])
            return ch.select_messages(s, uid, target, after=after, limit=limit, newest=True)
        if sub == "BEFORE":
            return ch.select_messages(
                s, uid, target, before=parse_ref(p[2]), limit=_limit(p[3]), newest=True
            )
        if sub == "AFTER":
            return ch.select_messages(
                s, uid, target, after=parse_ref(p[2]), limit=_limit(p[3]), newest=False
            )
        if sub == "AROUND":
            return ch.around(s, uid, target, parse_ref(p[2]), _limit(p[3]))
        first, second, limit = parse_ref(p[2]), parse_ref(p[3]), _limit(p[4])
        forward = _order(s, uid, first) <= _order(s, uid, second)
        low, high = (first, second) if forward else (second, first)
        return ch.select_messages(
            s, uid, target, after=low, before=high, limit=limit, newest=not forward
        )


def _order(s: object, uid: int, b: ch.Bound) -> datetime:
    if b.at is not None:
        return b.at
    assert b.id is not None
    at = ch.message_time(s, uid, b.id)  # type: ignore[arg-type]
    if at is None:
        raise _BadParams(f"unknown msgid {b.id}")
    return at


def _send_batch(
    gw: IrcGateway, conn: IrcConnection, target: str, messages: list[StoredMessage]
) -> None:
    ref = gw.batch_id()
    shown = conn.shows(target) if target.startswith("#") else target
    lines = [Message("BATCH", (f"+{ref}", "chathistory", shown or target), gw.server_name)]
    for m in messages:
        for out, _own in conn.renderer.message(message_wire(message_frame(m)), replay=True):
            if out.command:
                lines.append(out.with_tags(batch=ref))
    lines.append(Message("BATCH", (f"-{ref}",), gw.server_name))
    conn.reply(*lines)


def _targets(
    gw: IrcGateway, conn: IrcConnection, start: ch.Bound, end: ch.Bound, limit: int
) -> None:
    if start.at is None or end.at is None:
        raise _BadParams("TARGETS takes timestamps")
    assert conn.user_id is not None
    with gw.store.read() as s:
        found = ch.targets(s, conn.user_id, start.at, end.at, limit)
    ref = gw.batch_id()
    lines = [Message("BATCH", (f"+{ref}", "draft/chathistory-targets"), gw.server_name)]
    for name, at in found:
        if name.startswith("#") and conn.shows(name) is None:
            continue
        lines.append(
            Message(
                "CHATHISTORY",
                ("TARGETS", name, format_ts(at)),
                gw.server_name,
                {"batch": ref},
            )
        )
    lines.append(Message("BATCH", (f"-{ref}",), gw.server_name))
    conn.reply(*lines)


COMMANDS: dict[str, Spec] = {"CHATHISTORY": Spec(chathistory, True, REQUEST)}
