"""Read queries for the IRC gateway's CHATHISTORY (server/irc/history.py).

Every query goes through the one visibility rule (queries._visible_to): a room's
messages to its members, a private message to its two parties only. Join and
leave notices (kind system) are left out, as in a replay. Bounds are exclusive;
a bound is a message id or a time (naive UTC), never both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from parley_chat.protocol import fold

from .models import Message, Room, User
from .queries import _between, _visible_to, message_select, to_records
from .records import StoredMessage

#: IRC's server-time has milliseconds; the store has microseconds. A lower
#: bound of time t excludes every message shown as t: it starts 1 ms later.
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a selection: a message id or a time (exclusive)."""

    id: int | None = None
    at: datetime | None = None


def _conversation(s: Session, user_id: int, target: str) -> Select[Any] | None:
    q = message_select().where(_visible_to(user_id), Message.kind != "system")
    if target.startswith("#"):
        return q.where(Room.name_key == fold(target))
    other = s.scalar(select(User.id).where(User.nick_key == fold(target)))
    if other is None:
        return None
    return q.where(_between(user_id, other))


def _after(q: Select[Any], b: Bound) -> Select[Any]:
    if b.id is not None:
        return q.where(Message.id > b.id)
    assert b.at is not None
    return q.where(Message.created_at >= b.at + _MS)


def _before(q: Select[Any], b: Bound) -> Select[Any]:
    if b.id is not None:
        return q.where(Message.id < b.id)
    assert b.at is not None
    return q.where(Message.created_at < b.at)


def select_messages(
    s: Session,
    user_id: int,
    target: str,
    *,
    after: Bound | None = None,
    before: Bound | None = None,
    limit: int,
    newest: bool,
) -> list[StoredMessage] | None:
    """Up to *limit* messages of *target* (a room or a nick) between the bounds,
    oldest first: the newest ones if *newest*, else the oldest. None: no such nick."""
    q = _conversation(s, user_id, target)
    if q is None:
        return None
    if after is not None:
        q = _after(q, after)
    if before is not None:
        q = _before(q, before)
    order = Message.id.desc() if newest else Message.id
    rows = s.execute(q.order_by(order).limit(limit)).all()
    records = to_records(rows)
    return records[::-1] if newest else records


def around(
    s: Session, user_id: int, target: str, center: Bound, limit: int
) -> list[StoredMessage] | None:
    """About *limit* messages centred on *center* (the message itself included), oldest first."""
    q = _conversation(s, user_id, target)
    if q is None:
        return None
    if center.id is not None:
        older_q, newer_q = q.where(Message.id < center.id), q.where(Message.id >= center.id)
    else:
        assert center.at is not None
        older_q = q.where(Message.created_at < center.at)
        newer_q = q.where(Message.created_at >= center.at)
    half = max(limit // 2, 1) if limit > 1 else 0
    older = to_records(s.execute(older_q.order_by(Message.id.desc()).limit(half)).all())[::-1]
    newer = to_records(s.execute(newer_q.order_by(Message.id).limit(limit - len(older))).all())
    return (older + newer)[:limit] if limit else []


def message_time(s: Session, user_id: int, message_id: int) -> datetime | None:
    """When a message the user may see was sent (None: unknown or not visible)."""
    return s.scalar(
        select(Message.created_at).where(Message.id == message_id, _visible_to(user_id))
    )


def targets(
    s: Session, user_id: int, start: datetime, end: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """The rooms and private peers whose latest message falls between *start* and
    *end* (either order, exclusive), each with that time, oldest first. A target
    with a newer message is left out (the specification: its latest counts)."""
    low, high = min(start, end), max(start, end)
    window = and_(_visible_to(user_id), Message.kind != "system")
    rooms = (
        select(Room.name, func.max(Message.created_at))
        .join(Room, Room.id == Message.room_id)
        .where(window)
        .group_by(Room.name)
    )
    peer = func.coalesce(
        func.nullif(Message.sender_id, user_id), func.nullif(Message.recipient_id, user_id)
    )
    peers = (
        select(User.nick, func.max(Message.created_at))
        .select_from(Message)
        .join(User, User.id == peer)
        .where(window, Message.kind == "private", or_(Message.room_id.is_(None)))
        .group_by(User.nick)
    )
    found = [(name, at) for name, at in s.execute(rooms).all()]
    found += [(nick, at) for nick, at in s.execute(peers).all()]
    found = [(name, at) for name, at in found if low + _MS <= at < high]
    found.sort(key=lambda item: item[1])
    return found[:limit]
