"""The `moderate` handler and the rules of who may do what
(issue 11).

Rules this module keeps:
1. Permissions are ranks: member < room moderator < room owner < server
   operator. An action on a room needs a rank there (ACTION_RANK); an action
   on a person also needs the actor to outrank them, so a moderator cannot
   kick, ban or mute an owner or an operator, and nobody acts on themselves.
2. The check and the change run in one op on the store's writer thread, in
   one transaction: a refusal (Refused) changes nothing, and no role can
   change between the check and the write. Everything the hub does happens
   in the op's after-commit callback, so nothing is announced that is not
   stored, and the effects reach every connection of the users concerned.
3. Every action that changes something writes one row of the audit log
   (moderation_actions).
4. Mutes are checked on the I/O loop (a room `send` never waits for the
   database), against MuteCache: loaded once at the first login, then kept
   in step by mute and unmute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.orm import Session

from parley_chat.protocol import DEFAULT_ROOM, Error, ErrorCode, encode, fold, format_ts
from parley_chat.protocol.limits import MAX_MODERATED_CHARS
from parley_chat.protocol.moderation import (
    Deleted,
    Edited,
    Moderate,
    Moderated,
    Notice,
    RoomInfo,
)
from parley_chat.protocol.vocab import Action, MessageKind, NoticeKind

from .store import moderation as mstore
from .store import writes
from .store.models import REASON_CHARS, Message, Room
from .store.moderation import MODERATOR, OPERATOR, OWNER, RANK_NAMES, Account, Refused
from .store.records import StoredMessage
from .store.vocab import SanctionKind

if TYPE_CHECKING:
    from .commands import Client, Commands


def roominfo_frame(st: mstore.RoomSettings, tag: str | None = None) -> RoomInfo:
    """The `roominfo` frame of a room's settings."""
    return RoomInfo(
        room=st.name,
        private=st.private,
        topic=st.topic,
        owner=st.owner,
        moderators=list(st.moderators),
        operators=list(st.operators),
        tag=tag,
    )


