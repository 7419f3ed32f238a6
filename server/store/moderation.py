"""The reads and writes of moderation (issue 11):
operators and locked accounts, room owners, moderators, topics, private
rooms and invitations, bans and mutes, edited and deleted messages, and the
audit log (moderation_actions).

Like queries.py and writes.py these are functions of an open Session that
return records, never ORM objects. The writes run on the writer thread inside
the caller's op (server/moderation.py), so a permission check and the change
it allows happen in one transaction. Visibility (what a ban or a deletion
hides) stays in queries._visible_to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from parley_chat.protocol import fold
from parley_chat.protocol.vocab import MessageKind, Role

from .errors import StoreConflict
from .models import (
    REASON_CHARS,
    Message,
    MessageVersion,
    ModerationAction,
    Room,
    RoomInvite,
    RoomMember,
    RoomModerator,
    RoomSanction,
    User,
)
from .queries import MAX_ID, get_message
from .records import StoredMessage
from .vocab import SanctionKind
from .writes import revoke_tokens

#: Rank of each role: an actor may act on a target of a lower rank only.
MEMBER, MODERATOR, OWNER, OPERATOR = 0, 1, 2, 3
RANK_NAMES: dict[int, str] = {
    MEMBER: "member",
    MODERATOR: Role.MODERATOR,
    OWNER: Role.OWNER,
    OPERATOR: Role.OPERATOR,
}


class Refused(StoreConflict):
    """A moderation request refused: `.code` is the protocol error code; nothing changed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """A room's moderation settings and roles, names resolved."""

    id: int
    name: str
    topic: str | None
    private: bool
    owner: str | None
    moderators: tuple[str, ...]
    operators: tuple[str, ...]  # server operators among the members


