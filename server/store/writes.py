"""Every write the server makes, as functions of an open
Session. They run on the writer thread (Store.submit, or
Store.submit_bookkeeping for session rows and tokens), each inside its own
SAVEPOINT of a group-committed transaction, and may be re-run alone if the
database fails the group, or later from the bookkeeping backlog, so they
must not have effects outside the database: callbacks after COMMIT do the rest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from parley_chat.protocol import DEFAULT_ROOM, fold
from parley_chat.protocol.vocab import MessageKind

from .errors import IdReused, NickTaken, NoSuchRoom, NoSuchUser, NotVisible, StoreConflict
from .models import (
    CLIENT_CHARS,
    PEER_CHARS,
    REASON_CHARS,
    ChatSession,
    Message,
    ReadMarker,
    ResumeToken,
    Room,
    RoomMember,
    ServerSetting,
    User,
    UserKey,
)
from .queries import get_message, user_record
from .records import StoredMessage, UserRecord


def _room(s: Session, name: str) -> Room | None:
    return s.scalar(select(Room).where(Room.name_key == fold(name)))


def _ensure_room(s: Session, name: str, now: datetime) -> Room:
    room = _room(s, name)
    if room is None:
        room = Room(name=name, name_key=fold(name), created_at=now)
        s.add(room)
        s.flush()
    return room


def _live_user(s: Session, nick: str) -> User:
    user = s.scalar(select(User).where(User.nick_key == fold(nick)))
    if user is None:
        raise NoSuchUser(f"no account named {nick}")
    return user


def create_user(s: Session, nick: str, password_hash: str, now: datetime) -> UserRecord:
    """A new account, a member of the default room. NickTaken if the nick is in use."""
    if s.scalar(select(User.id).where(User.nick_key == fold(nick))) is not None:
        raise NickTaken(f"the nick {nick} is already taken")
    user = User(nick=nick, nick_key=fold(nick), password_hash=password_hash, created_at=now)
    s.add(user)
    s.flush()
    lobby = _ensure_room(s, DEFAULT_ROOM, now)
    s.add(RoomMember(room_id=lobby.id, user_id=user.id, joined_at=now))
    s.flush()
    _read_from_now(s, user.id, lobby.id, now)
    return user_record(user)


def revoke_tokens(s: Session, user_id: int, now: datetime) -> int:
    """Revoke every live resume token of a user; returns how many."""
    result = s.execute(
        update(ResumeToken)
        .where(ResumeToken.user_id == user_id, ResumeToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


def set_password(s: Session, nick: str, password_hash: str, now: datetime) -> UserRecord:
    """Replace a password hash and revoke the user's resume tokens."""
    user = _live_user(s, nick)
    user.password_hash = password_hash
    revoke_tokens(s, user.id, now)
    s.flush()
    return user_record(user)


def delete_user(s: Session, nick: str, now: datetime) -> UserRecord:
    """Delete an account: it can no longer log in and its nick is free again.

    Its messages stay, attributed to the removed account (chat_log shows
    "nick (removed)"). Memberships and tokens go."""
    user = _live_user(s, nick)
    user.deleted_at = now
    user.nick_key = None
    user.password_hash = ""
    revoke_tokens(s, user.id, now)
    s.execute(delete(RoomMember).where(RoomMember.user_id == user.id))
    s.execute(delete(ReadMarker).where(ReadMarker.user_id == user.id))
    s.execute(delete(UserKey).where(UserKey.user_id == user.id))
    s.flush()
    return user_record(user)