class MuteCache:
    """Who is muted where, for the send path on the I/O loop (rule 4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._mutes: dict[tuple[str, int], datetime | None] = {}

    def load_once(self, s: Session, now: datetime) -> None:
        """Fill the cache from the database, the first time only."""
        if self._loaded:
            return
        rows = mstore.mutes_in_force(s, now)
        with self._lock:
            if not self._loaded:
                for room, uid, until in rows:
                    self._mutes[(fold(room), uid)] = until
                self._loaded = True

    def set(self, room: str, user_id: int, until: datetime | None, on: bool) -> None:
        """Record a mute (until None: no end) or its end."""
        with self._lock:
            if on:
                self._mutes[(fold(room), user_id)] = until
            else:
                self._mutes.pop((fold(room), user_id), None)

    def refusal(self, user_id: int, room: str, now: datetime) -> str | None:
        """Why the user may not post in *room* now, or None."""
        key = (fold(room), user_id)
        with self._lock:
            if key not in self._mutes:
                return None
            until = self._mutes[key]
            if until is not None and until <= now:
                del self._mutes[key]
                return None
        end = f" until {format_ts(until)}" if until is not None else ""
        return f"you are muted in {room}{end}; your message was not sent"


@dataclass
class Outcome:
    """What a committed moderation op asks the hub to do (all optional)."""

    reply: str
    messages: list[StoredMessage] = field(default_factory=list)
    left: list[tuple[int, str, str]] = field(default_factory=list)  # (user id, nick, room)
    rooms: list[mstore.RoomSettings] = field(default_factory=list)  # roominfo to members
    notices: list[tuple[int, Notice]] = field(default_factory=list)  # to a user's connections
    to_room: list[tuple[str, bytes]] = field(default_factory=list)
    to_users: list[tuple[int, bytes]] = field(default_factory=list)
    disconnect: list[tuple[int, str]] = field(default_factory=list)  # (user id, why)
    mute: tuple[str, int, datetime | None, bool] | None = None
    broadcast: Notice | None = None
    #: The action's audit row: other nodes read it to tell their connections.
    audit_id: int | None = None


@dataclass
class _Ctx:
    s: Session
    uid: int
    nick: str
    f: Moderate
    now: datetime
    max_text: int
    _actor: Account | None = None
    audit_id: int | None = None

    @property
    def actor(self) -> Account:
        if self._actor is None:
            self._actor = mstore.account_by_id(self.s, self.uid)
            if self._actor is None:
                raise Refused(ErrorCode.NOT_PERMITTED, "your account no longer exists")
        return self._actor

    def room(self) -> Room:
        assert self.f.room is not None
        room = mstore.room_by_name(self.s, self.f.room)
        # A private room the actor may not know of is answered as if it did not exist.
        if room is None or not mstore.may_see_room(self.s, self.uid, room):
            raise Refused(ErrorCode.NO_SUCH_ROOM, f"there is no room {self.f.room}")
        return room

    def target(self) -> Account:
        assert self.f.nick is not None
        target = mstore.account(self.s, self.f.nick)
        if target is None:
            raise Refused(ErrorCode.NO_SUCH_NICK, f"no user named {self.f.nick}")
        return target

    def require(self, needed: int, room: Room | None) -> int:
        have = mstore.rank(self.s, self.actor, room)
        if have < needed:
            where = f" of {room.name}" if room is not None else ""
            who = {
                MODERATOR: f"a moderator{where} (or its owner, or a server operator)",
                OWNER: f"the owner{where} (or a server operator)",
                OPERATOR: "a server operator",
            }[needed]
            raise Refused(
                ErrorCode.NOT_PERMITTED, f"only {who} can {self.f.action}; nothing was changed"
            )
        return have

    def outrank(self, target: Account, room: Room | None) -> None:
        if target.id == self.uid:
            raise Refused(ErrorCode.NOT_PERMITTED, f"you cannot {self.f.action} yourself")
        mine = mstore.rank(self.s, self.actor, room)
        theirs = mstore.rank(self.s, target, room)
        if theirs >= mine:
            where = " of the server" if theirs == OPERATOR or room is None else f" of {room.name}"
            raise Refused(
                ErrorCode.NOT_PERMITTED,
                f"{target.nick} is {_article(RANK_NAMES[theirs])}{where}; "
                f"you cannot {self.f.action} them; nothing was changed",
            )

    def notice_text(self, text: str) -> Notice:
        return Notice(text=text, ts=format_ts(self.now), kind=self.f.action, from_=self.nick)

    def system(self, room: Room, body: str) -> StoredMessage:
        msg, _ = writes.add_message(
            self.s, kind=MessageKind.SYSTEM, body=body, now=self.now, room=room.name
        )
        return msg

    def audit(self, **kw: Any) -> None:
        self.audit_id = mstore.record(
            self.s,
            now=self.now,
            action=self.f.action,
            actor_id=self.uid,
            reason=self.f.reason,
            **kw,
        )

    def until(self) -> datetime | None:
        return self.now + timedelta(minutes=self.f.minutes) if self.f.minutes else None


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _why(f: Moderate) -> str:
    return f": {f.reason}" if f.reason else ""


def _for(until: datetime | None) -> str:
    return f" until {format_ts(until)}" if until is not None else ""


# --- the actions --------------------------------------------------------------------


def _topic(c: _Ctx) -> Outcome:
    room = c.room()
    c.require(MODERATOR, room)
    topic = (c.f.text or "").strip() or None
    mstore.set_topic(c.s, room, topic)
    body = (
        f"{c.nick} set the topic of {room.name}: {topic}"
        if topic
        else f"{c.nick} cleared the topic of {room.name}"
    )
    c.audit(room_id=room.id, detail=topic)
    st = mstore.room_settings(c.s, room)
    assert st is not None
    return Outcome(reply=body, messages=[c.system(room, body)], rooms=[st])


def _privacy(c: _Ctx) -> Outcome:
    room = c.room()
    if fold(room.name) == fold(DEFAULT_ROOM) and c.f.action is Action.PRIVATE:
        raise Refused(ErrorCode.NOT_PERMITTED, f"{DEFAULT_ROOM} is everyone's; it stays public")
    c.require(OWNER, room)
    private = c.f.action is Action.PRIVATE
    mstore.set_private(c.s, room, private)
    body = (
        f"{c.nick} made {room.name} private: only invited users can join it"
        if private
        else f"{c.nick} made {room.name} public: anyone can join it"
    )
    c.audit(room_id=room.id)
    st = mstore.room_settings(c.s, room)
    assert st is not None
    return Outcome(reply=body, messages=[c.system(room, body)], rooms=[st])


def _invite(c: _Ctx) -> Outcome:
    room = c.room()
    c.require(MODERATOR, room)
    target = c.target()
    if mstore.sanction(c.s, room.id, target.id, SanctionKind.BAN, c.now) is not None:
        raise Refused(
            ErrorCode.BANNED, f"{target.nick} is banned from {room.name}; unban them first"
        )
    if mstore.is_member(c.s, target.id, room.id):
        raise Refused(ErrorCode.BAD_FRAME, f"{target.nick} is already in {room.name}")
    mstore.invite(c.s, room, target.id, c.uid, c.now)
    c.audit(room_id=room.id, target_id=target.id)
    notice = c.notice_text(f"{c.nick} invited you to {room.name} (/join {room.name})")
    notice = Notice(
        text=notice.text, ts=notice.ts, kind=NoticeKind.INVITE, from_=c.nick, room=room.name
    )
    return Outcome(reply=f"invited {target.nick} to {room.name}", notices=[(target.id, notice)])


def _put_out(c: _Ctx, room: Room, target: Account, body: str) -> Outcome:
    """The member leaves the room (kick, ban), told why on all their connections."""
    out = Outcome(reply=body)
    if room.private:
        mstore.uninvite(c.s, room.id, target.id)
    if writes.leave_room(c.s, target.id, room.name):
        out.messages.append(c.system(room, body))
        out.left.append((target.id, target.nick, room.name))
    notice = Notice(text=body, ts=format_ts(c.now), kind=c.f.action, from_=c.nick, room=room.name)
    out.notices.append((target.id, notice))
    return out


def _kick(c: _Ctx) -> Outcome:
    room = c.room()
    c.require(MODERATOR, room)
    target = c.target()
    c.outrank(target, room)
    if fold(room.name) == fold(DEFAULT_ROOM):
        raise Refused(ErrorCode.CANNOT_LEAVE, f"everyone stays in {DEFAULT_ROOM}; mute instead")
    if not mstore.is_member(c.s, target.id, room.id):
        raise Refused(ErrorCode.NOT_IN_ROOM, f"{target.nick} is not in {room.name}")
    c.audit(room_id=room.id, target_id=target.id)
    return _put_out(
        c, room, target, f"{target.nick} was kicked from {room.name} by {c.nick}{_why(c.f)}"
    )


def _sanction(c: _Ctx, kind: SanctionKind) -> tuple[Room, Account, datetime | None]:
    """The checks and the stored row a ban or a mute share: (room, target, until)."""
    room = c.room()
    c.require(MODERATOR, room)
    target = c.target()
    c.outrank(target, room)
    if kind is SanctionKind.BAN and fold(room.name) == fold(DEFAULT_ROOM):
        raise Refused(ErrorCode.CANNOT_LEAVE, f"everyone stays in {DEFAULT_ROOM}; mute instead")
    until = c.until()
    mstore.add_sanction(
        c.s,
        room_id=room.id,
        user_id=target.id,
        kind=kind,
        by_id=c.uid,
        reason=c.f.reason,
        now=c.now,
        until=until,
    )
    c.audit(room_id=room.id, target_id=target.id, until=until)
    return room, target, until


def _ban(c: _Ctx) -> Outcome:
    room, target, until = _sanction(c, SanctionKind.BAN)
    body = f"{target.nick} was banned from {room.name} by {c.nick}{_for(until)}{_why(c.f)}"
    return _put_out(c, room, target, body)


def _unsanction(c: _Ctx, kind: SanctionKind) -> Outcome:
    room = c.room()
    c.require(MODERATOR, room)
    target = c.target()
    if not mstore.lift_sanction(
        c.s, room_id=room.id, user_id=target.id, kind=kind, by_id=c.uid, now=c.now
    ):
        what = "banned from" if kind is SanctionKind.BAN else "muted in"
        raise Refused(ErrorCode.BAD_FRAME, f"{target.nick} is not {what} {room.name}")
    c.audit(room_id=room.id, target_id=target.id)
    done = "unbanned from" if kind is SanctionKind.BAN else "unmuted in"
    body = f"{target.nick} was {done} {room.name} by {c.nick}"
    out = Outcome(reply=body, messages=[c.system(room, body)])
    out.notices.append(
        (target.id, Notice(text=body, ts=format_ts(c.now), kind=c.f.action, room=room.name))
    )
    if kind is SanctionKind.MUTE:
        out.mute = (room.name, target.id, None, False)
    return out


def _unban(c: _Ctx) -> Outcome:
    return _unsanction(c, SanctionKind.BAN)


def _unmute(c: _Ctx) -> Outcome:
    return _unsanction(c, SanctionKind.MUTE)


def _mute(c: _Ctx) -> Outcome:
    room, target, until = _sanction(c, SanctionKind.MUTE)
    body = f"{target.nick} was muted in {room.name} by {c.nick}{_for(until)}{_why(c.f)}"
    out = Outcome(
        reply=body, messages=[c.system(room, body)], mute=(room.name, target.id, until, True)
    )
    out.notices.append(
        (
            target.id,
            Notice(
                text=body, ts=format_ts(c.now), kind=NoticeKind.MUTE, from_=c.nick, room=room.name
            ),
        )
    )
    return out


def _moderator(c: _Ctx) -> Outcome:
    room = c.room()
    c.require(OWNER, room)
    target = c.target()
    on = c.f.action is Action.OP
    if not mstore.set_moderator(c.s, room, target.id, on, c.uid, c.now):
        state = "already" if on else "not"
        raise Refused(ErrorCode.BAD_FRAME, f"{target.nick} is {state} a moderator of {room.name}")
    c.audit(room_id=room.id, target_id=target.id)
    body = (
        f"{c.nick} made {target.nick} a moderator of {room.name}"
        if on
        else f"{c.nick} took the moderator role in {room.name} from {target.nick}"
    )
    st = mstore.room_settings(c.s, room)
    assert st is not None
    return Outcome(reply=body, messages=[c.system(room, body)], rooms=[st])


def _message(c: _Ctx) -> tuple[Message, Room | None]:
    """The message a delete or edit names, if the actor can see it; else no-such-message."""
    assert c.f.id is not None
    m = mstore.message_row(c.s, c.f.id)
    missing = Refused(ErrorCode.NO_SUCH_MESSAGE, f"there is no message {c.f.id} you can see")
    if m is None or m.deleted_at is not None:
        raise missing
    room = c.s.get(Room, m.room_id) if m.room_id is not None else None
    if room is not None:
        if not (mstore.is_member(c.s, c.uid, room.id) or c.actor.operator):
            raise missing
    elif c.uid not in (m.sender_id, m.recipient_id):
        raise missing
    return m, room


def _routes(out: Outcome, m: Message, room: Room | None, data: bytes) -> None:
    if room is not None:
        out.to_room.append((room.name, data))
    else:
        for uid in {m.sender_id, m.recipient_id}:
            if uid is not None:
                out.to_users.append((uid, data))


def _delete(c: _Ctx) -> Outcome:
    m, room = _message(c)
    if m.sender_id != c.uid:
        if room is None:
            raise Refused(ErrorCode.NOT_PERMITTED, "you can only delete your own private messages")
        c.require(MODERATOR, room)
        author = mstore.account_by_id(c.s, m.sender_id) if m.sender_id is not None else None
        if author is not None:
            c.outrank(author, room)
    mstore.delete_message(c.s, m, c.uid, c.now)
    c.audit(room_id=m.room_id, target_id=m.sender_id, message_id=m.id)
    out = Outcome(reply=f"message {m.id} deleted")
    _routes(out, m, room, encode(Deleted(id=m.id, room=room.name if room else None, by=c.nick)))
    return out


def _edit(c: _Ctx) -> Outcome:
    m, room = _message(c)
    if m.sender_id != c.uid or m.kind == MessageKind.SYSTEM:
        raise Refused(ErrorCode.NOT_PERMITTED, "you can only edit your own messages")
    assert c.f.text is not None
    if len(c.f.text) > c.max_text:
        raise Refused(ErrorCode.TEXT_TOO_LONG, f"message text is over {c.max_text} characters")
    if (
        room is not None
        and mstore.sanction(c.s, room.id, c.uid, SanctionKind.MUTE, c.now) is not None
    ):
        raise Refused(ErrorCode.MUTED, f"you are muted in {room.name}; the message was not edited")
    if c.f.text == m.body:
        return Outcome(reply=f"message {m.id} unchanged")
    stored = mstore.edit_message(c.s, m, c.f.text, c.now)
    c.audit(room_id=m.room_id, target_id=m.sender_id, message_id=m.id)
    assert stored.edited_at is not None
    frame = Edited(id=m.id, text=stored.body, edited=format_ts(stored.edited_at), room=stored.room)
    out = Outcome(reply=f"message {m.id} edited")
    _routes(out, m, room, encode(frame))
    return out


def _disconnect(c: _Ctx) -> Outcome:
    c.require(OPERATOR, None)
    target = c.target()
    c.outrank(target, None)
    c.audit(target_id=target.id)
    why = f"disconnected by {c.nick}{_why(c.f)}"
    return Outcome(reply=f"{target.nick} {why}", disconnect=[(target.id, why)])


def _lock(c: _Ctx) -> Outcome:
    c.require(OPERATOR, None)
    target = c.target()
    on = c.f.action is Action.LOCK
    if on:
        c.outrank(target, None)
    mstore.set_locked(c.s, target.nick, on, c.f.reason, c.now)
    c.audit(target_id=target.id)
    if not on:
        return Outcome(reply=f"{target.nick}'s account is unlocked")
    why = f"your account was locked by {c.nick}{_why(c.f)}"
    return Outcome(reply=f"{target.nick}'s account is locked", disconnect=[(target.id, why)])


def _announce(c: _Ctx) -> Outcome:
    c.require(OPERATOR, None)
    assert c.f.text is not None
    c.audit(detail=c.f.text)
    notice = Notice(text=c.f.text, ts=format_ts(c.now), kind=NoticeKind.ANNOUNCE, from_=c.nick)
    return Outcome(reply="announced to everyone online", broadcast=notice)


ACTIONS: dict[Action, Callable[[_Ctx], Outcome]] = {
    Action.TOPIC: _topic,
    Action.PRIVATE: _privacy,
    Action.PUBLIC: _privacy,
    Action.INVITE: _invite,
    Action.KICK: _kick,
    Action.BAN: _ban,
    Action.UNBAN: _unban,
    Action.MUTE: _mute,
    Action.UNMUTE: _unmute,
    Action.OP: _moderator,
    Action.DEOP: _moderator,
    Action.DELETE: _delete,
    Action.EDIT: _edit,
    Action.DISCONNECT: _disconnect,
    Action.LOCK: _lock,
    Action.UNLOCK: _lock,
    Action.ANNOUNCE: _announce,
}


# --- the handler ------------------------------------------------------------------


def moderate(cmds: Commands, conn: Client, f: Moderate) -> None:
    """moderate {action, ...}: check the actor's role, change, audit, tell who is concerned."""
    from .store import utcnow

    uid, nick = conn.user_id, conn.nick
    assert uid is not None and nick is not None
    now = utcnow()
    action = ACTIONS[f.action]

    def op(s: Session) -> Outcome:
        ctx = _Ctx(s, uid, nick, f, now, cmds.cfg.max_text_chars)
        out = action(ctx)
        out.audit_id = ctx.audit_id
        return out

    def done(result: Outcome | None, exc: BaseException | None) -> None:
        if isinstance(exc, Refused):
            conn.send_frame(Error(code=exc.code, message=exc.message, ref=f.ref))
            return
        if exc is not None:
            conn.send_frame(
                Error(
                    code=ErrorCode.STORE_FAILED,
                    message=f"could not {f.action}: {exc}",
                    ref=f.ref,
                )
            )
            return
        assert result is not None
        apply(cmds, conn, f, result)

    cmds.store.submit(op, done, what=f"moderate {f.action}")