@dataclass(frozen=True, slots=True)
class Account:
    """A live account as moderation sees it."""

    id: int
    nick: str
    operator: bool
    locked: bool
    lock_reason: str | None
    locked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the audit log, names resolved."""

    id: int
    created_at: datetime
    actor: str | None
    action: str
    room: str | None
    target: str | None
    message_id: int | None
    reason: str | None
    until: datetime | None
    detail: str | None


# --- reads -----------------------------------------------------------------------


def account(s: Session, nick: str) -> Account | None:
    """The live account named *nick* (case-insensitive), or None."""
    u = s.scalar(select(User).where(User.nick_key == fold(nick)))
    return _account(u) if u is not None else None


def operators_and_locked(s: Session) -> list[Account]:
    """The live accounts that are server operators or locked, by nick."""
    users = s.scalars(
        select(User)
        .where(User.deleted_at.is_(None), (User.operator.is_(True)) | (User.locked_at.is_not(None)))
        .order_by(User.nick_key)
    )
    return [_account(u) for u in users]


# Read at every login (the lock check): prebuilt, and Core rather than an ORM
# entity load, which cost more than the query.
_ACCOUNT_BY_ID = select(User.id, User.nick, User.operator, User.locked_at, User.lock_reason).where(
    User.id == bindparam("id"), User.deleted_at.is_(None)
)


def account_by_id(s: Session, user_id: int) -> Account | None:
    """The live account with this id, or None (deleted accounts too)."""
    row = s.connection().execute(_ACCOUNT_BY_ID, {"id": user_id}).first()
    return None if row is None else _account(row)


def _account(u: User | Row[Any]) -> Account:
    # A User, or a row of _ACCOUNT_BY_ID's columns (the same names).
    return Account(
        u.id, u.nick, bool(u.operator), u.locked_at is not None, u.lock_reason, u.locked_at
    )


def room_by_name(s: Session, name: str) -> Room | None:
    """The room named *name* (case-insensitive), or None (ORM: for this module's ops)."""
    return s.scalar(select(Room).where(Room.name_key == fold(name)))


def room_settings(s: Session, room: Room | str) -> RoomSettings | None:
    """A room's topic, privacy and roles (by room or by name), or None if there is no such room."""
    s.flush()  # rooms_settings reads with Core: changes made through the ORM first
    found = rooms_settings(s, [room if isinstance(room, str) else room.name])
    return found[0] if found else None


# rooms_settings()'s statements, built once: it runs at every login, and
# building and compiling a select cost more than running it (the compiled
# form is cached under the statement's key, which a prebuilt statement
# computes once).
_OWNER = aliased(User)
_ROOMS_BY_KEY = (
    select(Room.id, Room.name, Room.name_key, Room.topic, Room.private, _OWNER.nick)
    .outerjoin(_OWNER, _OWNER.id == Room.owner_id)
    .where(Room.name_key.in_(bindparam("keys", expanding=True)))
)
_MODERATORS_OF = (
    select(RoomModerator.room_id, User.nick)
    .join(User, User.id == RoomModerator.user_id)
    .where(RoomModerator.room_id.in_(bindparam("ids", expanding=True)), User.deleted_at.is_(None))
    .order_by(User.nick_key)
)
_OPERATORS = (
    select(User.id, User.nick)
    .where(User.operator.is_(True), User.deleted_at.is_(None))
    .order_by(User.nick_key)
)
_MEMBERSHIPS = select(RoomMember.room_id, RoomMember.user_id).where(
    RoomMember.user_id.in_(bindparam("users", expanding=True)),
    RoomMember.room_id.in_(bindparam("ids", expanding=True)),
)


def rooms_settings(s: Session, names: list[str]) -> list[RoomSettings]:
    """The settings of many rooms (those that exist, in the order given) in at
    most four queries, whatever their number: a login sends one `roominfo` per room.

    No query walks a room's members: the operators (a handful server-wide) are
    read first and only their memberships looked up, so a login to a room of a
    thousand costs what a login to a room of ten does. Core statements on the
    session's connection: the ORM's entity loading cost more than the SQL.
    """
    keys = [fold(n) for n in names]
    if not keys:
        return []
    db = s.connection()
    rows = db.execute(_ROOMS_BY_KEY, {"keys": keys}).all()
    rooms = {r.name_key: r for r in rows}
    ids = [r.id for r in rows]
    if not ids:
        return []
    mods: dict[int, list[str]] = {}
    for room_id, nick in db.execute(_MODERATORS_OF, {"ids": ids}):
        mods.setdefault(room_id, []).append(nick)
    ops: dict[int, list[str]] = {}
    operators = db.execute(_OPERATORS).all()
    if operators:
        nick_of = {uid: nick for uid, nick in operators}
        member_of: dict[int, set[int]] = {}
        for room_id, uid in db.execute(_MEMBERSHIPS, {"users": list(nick_of), "ids": ids}):
            member_of.setdefault(uid, set()).add(room_id)
        for uid, nick in operators:  # in nick order
            for room_id in member_of.get(uid, ()):
                ops.setdefault(room_id, []).append(nick)
    out = []
    for key in keys:
        r = rooms.get(key)
        if r is not None:
            out.append(
                RoomSettings(
                    r.id,
                    r.name,
                    r.topic,
                    bool(r.private),
                    r.nick,
                    tuple(mods.get(r.id, ())),
                    tuple(ops.get(r.id, ())),
                )
            )
    return out


def is_member(s: Session, user_id: int, room_id: int) -> bool:
    """Whether the user is a member of the room."""
    return s.get(RoomMember, (room_id, user_id)) is not None


def rank(s: Session, user: Account, room: Room | None) -> int:
    """The user's strongest role in *room* (server-wide when None), as a rank."""
    if user.operator:
        return OPERATOR
    if room is None:
        return MEMBER
    if room.owner_id == user.id:
        return OWNER
    if s.get(RoomModerator, (room.id, user.id)) is not None:
        return MODERATOR
    return MEMBER


def _in_force(now: datetime) -> Any:
    return and_(
        RoomSanction.lifted_at.is_(None),
        or_(RoomSanction.until.is_(None), RoomSanction.until > now),
    )


def sanction(
    s: Session, room_id: int, user_id: int, kind: SanctionKind, now: datetime
) -> RoomSanction | None:
    """The ban or mute of the user in the room in force at *now*, or None."""
    return s.scalar(
        select(RoomSanction)
        .where(
            RoomSanction.room_id == room_id,
            RoomSanction.user_id == user_id,
            RoomSanction.kind == kind,
            _in_force(now),
        )
        .order_by(RoomSanction.id.desc())
        .limit(1)
    )


def mutes_in_force(s: Session, now: datetime) -> list[tuple[str, int, datetime | None]]:
    """Every mute in force: (room name, user id, until or None). For the server's cache."""
    rows = s.execute(
        select(Room.name, RoomSanction.user_id, RoomSanction.until)
        .join(Room, Room.id == RoomSanction.room_id)
        .where(RoomSanction.kind == SanctionKind.MUTE, _in_force(now))
    ).all()
    return [(name, uid, until) for name, uid, until in rows]


def hidden_rooms(s: Session, user_id: int) -> set[str]:
    """fold()ed names of the private rooms the user is not a member of (they do not see them)."""
    mine = select(RoomMember.room_id).where(RoomMember.user_id == user_id)
    return {
        fold(n)
        for n in s.scalars(select(Room.name).where(Room.private.is_(True), Room.id.not_in(mine)))
    }


def may_see_room(s: Session, user_id: int, room: Room) -> bool:
    """Whether the user may know *room* exists: public, or private with them a member
    (or invited), or they are an operator."""
    if not room.private:
        return True
    if is_member(s, user_id, room.id) or s.get(RoomInvite, (room.id, user_id)) is not None:
        return True
    u = s.get(User, user_id)
    return bool(u is not None and u.operator)


def audit_log(
    s: Session, *, room: str | None = None, nick: str | None = None, limit: int = 100
) -> list[AuditRow]:
    """The latest audit rows, newest first; only *room*'s or those by or on *nick* if given."""
    actor, target = aliased(User, name="actor"), aliased(User, name="target")
    q = (
        select(
            ModerationAction.id,
            ModerationAction.created_at,
            actor.nick,
            ModerationAction.action,
            Room.name,
            target.nick,
            ModerationAction.message_id,
            ModerationAction.reason,
            ModerationAction.until,
            ModerationAction.detail,
        )
        .outerjoin(actor, actor.id == ModerationAction.actor_id)
        .outerjoin(target, target.id == ModerationAction.target_id)
        .outerjoin(Room, Room.id == ModerationAction.room_id)
    )
    if room is not None:
        q = q.where(Room.name_key == fold(room if room.startswith("#") else f"#{room}"))
    if nick is not None:
        q = q.where(or_(actor.nick_key == fold(nick), target.nick_key == fold(nick)))
    rows = s.execute(q.order_by(ModerationAction.id.desc()).limit(limit)).all()
    return [AuditRow(*row) for row in rows]


# --- writes (on the writer thread) -------------------------------------------------


def record(
    s: Session,
    *,
    now: datetime,
    action: str,
    actor_id: int | None,
    room_id: int | None = None,
    target_id: int | None = None,
    message_id: int | None = None,
    reason: str | None = None,
    until: datetime | None = None,
    detail: str | None = None,
) -> int:
    """Add one row to the audit log; returns its id."""
    row = ModerationAction(
        created_at=now,
        actor_id=actor_id,
        action=action,
        room_id=room_id,
        target_id=target_id,
        message_id=message_id,
        reason=reason[:REASON_CHARS] if reason else None,
        until=until,
        detail=detail,
    )
    s.add(row)
    s.flush()
    return row.id


def set_owner(s: Session, room_name: str, user_id: int) -> None:
    """Make *user_id* the owner of a room that has none (its creator, on first join)."""
    s.execute(
        update(Room)
        .where(Room.name_key == fold(room_name), Room.owner_id.is_(None))
        .values(owner_id=user_id)
    )


def set_topic(s: Session, room: Room, topic: str | None) -> None:
    """Replace a room's topic (None or "": no topic)."""
    room.topic = topic or None
    s.flush()


def set_private(s: Session, room: Room, private: bool) -> None:
    """Make a room private (invite-only) or public. The members stay (they are invited)."""
    room.private = private
    if private:
        # The present members keep their way back in.
        members = s.scalars(select(RoomMember.user_id).where(RoomMember.room_id == room.id)).all()
        for uid in members:
            if s.get(RoomInvite, (room.id, uid)) is None:
                s.add(RoomInvite(room_id=room.id, user_id=uid, invited_at=room.created_at))
    s.flush()


def invite(s: Session, room: Room, user_id: int, by_id: int | None, now: datetime) -> bool:
    """Invite a user to a room; False if already invited."""
    if s.get(RoomInvite, (room.id, user_id)) is not None:
        return False
    s.add(RoomInvite(room_id=room.id, user_id=user_id, invited_by_id=by_id, invited_at=now))
    s.flush()
    return True


def is_invited(s: Session, room_id: int, user_id: int) -> bool:
    """Whether the user holds an invitation to the room."""
    return s.get(RoomInvite, (room_id, user_id)) is not None


def uninvite(s: Session, room_id: int, user_id: int) -> None:
    """Take an invitation back (kick, ban from a private room)."""
    s.execute(
        delete(RoomInvite).where(RoomInvite.room_id == room_id, RoomInvite.user_id == user_id)
    )


def set_moderator(
    s: Session, room: Room, user_id: int, on: bool, by_id: int | None, now: datetime
) -> bool:
    """Grant (on) or take back a room's moderator role; False if nothing changed."""
    row = s.get(RoomModerator, (room.id, user_id))
    if on and row is None:
        s.add(RoomModerator(room_id=room.id, user_id=user_id, granted_by_id=by_id, granted_at=now))
    elif not on and row is not None:
        s.delete(row)
    else:
        return False
    s.flush()
    return True


def add_sanction(
    s: Session,
    *,
    room_id: int,
    user_id: int,
    kind: SanctionKind,
    by_id: int | None,
    reason: str | None,
    now: datetime,
    until: datetime | None,
) -> None:
    """Ban or mute a user in a room (replacing one in force)."""
    lift_sanction(s, room_id=room_id, user_id=user_id, kind=kind, by_id=by_id, now=now)
    s.add(
        RoomSanction(
            room_id=room_id,
            user_id=user_id,
            kind=kind,
            by_id=by_id,
            reason=reason[:REASON_CHARS] if reason else None,
            created_at=now,
            until=until,
        )
    )
    s.flush()


def lift_sanction(
    s: Session, *, room_id: int, user_id: int, kind: SanctionKind, by_id: int | None, now: datetime
) -> int:
    """Lift the user's bans (or mutes) in force in a room; returns how many."""
    result = s.execute(
        update(RoomSanction)
        .where(
            RoomSanction.room_id == room_id,
            RoomSanction.user_id == user_id,
            RoomSanction.kind == kind,
            _in_force(now),
        )
        .values(lifted_at=now, lifted_by_id=by_id)
    )
    return int(result.rowcount or 0)


def message_row(s: Session, message_id: int) -> Message | None:
    """The message with this id, deleted or not (ORM: for this module's ops)."""
    return s.get(Message, message_id)


def delete_message(s: Session, m: Message, by_id: int | None, now: datetime) -> StoredMessage:
    """Mark a message deleted (the row stays, with who and when); returns it as it was."""
    stored = get_message(s, m.id)
    assert stored is not None
    m.deleted_at = now
    m.deleted_by_id = by_id
    s.flush()
    return stored


def edit_message(s: Session, m: Message, text: str, now: datetime) -> StoredMessage:
    """Replace a message's text, keeping the old one in message_versions; returns it, edited."""
    version = int(s.scalar(select(func.count()).where(MessageVersion.message_id == m.id)) or 0)
    s.add(MessageVersion(message_id=m.id, version=version + 1, body=m.body, replaced_at=now))
    m.body = text
    m.edited_at = now
    s.flush()
    stored = get_message(s, m.id)
    assert stored is not None
    return stored


def message_versions(s: Session, message_id: int) -> list[tuple[int, str, datetime]]:
    """Every earlier text of a message, oldest first: (version, text, replaced at)."""
    rows = s.execute(
        select(MessageVersion.version, MessageVersion.body, MessageVersion.replaced_at)
        .where(MessageVersion.message_id == message_id)
        .order_by(MessageVersion.version)
    ).all()
    return [(v, b, t) for v, b, t in rows]


def set_locked(s: Session, nick: str, locked: bool, reason: str | None, now: datetime) -> Account:
    """Lock (revoking every resume token, so its connections end) or unlock an account."""
    u = s.scalar(select(User).where(User.nick_key == fold(nick)))
    if u is None:
        raise Refused("no-such-nick", f"no account named {nick}")
    if locked:
        u.locked_at = now
        u.lock_reason = reason[:REASON_CHARS] if reason else None
        revoke_tokens(s, u.id, now)
    else:
        u.locked_at = None
        u.lock_reason = None
    s.flush()
    return _account(u)


def set_operator(s: Session, nick: str, on: bool) -> Account:
    """Grant or take back the server operator role."""
    u = s.scalar(select(User).where(User.nick_key == fold(nick)))
    if u is None:
        raise Refused("no-such-nick", f"no account named {nick}")
    u.operator = on
    s.flush()
    return _account(u)


def changed_since(
    s: Session, user_id: int, upto: int, limit: int = 500
) -> tuple[list[tuple[int, str | None]], list[StoredMessage]]:
    """For a client coming back with messages up to *upto*: what was deleted or edited
    among them since the user's last session ended. Returns ([(id, room)] deleted,
    [message] edited), newest first, at most *limit* of each; only what the user could see."""
    from .models import ChatSession
    from .queries import _member_rooms, _visible_to, message_select, to_records

    since = s.scalar(
        select(func.max(ChatSession.ended_at)).where(
            ChatSession.user_id == user_id, ChatSession.ended_at.is_not(None)
        )
    )
    if since is None:
        return [], []
    upto = min(upto, MAX_ID)
    seen = or_(
        Message.room_id.in_(_member_rooms(user_id)),
        and_(
            Message.kind == MessageKind.PRIVATE,
            or_(Message.sender_id == user_id, Message.recipient_id == user_id),
        ),
    )
    # The candidates come from the partial indexes on deleted_at and edited_at
    # (migration 0006), then the visibility rule filters them: written as one
    # WHERE, the rule's OR made SQLite walk every visible message up to *upto*.
    deleted_here = select(Message.id).where(Message.deleted_at >= since, Message.id <= upto)
    edited_here = select(Message.id).where(Message.edited_at >= since, Message.id <= upto)
    deleted = s.execute(
        select(Message.id, Room.name)
        .outerjoin(Room, Room.id == Message.room_id)
        .where(Message.id.in_(deleted_here), seen)
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    edited = to_records(
        s.execute(
            message_select()
            .where(Message.id.in_(edited_here), _visible_to(user_id))
            .order_by(Message.id.desc())
            .limit(limit)
        ).all()
    )
    return [(mid, room) for mid, room in deleted], edited