# add_message is the hot path (every chat line), so it speaks SQL directly:
# a few short statements instead of the ORM's dozen, which measured ~4x faster
# (bench/load.py); on SQLite a room message that can be stored as it is takes
# one (_INSERT_INTO_ROOM). Each statement is a trip out of the GIL, and the
# writer waits to get it back while the I/O loop writes a pass to a thousand
# members (decisions.md, "What bounds one process"). The text is still the
# store's alone. SQLite runs it on the
# driver's own connection with `?` placeholders (SQLAlchemy's result objects
# cost more than the SQL there); PostgreSQL through exec_driver_sql with named
# placeholders (psycopg refuses `?`), so its errors arrive wrapped by SQLAlchemy
# like every other write's.
# The room, the sender's membership and the sender's nick, in one statement.
_ROOM_AND_MEMBERSHIP = (
    "SELECT r.id, r.name, EXISTS (SELECT 1 FROM room_members AS m"
    " WHERE m.room_id = r.id AND m.user_id = ?), (SELECT nick FROM users WHERE id = ?)"
    " FROM rooms AS r WHERE r.name_key = ?"
)
_NICKS = "SELECT (SELECT nick FROM users WHERE id = ?), (SELECT nick FROM users WHERE id = ?)"
_INSERT = (
    "INSERT INTO messages (created_at, kind, room_id, sender_id, recipient_id, body,"
    " client_msg_id, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING id"
)
#: SQLite: a room message in one statement when it can be stored as it is (the
#: room exists, the sender is a member or it is a notice, its id is fresh); no
#: row back means one of those failed, and the statements above say which.
_INSERT_INTO_ROOM = (
    "INSERT INTO messages (created_at, kind, room_id, sender_id, recipient_id, body,"
    " client_msg_id, envelope) SELECT ?, ?, r.id, ?, NULL, ?, ?, ? FROM rooms AS r"
    " WHERE r.name_key = ? AND (? IS NULL OR EXISTS (SELECT 1 FROM room_members AS m"
    " WHERE m.room_id = r.id AND m.user_id = ?))"
    " ON CONFLICT (sender_id, client_msg_id) DO NOTHING"
    " RETURNING id, (SELECT name FROM rooms WHERE id = room_id),"
    " (SELECT nick FROM users WHERE id = sender_id)"
)
_EXISTING = (
    "SELECT id, kind, room_id, recipient_id, body, envelope FROM messages"
    " WHERE sender_id = ? AND client_msg_id = ?"
)

#: The same statements for psycopg. The id comes from messages_take_id (the
#: counter row, migration 0005_postgres): commit order across nodes. Ids are
#: cast to bigint, so one beyond 64 bits is refused (a DataError: the input's
#: fault) instead of compared as a numeric that matches nothing.
_PG_ROOM_AND_MEMBERSHIP = (
    "SELECT r.id, r.name, EXISTS (SELECT 1 FROM room_members AS m"
    " WHERE m.room_id = r.id AND m.user_id = %(user)s::bigint),"
    " (SELECT nick FROM users WHERE id = %(user)s::bigint) FROM rooms AS r"
    " WHERE r.name_key = %(key)s"
)
_PG_NICKS = (
    "SELECT (SELECT nick FROM users WHERE id = %(a)s::bigint),"
    " (SELECT nick FROM users WHERE id = %(b)s::bigint)"
)
_PG_INSERT = (
    "INSERT INTO messages (created_at, kind, room_id, sender_id, recipient_id, body,"
    " client_msg_id, envelope) VALUES (%(created_at)s, %(kind)s, %(room_id)s::bigint,"
    " %(sender_id)s::bigint, %(recipient_id)s::bigint, %(body)s, %(client_msg_id)s,"
    " %(envelope)s)"
    " ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING id"
)
_PG_EXISTING = (
    "SELECT id, kind, room_id, recipient_id, body, envelope FROM messages"
    " WHERE sender_id = %(sender)s::bigint AND client_msg_id = %(cid)s"
)

_Row = Sequence[Any] | None


class _HotPath:
    """add_message's four statements on one dialect's connection."""

    def __init__(self, s: Session) -> None:
        conn = s.connection()
        self.sqlite = conn.dialect.name == "sqlite"
        if self.sqlite:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            #: SQLite only: the driver's own connection, inside the session's transaction.
            self.raw: Any = raw
        else:
            self._conn = conn

    def _pg(self, sql: str, params: dict[str, Any]) -> _Row:
        row = self._conn.exec_driver_sql(sql, params).fetchone()
        return None if row is None else tuple(row)

    def room(self, sender_id: int | None, key: str) -> _Row:
        if self.sqlite:
            row = self.raw.execute(_ROOM_AND_MEMBERSHIP, (sender_id, sender_id, key))
            return row.fetchone()  # type: ignore[no-any-return]
        return self._pg(_PG_ROOM_AND_MEMBERSHIP, {"user": sender_id, "key": key})

    def existing(self, sender_id: int, client_msg_id: str) -> _Row:
        if self.sqlite:
            return self.raw.execute(_EXISTING, (sender_id, client_msg_id)).fetchone()  # type: ignore[no-any-return]
        return self._pg(_PG_EXISTING, {"sender": sender_id, "cid": client_msg_id})

    def insert(self, values: tuple[Any, ...]) -> int | None:
        if self.sqlite:
            created_at, *rest = values
            row = self.raw.execute(_INSERT, (db_time(created_at), *rest)).fetchone()
        else:
            names = ("created_at", "kind", "room_id", "sender_id", "recipient_id", "body")
            params = dict(zip((*names, "client_msg_id", "envelope"), values, strict=True))
            row = self._pg(_PG_INSERT, params)
        return None if row is None else int(row[0])

    def execute(self, sqlite_sql: str, pg_sql: str, params: dict[str, Any]) -> None:
        """One statement without a result: SQLite's `?` form takes the values in
        *params*' order, PostgreSQL's named form takes them by name."""
        if self.sqlite:
            self.raw.execute(sqlite_sql, tuple(params.values()))
        else:
            self._conn.exec_driver_sql(pg_sql, params)

    def nicks(self, a: int | None, b: int | None) -> tuple[str | None, str | None]:
        if self.sqlite:
            found = self.raw.execute(_NICKS, (a, b)).fetchone()
        else:
            found = self._pg(_PG_NICKS, {"a": a, "b": b})
        assert found is not None
        return found[0], found[1]