def apply(cmds: Commands, conn: Client, f: Moderate, out: Outcome) -> None:
    """Carry a committed outcome out through the hub (on the writer thread, after COMMIT)."""
    hub = cmds.hub
    if out.mute is not None:
        room, user_id, until, on = out.mute
        cmds.mutes.set(room, user_id, until, on)

    def rest() -> None:
        # After the messages (with several nodes they may wait for their turn by
        # id: what tells of them waits with them).
        _tell(cmds, conn, f, out)

    with hub.batch():
        for i, msg in enumerate(out.messages):
            hub.deliver_message(msg, None, None, then=rest if i == len(out.messages) - 1 else None)
        if not out.messages:
            rest()
    if out.broadcast is not None:
        data = encode(out.broadcast)
        for peer in hub.all_connections():
            peer.deliver(data)
    for user_id, why in out.disconnect:
        error = Error(code=ErrorCode.DISCONNECTED, message=why)
        for peer in hub.connections_of(user_id):
            cast(Any, peer).close_after_flush(why[:REASON_CHARS], error)
    cmds.cluster.moderated(f, out)  # the other nodes' connections (server/bus_node.py)


def _tell(cmds: Commands, conn: Client, f: Moderate, out: Outcome) -> None:
    hub = cmds.hub
    with hub.batch():
        for st in out.rooms:
            hub.send_to_room(st.name, encode(roominfo_frame(st)))
        for room, data in out.to_room:
            hub.send_to_room(room, data)
        for user_id, data in out.to_users:
            hub.send_to_user(user_id, data)
        for user_id, notice in out.notices:
            hub.send_to_user(user_id, encode(notice))
        for user_id, nick, room in out.left:
            # After the notice of it, as a leave: the user's every connection
            # learns it left (the hub forgets the membership for all of them).
            hub.left(user_id, room)
            hub.publish_presence(room, left=nick, extra_user=user_id)
        hub.reply(
            conn,
            encode(Moderated(action=f.action, message=out.reply[:MAX_MODERATED_CHARS], ref=f.ref)),
        )


