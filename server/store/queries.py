"""Every read the server makes. Each function takes an
open Session (from Store.read()) and returns records, never ORM objects.

Visibility lives here, in one place: a user sees the messages of the rooms
they are a member of and the private messages they sent or received. Every
path a chat user can reach (replay, history, search) goes through
_visible_to(), so a private message cannot leak through one of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    union,
)
from sqlalchemy.orm import Session, aliased

from parley_chat.protocol import UNREAD_CAP, fold
from parley_chat.protocol.vocab import ConversationKind, MessageKind

from .models import (
    ChatSession,
    Message,
    ReadMarker,
    ResumeToken,
    Room,
    RoomMember,
    RoomSanction,
    ServerSetting,
    User,
)
from .records import AccountRow, ConversationRecord, RoomInfo, StoredMessage, UserRecord
from .vocab import EndReason, SanctionKind

_Sender = aliased(User, name="sender")
_Recipient = aliased(User, name="recipient")

#: The FTS5 index over message bodies (made by the migrations; no ORM model).
_FTS = table("messages_fts", column("rowid"))

#: The trigram tokenizer cannot match anything shorter than three characters.
TRIGRAM = 3

#: The largest id SQLite can store (a signed 64-bit INTEGER; PostgreSQL's
#: columns are smaller, and a larger bound still compares fine). Python ints
#: beyond it cannot even be bound (OverflowError), so bounds are clamped here.
MAX_ID = 2**63 - 1


def user_record(u: User) -> UserRecord:
    """The record of an ORM user."""
    return UserRecord(
        id=u.id,
        nick=u.nick,
        password_hash=u.password_hash,
        created_at=u.created_at,
        deleted=u.deleted_at is not None,
    )


def message_select() -> Select[Any]:
    """SELECT of messages with room, sender and recipient names resolved."""
    return (
        select(
            Message.id,
            Message.created_at,
            Message.kind,
            Room.name,
            _Sender.nick,
            _Recipient.nick,
            Message.body,
            Message.client_msg_id,
            Message.edited_at,
            Message.envelope,
        )
        .outerjoin(Room, Room.id == Message.room_id)
        .outerjoin(_Sender, _Sender.id == Message.sender_id)
        .outerjoin(_Recipient, _Recipient.id == Message.recipient_id)
    )


def to_records(rows: Sequence[Any]) -> list[StoredMessage]:
    """Rows of message_select() as records."""
    # The kind column holds a MessageKind's string: made a member again here.
    return [StoredMessage(row[0], row[1], MessageKind(row[2]), *row[3:]) for row in rows]


def get_message(s: Session, message_id: int) -> StoredMessage | None:
    """One message by id (no visibility check: for the server's own use)."""
    rows = s.execute(message_select().where(Message.id == message_id)).all()
    return to_records(rows)[0] if rows else None


def user_by_id(s: Session, user_id: int) -> UserRecord | None:
    """The account with this id (deleted ones too: see UserRecord.deleted), or None."""
    if not 0 < user_id <= MAX_ID:
        return None
    u = s.get(User, user_id)
    return user_record(u) if u is not None else None


def token_exists(s: Session, token_hash: str) -> bool:
    """Whether a resume token with this hash is stored at all (valid or not)."""
    return s.scalar(select(ResumeToken.id).where(ResumeToken.token_hash == token_hash)) is not None


#: The hot reads (every login runs them) are built once with bound
#: parameters and run on the session's connection: the ORM's per-call work
#: (building the statement, its cache key, the unit of work) cost about six
#: times the query itself.
_USER_BY_NICK = select(
    User.id, User.nick, User.password_hash, User.created_at, User.deleted_at
).where(User.nick_key == bindparam("nick_key"))


def get_user(s: Session, nick: str) -> UserRecord | None:
    """The live account with this nick (case-insensitive), or None."""
    row = s.connection().execute(_USER_BY_NICK, {"nick_key": fold(nick)}).first()
    if row is None:
        return None
    return UserRecord(
        id=row.id,
        nick=row.nick,
        password_hash=row.password_hash,
        created_at=row.created_at,
        deleted=row.deleted_at is not None,
    )


def account_report(s: Session) -> list[AccountRow]:
    """Every account, deleted ones included, oldest first, with its last session's start."""
    last = (
        select(ChatSession.user_id, func.max(ChatSession.started_at).label("started"))
        .group_by(ChatSession.user_id)
        .subquery()
    )
    rows = s.execute(
        select(User.nick, User.created_at, User.deleted_at, last.c.started)
        .outerjoin(last, last.c.user_id == User.id)
        .order_by(User.id)
    ).all()
    return [AccountRow(nick, created, deleted, started) for nick, created, deleted, started in rows]


def messages_sent(s: Session, user_id: int) -> int:
    """How many stored messages *user_id* wrote (deleted ones included)."""
    return int(s.scalar(select(func.count(Message.id)).where(Message.sender_id == user_id)) or 0)


def user_by_token(s: Session, token_hash: str, now: datetime) -> tuple[UserRecord, int] | None:
    """The user a valid (unexpired, unrevoked) resume token belongs to, and the token's id."""
    row = s.execute(
        select(User, ResumeToken.id)
        .join(ResumeToken, ResumeToken.user_id == User.id)
        .where(
            ResumeToken.token_hash == token_hash,
            ResumeToken.revoked_at.is_(None),
            ResumeToken.expires_at > now,
            User.deleted_at.is_(None),
        )
    ).first()
    return (user_record(row[0]), row[1]) if row is not None else None


def revoked_sessions(s: Session, session_ids: Sequence[int]) -> set[int]:
    """Those of *session_ids* whose login token the operator revoked since
    (password reset, deleted account): their connections must end."""
    if not session_ids:
        return set()
    return set(
        s.scalars(
            select(ChatSession.id)
            .join(ResumeToken, ResumeToken.id == ChatSession.token_id)
            .where(ChatSession.id.in_(session_ids), ResumeToken.revoked_at.is_not(None))
        )
    )


def rooms_of(s: Session, user_id: int) -> list[str]:
    """The names of the rooms the user is a member of, sorted."""
    return list(s.connection().execute(_ROOMS_OF, {"user_id": user_id}).scalars())


# Read at every login: prebuilt, so its compiled form is found at once.
_ROOMS_OF = (
    select(Room.name)
    .join(RoomMember, RoomMember.room_id == Room.id)
    .where(RoomMember.user_id == bindparam("user_id"))
    .order_by(Room.name_key)
)


def list_rooms(s: Session) -> list[RoomInfo]:
    """Every room with its member count, by name."""
    rows = s.execute(
        select(Room.name, func.count(RoomMember.user_id))
        .outerjoin(RoomMember, RoomMember.room_id == Room.id)
        .group_by(Room.id)
        .order_by(Room.name_key)
    ).all()
    return [RoomInfo(name=name, members=n) for name, n in rows]


def room_exists(s: Session, name: str) -> str | None:
    """The canonical spelling of a room's name, or None if there is no such room."""
    return s.scalar(select(Room.name).where(Room.name_key == fold(name)))


def get_setting(s: Session, key: str) -> str | None:
    """A stored server setting, or None when unset."""
    return s.scalar(select(ServerSetting.value).where(ServerSetting.key == key))


def _member_rooms(user_id: int | ColumnElement[int]) -> Select[Any]:
    return select(RoomMember.room_id).where(RoomMember.user_id == user_id)


def _banned_rooms(user_id: int | ColumnElement[int]) -> Select[Any]:
    """The rooms the user is banned from now (a ban in force: not lifted, not run out)."""
    return select(RoomSanction.room_id).where(
        RoomSanction.user_id == user_id,
        RoomSanction.kind == SanctionKind.BAN,
        RoomSanction.lifted_at.is_(None),
        # The stored form and CURRENT_TIMESTAMP are both UTC "YYYY-MM-DD HH:MM:SS...".
        or_(RoomSanction.until.is_(None), RoomSanction.until > func.current_timestamp()),
    )


def _visible_to(user_id: int | ColumnElement[int]) -> ColumnElement[bool]:
    """The one rule: messages of the user's rooms, and the user's own private messages.

    Moderation narrows it: a deleted message is seen by nobody (the operator's
    SQL still has it, marked), and a room the user is banned from shows nothing
    (a ban also ends the membership; this holds even if a row says otherwise).
    Private rooms need no rule of their own: only members see a room's messages.
    _room_window and _private_window apply the same rule in the shape an index
    range needs (replay, a fresh login): a change here belongs there too.
    """
    return and_(
        Message.deleted_at.is_(None),
        or_(
            and_(
                Message.room_id.in_(_member_rooms(user_id)),
                Message.room_id.not_in(_banned_rooms(user_id)),
            ),
            and_(
                Message.kind == MessageKind.PRIVATE,
                or_(Message.sender_id == user_id, Message.recipient_id == user_id),
            ),
        ),
    )


def _before(q: Select[Any], before: int | None) -> Select[Any]:
    """*q* limited to ids below *before*; a bound beyond the largest possible id
    limits nothing (and binding it would raise OverflowError)."""
    if before is None or before > MAX_ID:
        return q
    return q.where(Message.id < max(before, 0))  # ids start at 1: below 0 is nothing


_UID = bindparam("uid", type_=Integer)


def _room_window(after: Any, count: Any) -> Select[Any]:
    """Ids in the rooms the user (bound as `uid`) is a member of and not banned
    from, above *after*, at most the *count* newest of each room; notices and
    deleted messages left out.

    The bound is per room, on the (room_id, id) index: a room's count-th newest
    such id is found once per membership row and starts that room's range. One
    OR over the whole visibility rule made SQLite collect every visible id above
    *after* and sort them: 350-600 ms for a user a weekend behind on a
    300,000-message database.
    """
    newer = aliased(Message)
    floor = (
        select(newer.id)
        .where(
            newer.room_id == RoomMember.room_id,
            newer.id > after,
            newer.kind != MessageKind.SYSTEM,
            newer.deleted_at.is_(None),
        )
        .order_by(newer.id.desc())
        .limit(1)
        .offset(count - 1)
        .correlate(RoomMember)
        .scalar_subquery()
    )
    return (
        select(Message.id)
        .join(RoomMember, RoomMember.room_id == Message.room_id)
        .where(
            RoomMember.user_id == _UID,
            RoomMember.room_id.not_in(_banned_rooms(_UID)),
            # One bound only (the floor is above *after* when there is one), so
            # the planner starts the index range at it instead of testing it
            # on every row above *after*.
            Message.id >= func.coalesce(floor, after + 1),
            Message.kind != MessageKind.SYSTEM,
            Message.deleted_at.is_(None),
        )
    )


def _private_window(after: Any, count: Any) -> Select[Any]:
    """Ids of the user's own private messages above *after*: the *count* newest
    they sent and the *count* newest sent to them, each on its own index (an OR
    of the two would collect them all first); deleted ones left out."""

    def newest(party: Any) -> Any:
        return (
            select(Message.id.label("id"))
            .where(
                party == _UID,
                Message.kind == MessageKind.PRIVATE,
                Message.id > after,
                Message.deleted_at.is_(None),
            )
            .order_by(Message.id.desc())
            .limit(count)
            .subquery()
        )

    # Each limited branch in a subquery: SQLite takes ORDER BY and LIMIT only
    # at the end of a compound select.
    sent, received = newest(Message.sender_id), newest(Message.recipient_id)
    # UNION, not UNION ALL: a note to oneself is in both and must count once.
    return union(select(sent.c.id), select(received.c.id)).subquery().select()


_REPLAY_LIMIT = bindparam("limit", type_=Integer)
_AFTER = bindparam("after_id", type_=Integer)
_REPLAY_AFTER = (
    message_select()
    .where(
        or_(
            Message.id.in_(_room_window(_AFTER, _REPLAY_LIMIT)),
            Message.id.in_(_private_window(_AFTER, _REPLAY_LIMIT)),
        )
    )
    .order_by(Message.id.desc())
    .limit(_REPLAY_LIMIT)
)


def replay_after(
    s: Session, user_id: int, after_id: int, limit: int
) -> tuple[list[StoredMessage], bool]:
    """What the user missed after *after_id*, oldest first, in one query.

    Join/leave notices are left out (users find them noise). Past *limit* the
    newest *limit* are returned and the second value (gap) is True.
    """
    if after_id >= MAX_ID:
        return [], False  # no id is larger
    after_id = max(after_id, 0)  # ids start at 1; this keeps the bound bindable
    rows = (
        s.connection()
        .execute(_REPLAY_AFTER, {"after_id": after_id, "uid": user_id, "limit": limit + 1})
        .all()
    )
    gap = len(rows) > limit
    return to_records(rows[:limit])[::-1], gap


def _latest_statement() -> Select[Any]:
    private_limit = bindparam("private_limit", type_=Integer)
    mine = _private_window(literal(0), private_limit).subquery()
    private_ids = select(mine.c.id).order_by(mine.c.id.desc()).limit(private_limit)
    return (
        message_select()
        .where(
            or_(
                Message.id.in_(_room_window(literal(0), bindparam("per_room", type_=Integer))),
                Message.id.in_(private_ids.scalar_subquery()),
            )
        )
        .order_by(Message.id)
    )


_LATEST = _latest_statement()


def latest_for_user(
    s: Session, user_id: int, *, per_room: int, private_limit: int
) -> list[StoredMessage]:
    """For a fresh login: the latest messages of each of the user's rooms and of
    their private conversations, oldest first (notices left out, as in replay)."""
    rows = (
        s.connection()
        .execute(_LATEST, {"uid": user_id, "per_room": per_room, "private_limit": private_limit})
        .all()
    )
    return to_records(rows)


def _between(user_id: int, other: Any) -> ColumnElement[bool]:
    """The private messages between *user_id* and *other* (an id or a subquery), both ways."""
    return and_(
        Message.kind == MessageKind.PRIVATE,
        or_(
            and_(Message.sender_id == user_id, Message.recipient_id == other),
            and_(Message.sender_id == other, Message.recipient_id == user_id),
        ),
    )


def history(
    s: Session,
    user_id: int,
    *,
    room: str | None = None,
    peer: str | None = None,
    before: int | None = None,
    around: int | None = None,
    limit: int = 50,
) -> tuple[list[StoredMessage], bool]:
    """A page of a room's messages or of a private conversation, oldest first,
    and whether older ones exist. Only what *user_id* may see: a room they are a
    member of, or their own conversation with *peer*.

    With *around* (not with *before*) the page is centred on that id: up to
    half of *limit* older messages, then the message itself (if visible) and
    newer ones, the older side filling up what the newer side lacks.
    """
    if (room is None) == (peer is None):
        raise ValueError("history needs exactly one of room and peer")
    if before is not None and around is not None:
        raise ValueError("history takes before or around, not both")
    q = message_select().where(_visible_to(user_id))
    if room is not None:
        q = q.where(Room.name_key == fold(room))
    else:
        assert peer is not None
        other = select(User.id).where(User.nick_key == fold(peer)).scalar_subquery()
        q = q.where(_between(user_id, other))
    if around is None:
        q = _before(q, before)
        rows = s.execute(q.order_by(Message.id.desc()).limit(limit + 1)).all()
        return to_records(rows[:limit])[::-1], len(rows) > limit
    around = min(max(around, 0), MAX_ID)
    older = s.execute(q.where(Message.id < around).order_by(Message.id.desc()).limit(limit + 1))
    older_rows = older.all()
    newer_rows = s.execute(q.where(Message.id >= around).order_by(Message.id).limit(limit)).all()
    n_new = min(len(newer_rows), limit - min(len(older_rows), limit // 2))
    n_old = min(len(older_rows), limit - n_new)
    page = to_records(older_rows[:n_old])[::-1] + to_records(newer_rows[:n_new])
    return page, len(older_rows) > n_old


def latest_in_conversation(
    s: Session, user_id: int, *, room_id: int | None = None, peer_id: int | None = None, upto: int
) -> int | None:
    """The id of the newest message of a room or of the private conversation with
    *peer_id* at or below *upto* that *user_id* may see, or None."""
    q = select(func.max(Message.id)).where(Message.id <= min(upto, MAX_ID), _visible_to(user_id))
    if room_id is not None:
        q = q.where(Message.room_id == room_id)
    else:
        q = q.where(_between(user_id, peer_id))
    return s.scalar(q)


def room_id_of(s: Session, name: str) -> int | None:
    """The id of the room named *name* (case-insensitive), or None."""
    return s.scalar(select(Room.id).where(Room.name_key == fold(name)))


def _conversation_statements() -> dict[str, Any]:
    """The conversation list's queries, built once with the user as a bound parameter.

    Three statements: the rooms with their latest message id, read marker and
    unread count; the private peers with the same; the latest messages
    themselves. Every login runs them, and each statement costs SQLAlchemy
    more than SQLite (seven separate ones took a quarter of a login's handler).
    """
    uid = _UID
    # Deleted messages are neither a conversation's latest nor unread.
    chat = and_(Message.kind != MessageKind.SYSTEM, Message.deleted_at.is_(None))
    from_others = or_(Message.sender_id.is_(None), Message.sender_id != uid)
    # The marker is correlated with the room (explicitly: inside the count it is
    # two levels down), so for the count it is one value and the index on
    # (room_id, id) starts at it. Correlated with the counted message instead, it
    # was looked up for every message of the room: 250 ms for a user 34,000
    # messages behind in a 300,000-message database, against 10 ms.
    room_read = (
        select(ReadMarker.message_id)
        .where(ReadMarker.user_id == uid, ReadMarker.room_id == Room.id)
        .correlate(Room)
        .scalar_subquery()
    )
    room_last = select(func.max(Message.id)).where(Message.room_id == Room.id, chat)
    # Counted up to UNREAD_CAP rows only (a LIMIT in a subquery, correlated with
    # the room two levels up): a user 200,000 messages behind costs what one
    # 1,000 behind does.
    unread_rows = (
        select(Message.id)
        .where(
            Message.room_id == Room.id,
            chat,
            from_others,
            Message.id > func.coalesce(room_read, 0),
        )
        .limit(UNREAD_CAP)
        .correlate(Room)
        .subquery()
    )
    room_unread = select(func.count()).select_from(unread_rows)
    peer = case((Message.sender_id == uid, Message.recipient_id), else_=Message.sender_id)
    mine = and_(
        Message.kind == MessageKind.PRIVATE,
        Message.deleted_at.is_(None),
        or_(Message.sender_id == uid, Message.recipient_id == uid),
    )
    by_peer = (
        select(peer.label("peer_id"), func.max(Message.id).label("last_id"))
        .where(mine)
        .group_by(peer)
        .subquery()
    )
    peer_read = (
        select(ReadMarker.message_id)
        .where(ReadMarker.user_id == uid, ReadMarker.peer_id == by_peer.c.peer_id)
        .scalar_subquery()
    )
    # Unread per peer as one grouped pass over the messages to the user (a count
    # correlated with each peer would walk them once per peer).
    unread_from = (
        select(Message.sender_id.label("peer_id"), func.count().label("unread"))
        .outerjoin(
            ReadMarker,
            and_(ReadMarker.user_id == uid, ReadMarker.peer_id == Message.sender_id),
        )
        .where(
            Message.kind == MessageKind.PRIVATE,
            Message.recipient_id == uid,
            Message.sender_id != uid,
            Message.deleted_at.is_(None),
            Message.id > func.coalesce(ReadMarker.message_id, 0),
        )
        .group_by(Message.sender_id)
        .subquery()
    )
    return {
        "rooms": select(
            Room.id,
            Room.name,
            room_last.scalar_subquery(),
            room_read,
            room_unread.scalar_subquery(),
        )
        .join(RoomMember, RoomMember.room_id == Room.id)
        .where(RoomMember.user_id == uid)
        .order_by(Room.name_key),
        # Most recent first; a deleted peer's conversation is not listed.
        "peers": select(
            User.id,
            User.nick,
            by_peer.c.last_id,
            peer_read,
            unread_from.c.unread,
        )
        .join(by_peer, by_peer.c.peer_id == User.id)
        .outerjoin(unread_from, unread_from.c.peer_id == User.id)
        .where(User.deleted_at.is_(None))
        .order_by(by_peer.c.last_id.desc()),
        "last": message_select().where(Message.id.in_(bindparam("ids", expanding=True))),
    }


_CONVERSATIONS = _conversation_statements()


def conversations(s: Session, user_id: int) -> list[ConversationRecord]:
    """The user's conversations: every room they are a member of (by name), then
    every live peer they exchanged a private message with (most recent first),
    each with its latest message, read marker and unread count.

    Notices are neither a conversation's latest message nor unread; nor is what
    the user wrote. Private conversations are only the user's own (sender or
    recipient), like every other read here. Unread counts stop at UNREAD_CAP.
    """
    conn = s.connection()
    q = _CONVERSATIONS
    me = {"uid": user_id}
    rooms = conn.execute(q["rooms"], me).all()
    peers = conn.execute(q["peers"], me).all()
    wanted = [row[2] for row in (*rooms, *peers) if row[2] is not None]
    last = (
        {m.id: m for m in to_records(conn.execute(q["last"], {"ids": wanted}).all())}
        if wanted
        else {}
    )
    out = [
        ConversationRecord(
            kind=ConversationKind.ROOM,
            name=name,
            last=last.get(last_id),
            unread=int(unread or 0),
            read=int(read or 0),
        )
        for _, name, last_id, read, unread in rooms
    ]
    out.extend(
        ConversationRecord(
            kind=ConversationKind.PRIVATE,
            name=nick,
            last=last.get(last_id),
            # Counted in full by SQL (one grouped pass): capped here, as the rooms' are.
            unread=min(int(unread or 0), UNREAD_CAP),
            read=int(read or 0),
        )
        for _, nick, last_id, read, unread in peers
    )
    return out


_TOKEN = re.compile(r"\S+")


def search_terms(words: str) -> tuple[list[str], list[str]]:
    """Split what the user typed into FTS terms (3+ characters) and short terms.

    Nothing the user types is ever FTS syntax: each term becomes one quoted
    phrase ("" doubles a quote), so `example.com`, `C++` and `"` just work.
    """
    long_terms: list[str] = []
    short_terms: list[str] = []
    for t in _TOKEN.findall(words):
        (long_terms if len(t) >= TRIGRAM else short_terms).append(t)
    return long_terms, short_terms


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH string where every term is a quoted phrase (implicit AND)."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in terms)


def like_pattern(term: str) -> str:
    """A LIKE pattern matching *term* anywhere, with LIKE's wildcards escaped."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_condition(words: str, dialect: str = "sqlite") -> ColumnElement[bool]:
    """Messages whose text contains every word (substring, case-insensitive).

    SQLite: the trigram FTS5 index for terms of 3+ characters, LIKE for shorter
    ones. PostgreSQL: ILIKE for every term; pg_trgm's GIN index
    (ix_messages_body_trgm) serves the terms of 3+ characters."""
    long_terms, short_terms = search_terms(words)
    if dialect == "postgresql":
        terms = long_terms + short_terms
        pg_conds = [Message.body.ilike(like_pattern(t), escape="\\") for t in terms]
        return and_(*pg_conds) if pg_conds else false()
    conds: list[ColumnElement[bool]] = []
    if long_terms:
        match = literal_column(_FTS.name).op("MATCH")(bindparam("fts", fts_query(long_terms)))
        conds.append(Message.id.in_(select(_FTS.c.rowid).where(match)))
    conds.extend(Message.body.like(like_pattern(t), escape="\\") for t in short_terms)
    return and_(*conds) if conds else false()


def search(
    s: Session, user_id: int, words: str, *, before: int | None = None, limit: int = 50
) -> tuple[list[StoredMessage], bool]:
    """Messages visible to the user containing every word, newest first, and
    whether more (older) matches exist. Trigram FTS5 for terms of 3+ characters,
    LIKE for shorter ones (the trigram tokenizer cannot match them); pg_trgm and
    ILIKE on PostgreSQL (search_condition)."""
    q = _before(
        q=message_select().where(
            _visible_to(user_id), search_condition(words, s.get_bind().dialect.name)
        ),
        before=before,
    )
    rows = s.execute(q.order_by(Message.id.desc()).limit(limit + 1)).all()
    return to_records(rows[:limit]), len(rows) > limit


def cut_off_by_restart(
    s: Session, since: datetime, *, node: str | None = None
) -> list[tuple[int, str, list[str], datetime]]:
    """Live users whose session the server ended at a shutdown or restart since
    *since*: (user id, nick, rooms, when the latest such session ended).

    With *node*, only the sessions of that node (and of no node): on a shared
    database another node's restart is not this node's."""
    ended_here = [
        ChatSession.ended_at >= since,
        ChatSession.end_reason.in_((EndReason.SERVER_SHUTDOWN, EndReason.SERVER_RESTART)),
    ]
    if node is not None:
        ended_here.append(or_(ChatSession.node == node, ChatSession.node.is_(None)))
    ends = (
        select(ChatSession.user_id, func.max(ChatSession.ended_at).label("ended"))
        .where(*ended_here)
        .group_by(ChatSession.user_id)
        .subquery()
    )
    rows = s.execute(
        select(User.id, User.nick, ends.c.ended)
        .join(ends, ends.c.user_id == User.id)
        .where(User.deleted_at.is_(None))
        .order_by(User.id)
    ).all()
    return [(uid, nick, rooms_of(s, uid), ended) for uid, nick, ended in rows]


def room_count(s: Session) -> int:
    """How many rooms exist (for the server-wide room cap)."""
    return int(s.scalar(select(func.count()).select_from(Room)) or 0)