def add_room_message_direct(
    raw: sqlite3.Connection,
    *,
    kind: MessageKind,
    body: str,
    now: datetime,
    room: str,
    sender_id: int | None = None,
    client_msg_id: str | None = None,
    envelope: str | None = None,
) -> tuple[StoredMessage, bool] | None:
    """SQLite: store a room message that can be stored as it is (the room exists,
    the sender is a member or it is a notice, its id is fresh), in one statement
    on the driver's connection *raw*, inside a transaction the caller began.

    Returns what add_message() would, or None when nothing was stored:
    add_message() then says why (no room, not a member, a re-send). The
    writer's direct path runs it without an ORM session (Store.submit_gathered);
    a driver error propagates."""
    values = (db_time(now), kind, sender_id, body, client_msg_id, envelope)
    key = fold(room)
    row = raw.execute(_INSERT_INTO_ROOM, (*values, key, sender_id, sender_id)).fetchone()
    if row is None:
        return None
    message = StoredMessage(
        id=int(row[0]),
        created_at=now,
        kind=MessageKind(kind),
        room=row[1],
        sender=row[2],
        recipient=None,
        body=body,
        client_msg_id=client_msg_id,
        envelope=envelope,
    )
    return message, False


def db_time(now: datetime) -> str:
    """A naive UTC datetime in the text form SQLAlchemy's DateTime keeps in SQLite."""
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")


def add_message(
    s: Session,
    *,
    kind: MessageKind,
    body: str,
    now: datetime,
    room: str | None = None,
    sender_id: int | None = None,
    recipient_id: int | None = None,
    client_msg_id: str | None = None,
    envelope: str | None = None,
) -> tuple[StoredMessage, bool]:
    """Store a message; returns it and whether it was a duplicate.

    A (sender, client id) pair already stored with the same kind, target and
    body returns the original message and True: a re-sent message is stored
    once. The same pair with another kind, target or body raises IdReused: the
    new message is not stored and must not be acked as the old one. A public
    message needs the sender to be a member of the room (NotVisible otherwise).
    """
    kind = MessageKind(kind)  # a member, whatever string a caller passed
    db = _HotPath(s)

    def duplicate(room_id: int | None) -> tuple[StoredMessage, bool] | None:
        if sender_id is None or client_msg_id is None:
            return None
        row = db.existing(sender_id, client_msg_id)
        if row is None:
            return None
        found, old_kind, old_room, old_recipient, old_body, old_envelope = row
        if (old_kind, old_room, old_recipient, old_body, old_envelope) != (
            kind,
            room_id,
            recipient_id,
            body,
            envelope,
        ):
            raise IdReused(
                f"the id {client_msg_id} belongs to another message of yours; "
                "use a fresh id for a new message"
            )
        original = get_message(s, found)
        assert original is not None
        return original, True

    def stored(
        new_id: int, room_name: str | None, sender: str | None, recipient: str | None
    ) -> tuple[StoredMessage, bool]:
        message = StoredMessage(
            id=new_id,
            created_at=now,
            kind=kind,
            room=room_name,
            sender=sender,
            recipient=recipient,
            body=body,
            client_msg_id=client_msg_id,
            envelope=envelope,
        )
        return message, False

    if db.sqlite and room is not None and recipient_id is None:
        # The common case in one statement; when it stores nothing, the checks
        # below find out why (no room, not a member, a re-send).
        try:
            fast = add_room_message_direct(
                db.raw,
                kind=kind,
                body=body,
                now=now,
                room=room,
                sender_id=sender_id,
                client_msg_id=client_msg_id,
                envelope=envelope,
            )
        except sqlite3.OperationalError:
            # A refused write with the transaction still open: the checks below
            # report a missing room or membership first, as they would on a
            # writable database, and their own INSERT meets the refusal again
            # if there is nothing else to report.
            if not db.raw.in_transaction:
                raise  # SQLite rolled the group back itself: the writer must know
            fast = None
        if fast is not None:
            return fast
    room_id, room_name = None, None
    nicks: tuple[str | None, str | None] | None = None
    if room is not None:
        row = db.room(sender_id, fold(room))
        if row is None:
            raise NoSuchRoom(f"there is no room {room}")
        room_id, room_name, member, sender_nick = row
        if recipient_id is None:
            nicks = (sender_nick, None)
        if sender_id is not None and not member:
            # A re-send of a message stored before the sender left still gets its ack.
            again = duplicate(room_id)
            if again is not None:
                return again
            raise NotVisible(f"you are not in {room_name}; join it first")
    if not db.sqlite:
        # PostgreSQL's id trigger runs before ON CONFLICT is decided, so a re-send
        # reaching the INSERT would use up a counter value and leave a gap in the
        # ids, which nodes delivering strictly by id would wait on: look first.
        again = duplicate(room_id)
        if again is not None:
            return again
    new_id = db.insert((now, kind, room_id, sender_id, recipient_id, body, client_msg_id, envelope))
    if new_id is None:  # the UNIQUE (sender, client id) pair exists: a re-send
        if not db.sqlite:
            # Stored by another node since the look above: fail this op, so its
            # rollback returns the counter value; the client's re-send is acked.
            raise StoreConflict("the same message arrived twice at once; send it again")
        again = duplicate(room_id)
        assert again is not None
        return again
    sender, recipient = nicks if nicks is not None else db.nicks(sender_id, recipient_id)
    return stored(new_id, room_name, sender, recipient)