# --- hooks for commands.py (login, join, who, rooms, send) ----------------------------


def login_refusal(s: Session, user_id: int) -> str | None:
    """Why the account may not log in (locked), or None."""
    acct = mstore.account_by_id(s, user_id)
    if acct is None or not acct.locked:
        return None
    why = f": {acct.lock_reason}" if acct.lock_reason else ""
    return f"your account is locked by the server's operators{why}"


def before_join(s: Session, user_id: int, name: str, now: datetime) -> None:
    """Raise Refused if the user may not join *name* (banned; private and not invited)."""
    room = mstore.room_by_name(s, name)
    if room is None:
        return
    ban = mstore.sanction(s, room.id, user_id, SanctionKind.BAN, now)
    if ban is not None:
        why = f": {ban.reason}" if ban.reason else ""
        raise Refused(ErrorCode.BANNED, f"you are banned from {room.name}{_for(ban.until)}{why}")
    if room.private and not mstore.is_invited(s, room.id, user_id):
        acct = mstore.account_by_id(s, user_id)
        if acct is None or not acct.operator:
            raise Refused(
                ErrorCode.INVITE_ONLY,
                f"you cannot join {name}: it is invite-only (ask one of its moderators)",
            )


def after_join(s: Session, user_id: int, name: str, created: bool) -> mstore.RoomSettings | None:
    """The creator of a new room owns it; returns the room's settings for the joiner."""
    if created:
        mstore.set_owner(s, name, user_id)
    return mstore.room_settings(s, name)


