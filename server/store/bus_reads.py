"""The reads a node makes when the bus tells it of a change on another node.

A bus event carries only ids and routing (server/bus.py); these functions read
what it is about. Each takes an open Session (Store.read()) and returns plain
records, never ORM objects. They check no visibility: the hub routes what they
return (a private message reaches only its two parties; a room's messages only
its members).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from . import moderation as mstore
from . import queries
from .models import Message, ModerationAction, Room, RoomMember, User
from .records import StoredMessage
from .vocab import SanctionKind

_Actor = aliased(User, name="actor")
_Target = aliased(User, name="target")


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A committed message as another node fans it out."""

    message: StoredMessage
    sender_id: int | None
    recipient_id: int | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderation action, names resolved (what a notice about it needs)."""

    id: int
    action: str
    actor: str | None
    target_id: int | None
    target: str | None
    room: str | None
    reason: str | None
    until: datetime | None
    detail: str | None
    created_at: datetime


def max_message_id(s: Session) -> int:
    """The largest message id committed (0 for none)."""
    return int(s.scalar(select(func.max(Message.id))) or 0)


def messages_between(s: Session, after: int, upto: int) -> list[BusMessage]:
    """The messages with ids in (after, upto], by id."""
    q = (
        queries.message_select()
        .add_columns(Message.sender_id, Message.recipient_id, Message.deleted_at)
        .where(Message.id > after, Message.id <= upto)
        .order_by(Message.id)
    )
    out = []
    for row in s.execute(q).all():
        *fields, sender_id, recipient_id, deleted_at = row
        out.append(
            BusMessage(StoredMessage(*fields), sender_id, recipient_id, deleted_at is not None)
        )
    return out


def message_state(s: Session, message_id: int) -> tuple[BusMessage, str | None] | None:
    """A message after an edit or a deletion, with who deleted it (nick), or None."""
    q = (
        queries.message_select()
        .add_columns(
            Message.sender_id, Message.recipient_id, Message.deleted_at, Message.deleted_by_id
        )
        .where(Message.id == message_id)
    )
    row = s.execute(q).first()
    if row is None:
        return None
    *fields, sender_id, recipient_id, deleted_at, deleted_by = row
    by = s.scalar(select(User.nick).where(User.id == deleted_by)) if deleted_by else None
    return BusMessage(StoredMessage(*fields), sender_id, recipient_id, deleted_at is not None), by


def online_user(s: Session, user_id: int) -> tuple[str, list[str]] | None:
    """(nick, rooms) of a live account, or None."""
    nick = s.scalar(select(User.nick).where(User.id == user_id, User.deleted_at.is_(None)))
    if nick is None:
        return None
    return nick, queries.rooms_of(s, user_id)


def online_users(s: Session, user_ids: list[int]) -> dict[int, tuple[str, list[str]]]:
    """online_user() of many users in two queries (a node announcing its users)."""
    if not user_ids:
        return {}
    ids = sorted(set(user_ids))
    out: dict[int, tuple[str, list[str]]] = {
        uid: (nick, [])
        for uid, nick in s.execute(
            select(User.id, User.nick).where(User.id.in_(ids), User.deleted_at.is_(None))
        ).all()
    }
    rows = s.execute(
        select(RoomMember.user_id, Room.name)
        .join(Room, Room.id == RoomMember.room_id)
        .where(RoomMember.user_id.in_(ids))
        .order_by(RoomMember.user_id, Room.name_key)
    ).all()
    for uid, name in rows:
        if uid in out:
            out[uid][1].append(name)
    return out


def mute_in_force(
    s: Session, room: str, user_id: int, now: datetime
) -> tuple[bool, datetime | None]:
    """(muted, until) of the user in *room* now."""
    r = mstore.room_by_name(s, room)
    if r is None:
        return False, None
    row = mstore.sanction(s, r.id, user_id, SanctionKind.MUTE, now)
    return (row is not None), (row.until if row is not None else None)


def audit_entry(s: Session, audit_id: int) -> AuditEntry | None:
    """One row of the audit log, names resolved, or None."""
    row = s.execute(
        select(
            ModerationAction.id,
            ModerationAction.action,
            _Actor.nick,
            ModerationAction.target_id,
            _Target.nick,
            Room.name,
            ModerationAction.reason,
            ModerationAction.until,
            ModerationAction.detail,
            ModerationAction.created_at,
        )
        .outerjoin(_Actor, _Actor.id == ModerationAction.actor_id)
        .outerjoin(_Target, _Target.id == ModerationAction.target_id)
        .outerjoin(Room, Room.id == ModerationAction.room_id)
        .where(ModerationAction.id == audit_id)
    ).first()
    return AuditEntry(*row) if row is not None else None