#: Login bookkeeping (two inserts per login, one update per logout) runs as
#: prebuilt Core statements on the session's connection: through the ORM's
#: unit of work each cost several times the SQL. A login's two inserts, whose
#: ids the store hands out in advance, go to the driver itself like a
#: message's: in a 1000-client login storm the two Core executions were an
#: eighth of the server's Python time.
_INSERT_TOKEN = insert(ResumeToken)
_INSERT_SESSION = insert(ChatSession)
_TOKEN_COLUMNS = ("id", "user_id", "token_hash", "created_at", "expires_at")
_SESSION_COLUMNS = (
    "id",
    "node",
    "user_id",
    "token_id",
    "peer",
    "client",
    "started_at",
    "last_active_at",
)


def _driver_insert(table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """The INSERT of *columns* into *table* for SQLite (`?`) and PostgreSQL (named)."""
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})",
        f"INSERT INTO {table} ({names}) VALUES ({', '.join(f'%({c})s' for c in columns)})",
    )


_TOKEN_SQL = _driver_insert("resume_tokens", _TOKEN_COLUMNS)
_SESSION_SQL = _driver_insert("sessions", _SESSION_COLUMNS)
_END_SESSION = (
    update(ChatSession)
    .where(ChatSession.id == bindparam("session_id"), ChatSession.ended_at.is_(None))
    .values(
        ended_at=bindparam("now"),
        last_active_at=bindparam("now"),
        end_reason=bindparam("reason"),
    )
)


def issue_token(
    s: Session,
    user_id: int,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
    *,
    token_id: int | None = None,
) -> int:
    """Store a resume token's hash; returns the token row's id.

    *token_id* is one from Store.new_token_id() when the row may be stored
    later (bookkeeping); None lets the database choose."""
    if token_id is not None:
        db = _HotPath(s)
        when = (db_time(now), db_time(expires_at)) if db.sqlite else (now, expires_at)
        db.execute(
            *_TOKEN_SQL,
            dict(zip(_TOKEN_COLUMNS, (token_id, user_id, token_hash, *when), strict=True)),
        )
        return token_id
    values = {
        "user_id": user_id,
        "token_hash": token_hash,
        "created_at": now,
        "expires_at": expires_at,
    }
    result = s.connection().execute(_INSERT_TOKEN, values)
    return int(result.inserted_primary_key[0])