def roominfo_bytes(s: Session, rooms: list[str], tag: str | None = None) -> bytes:
    """The `roominfo` frames of *rooms*, coalesced."""
    return b"".join(encode(roominfo_frame(st, tag)) for st in mstore.rooms_settings(s, rooms))


def may_see(s: Session, user_id: int, name: str) -> bool:
    """Whether the user may know room *name* exists (private rooms: members, invitees, operators)."""
    room = mstore.room_by_name(s, name)
    return room is None or mstore.may_see_room(s, user_id, room)


def hidden_rooms(s: Session, user_id: int) -> set[str]:
    """fold()ed names of the rooms the room list hides from the user."""
    acct = mstore.account_by_id(s, user_id)
    return set() if acct is not None and acct.operator else mstore.hidden_rooms(s, user_id)


def catch_up_bytes(s: Session, user_id: int, last_seen: int) -> bytes:
    """`deleted` and `edited` frames for a returning client: changes since the user's
    last session to messages it may hold (ids up to *last_seen*), so deletions and
    edits reach a client that was away too."""
    deleted, edited = mstore.changed_since(s, user_id, last_seen)
    out = [encode(Deleted(id=mid, room=room)) for mid, room in deleted]
    out += [
        encode(Edited(id=m.id, text=m.body, edited=format_ts(m.edited_at), room=m.room))
        for m in edited
        if m.edited_at is not None
    ]
    return b"".join(out)