def open_session(
    s: Session,
    *,
    user_id: int,
    peer: str,
    client: str | None,
    token_id: int | None,
    now: datetime,
    session_id: int | None = None,
    node: str | None = None,
) -> int:
    """Record a logged-in connection; returns the session id.

    *session_id* is one from Store.new_session_id() when the row may be
    stored later (bookkeeping); None lets the database choose. *node* is the
    server node serving the connection."""
    values: dict[str, Any] = {
        "id": session_id,
        "node": node,
        "user_id": user_id,
        "token_id": token_id,
        "peer": peer[:PEER_CHARS],
        "client": client[:CLIENT_CHARS] if client else None,
        "started_at": now,
        "last_active_at": now,
    }
    if session_id is not None:
        db = _HotPath(s)
        if db.sqlite:
            values["started_at"] = values["last_active_at"] = db_time(now)
        db.execute(*_SESSION_SQL, values)
        return session_id
    del values["id"]
    result = s.connection().execute(_INSERT_SESSION, values)
    return int(result.inserted_primary_key[0])


def touch_sessions(s: Session, ids: list[int], now: datetime) -> None:
    """Refresh last_active_at of open sessions."""
    if ids:
        s.execute(
            update(ChatSession)
            .where(ChatSession.id.in_(ids), ChatSession.ended_at.is_(None))
            .values(last_active_at=now)
        )


def end_session(s: Session, session_id: int, reason: str, now: datetime) -> None:
    """Close a session row with its reason (first reason wins)."""
    s.connection().execute(
        _END_SESSION, {"session_id": session_id, "now": now, "reason": reason[:REASON_CHARS]}
    )


def end_open_sessions(s: Session, reason: str, now: datetime, *, node: str | None = None) -> int:
    """Close the sessions still open (left by a crash); returns how many.

    With *node*, only that node's and those of no node (stored before nodes
    existed): the other nodes sharing the database are serving theirs. Without
    it, every open session (one server per SQLite file)."""
    stmt = update(ChatSession).where(ChatSession.ended_at.is_(None))
    if node is not None:
        stmt = stmt.where(or_(ChatSession.node == node, ChatSession.node.is_(None)))
    result = s.execute(stmt.values(ended_at=now, end_reason=reason[:REASON_CHARS]))
    return int(result.rowcount or 0)


def join_room(s: Session, user_id: int, room: str, now: datetime) -> bool:
    """Make the user a member (creating the room on first join). False if already one."""
    target = _ensure_room(s, room, now)
    if s.get(RoomMember, (target.id, user_id)) is not None:
        return False
    s.add(RoomMember(room_id=target.id, user_id=user_id, joined_at=now))
    s.flush()
    _read_from_now(s, user_id, target.id, now)
    return True


def _read_from_now(s: Session, user_id: int, room_id: int, now: datetime) -> None:
    # A new member has read what came before: the room's past is history, not unread.
    latest = s.scalar(select(func.max(Message.id)).where(Message.room_id == room_id))
    if latest is not None:
        move_read_marker(s, user_id, room_id=room_id, message_id=latest, now=now)


def leave_room(s: Session, user_id: int, room: str) -> bool:
    """End a membership (and its read marker). False if the user was not a member."""
    target = _room(s, room)
    if target is None:
        return False
    result = s.execute(
        delete(RoomMember).where(RoomMember.room_id == target.id, RoomMember.user_id == user_id)
    )
    s.execute(
        delete(ReadMarker).where(ReadMarker.user_id == user_id, ReadMarker.room_id == target.id)
    )
    return bool(result.rowcount)


def move_read_marker(
    s: Session,
    user_id: int,
    *,
    room_id: int | None = None,
    peer_id: int | None = None,
    message_id: int,
    now: datetime,
) -> tuple[int, bool]:
    """Move the user's marker for a room or a private peer forward to *message_id*.

    Never back: returns the marker after the call and whether it moved.
    """
    if (room_id is None) == (peer_id is None):
        raise ValueError("a read marker is for exactly one of a room and a peer")
    where = ReadMarker.room_id == room_id if room_id is not None else ReadMarker.peer_id == peer_id
    marker = s.scalar(select(ReadMarker).where(ReadMarker.user_id == user_id, where))
    if marker is None:
        s.add(
            ReadMarker(
                user_id=user_id,
                room_id=room_id,
                peer_id=peer_id,
                message_id=message_id,
                updated_at=now,
            )
        )
        s.flush()
        return message_id, True
    if message_id <= marker.message_id:
        return marker.message_id, False
    marker.message_id = message_id
    marker.updated_at = now
    s.flush()
    return message_id, True


def set_setting(s: Session, key: str, value: str) -> None:
    """Store an operator setting (insert or replace)."""
    row = s.get(ServerSetting, key)
    if row is None:
        s.add(ServerSetting(key=key, value=value))
    else:
        row.value = value
    s.flush()
