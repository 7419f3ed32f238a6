# server/commands.py: one handler per client frame type.
#
# Rules this module keeps:
# 1. Dispatch is a table (HANDLERS) whose guards are data: whether a frame
#    needs a logged-in session is declared next to its handler.
# 2. Each handler goes validate -> store -> hub. Writes go through the store's
#    single writer; a message is acked and fanned out only from the writer's
#    after-commit callback, so nothing is delivered that is not stored.
# 3. The sender of every message is the session's user, never a field the
#    client sent.
# 4. Handlers run on the connection's own I/O thread (reads and logins may
#    block it briefly; that delays only this client). After-commit callbacks
#    run on the writer thread and only enqueue bytes.

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from protocol import (
    DEFAULT_ROOM,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    History,
    Join,
    Leave,
    ListRooms,
    Ping,
    Pong,
    Presence,
    RoomList,
    Search,
    Send,
    Welcome,
    Who,
    encode,
    fold,
    format_ts,
)

from .auth import new_token, token_hash
from .hub import message_frame
from .store import StoreConflict, StoreError, queries, writes
from .store.records import StoredMessage, UserRecord

if TYPE_CHECKING:
    from .app import ChatServer
    from .connection import Connection

log = logging.getLogger("parley.commands")

#: How long a login waits for the writer (account creation, session row).
_WRITE_WAIT = 30.0


def utcnow() -> datetime:
    """Naive UTC now, the form the store keeps."""
    return datetime.now(UTC).replace(tzinfo=None)


class LoginFailed(Exception):
    """A hello was refused; `.code` and `.message` go into the error frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[["Commands", "Connection", Any], None]


class Commands:
    """The handlers, bound to one server's store, hub and settings."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.cfg = server.config
        self.store = server.store
        self.hub = server.hub

    def dispatch(self, conn: Connection, frame: Frame) -> None:
        """Run the handler for *frame*; unexpected failures become an `internal` error frame."""
        handler, needs_login = HANDLERS[type(frame)]
        if needs_login and not conn.logged_in:
            conn.send_frame(
                Error(
                    code=ErrorCode.NOT_LOGGED_IN,
                    message="log in first with a hello frame",
                    ref=getattr(frame, "id", None) if isinstance(frame, Send) else None,
                )
            )
            return
        try:
            handler(self, conn, frame)
        except StoreError as exc:
            log.error("store failure handling %s from %s: %s", frame.TYPE, conn.peer, exc)
            conn.send_frame(
                Error(code=ErrorCode.STORE_FAILED, message=f"the server's database failed: {exc}")
            )
        except Exception:
            log.exception("handler for %s failed", frame.TYPE)
            conn.send_frame(Error(code=ErrorCode.INTERNAL, message="internal server error"))

    # --- login ------------------------------------------------------------------

    def hello(self, conn: Connection, f: Hello) -> None:
        """hello {version, nick, password | token, register?, last_seen?, client?}"""
        if conn.logged_in:
            conn.send_frame(Error(code=ErrorCode.ALREADY_LOGGED_IN, message="already logged in"))
            return
        if f.version != PROTOCOL_VERSION:
            conn.close_after_flush(
                "unsupported protocol version",
                Error(
                    code=ErrorCode.BAD_VERSION,
                    message=f"this server speaks protocol version {PROTOCOL_VERSION}",
                ),
            )
            return
        try:
            user, created = self._authenticate(conn, f)
        except LoginFailed as exc:
            log.info("%s: login as %s refused: %s", conn.peer, f.nick, exc.code)
            conn.close_after_flush(
                f"login refused: {exc.code}", Error(code=exc.code, message=exc.message)
            )
            return
        self._start_session(conn, f, user, created)

    def _registration_open(self) -> bool:
        with self.store.read() as s:
            value = queries.get_setting(s, "registration_open")
        return self.cfg.registration_open if value is None else value == "true"

    def _authenticate(self, conn: Connection, f: Hello) -> tuple[UserRecord, bool]:
        now = utcnow()
        if f.token is not None:
            with self.store.read() as s:
                found = queries.user_by_token(s, token_hash(f.token), now)
            if found is None or fold(found[0].nick) != fold(f.nick):
                raise LoginFailed(
                    ErrorCode.BAD_TOKEN, "the resume token is not valid; log in with your password"
                )
            return found[0], False

        assert f.password is not None
        key = (fold(f.nick), conn.peer_ip)
        throttle = self.server.throttle
        # Checked before any hashing: a guesser cannot make us burn scrypt at will.
        if not throttle.allowed(key):
            wait = throttle.retry_after(key)
            raise LoginFailed(
                ErrorCode.THROTTLED, f"too many failed logins; try again in {wait:.0f} s"
            )
        with self.store.read() as s:
            user = queries.get_user(s, f.nick)
        hasher = self.server.hasher
        if user is None:
            if not f.register:
                raise LoginFailed(
                    ErrorCode.NO_SUCH_ACCOUNT,
                    f"there is no account named {f.nick}; to create it, log in with register "
                    "(--register in the terminal client, 'create account' in the app)",
                )
            if not self._registration_open():
                raise LoginFailed(
                    ErrorCode.REGISTRATION_CLOSED,
                    "registration is closed on this server; ask its operator for an account",
                )
            password_hash = hasher.hash(f.password)
            future = self.store.submit(
                partial(writes.create_user, nick=f.nick, password_hash=password_hash, now=now)
            )
            try:
                return future.result(_WRITE_WAIT), True
            except StoreConflict as exc:  # someone registered the nick a moment ago
                raise LoginFailed(
                    ErrorCode.NICK_TAKEN, f"the nick {f.nick} is already taken; choose another"
                ) from exc
        if not hasher.verify(f.password, user.password_hash):
            throttle.failed(key)
            if f.register:
                raise LoginFailed(
                    ErrorCode.NICK_TAKEN,
                    f"the nick {user.nick} is already registered and the password does not "
                    "match: choose another nick, or type that account's password",
                )
            raise LoginFailed(ErrorCode.AUTH_FAILED, f"wrong password for {user.nick}")
        throttle.succeeded(key)
        return user, False

    def _start_session(self, conn: Connection, f: Hello, user: UserRecord, created: bool) -> None:
        now = utcnow()
        token, hashed = new_token()
        expires = now + timedelta(seconds=self.cfg.token_ttl)

        def open_session(s: Any) -> int:
            token_id = writes.issue_token(s, user.id, hashed, now, expires)
            return writes.open_session(
                s, user_id=user.id, peer=conn.peer, client=f.client, token_id=token_id, now=now
            )

        session_id = self.store.submit(open_session).result(_WRITE_WAIT)
        conn.user_id, conn.nick, conn.session_id = user.id, user.nick, session_id
        with self.store.read() as s:
            rooms = queries.rooms_of(s, user.id)

        # Live messages are held back while the replay is read and sent, then
        # released minus what the replay already contained: nothing missed,
        # nothing twice, replay first.
        conn.hold_live()
        first = self.hub.attach(conn, user.id, user.nick, rooms)
        conn.send_frame(
            Welcome(
                version=PROTOCOL_VERSION,
                nick=user.nick,
                token=token,
                rooms=rooms,
                server=self.cfg.server_name,
                created=created,
                session=session_id,
                max_text=self.cfg.max_text_chars,
            )
        )
        with self.store.read() as s:
            if f.last_seen is not None:
                messages, gap = queries.replay_after(s, user.id, f.last_seen, self.cfg.replay_cap)
                target = None
            else:
                messages = queries.latest_for_user(
                    s,
                    user.id,
                    per_room=self.cfg.fresh_room_messages,
                    private_limit=self.cfg.fresh_private_messages,
                )
                # A fresh login shows recent history; older messages exist if
                # the first one shown is not the user's very first.
                gap, target = bool(messages), "latest"
        conn.send_bytes(self._batch("replay", messages, user, gap=gap, target=target))
        conn.release_held(max((m.id for m in messages), default=0))
        for room in rooms:
            conn.send_frame(Presence(room=room, online=self.hub.online_in(room)))
        log.info(
            "%s logged in as %s (%s, session %d, %d replayed)",
            conn.peer,
            user.nick,
            conn.tls_version,
            session_id,
            len(messages),
        )
        if first:
            for room in rooms:
                self.post_system(
                    room,
                    f"{user.nick} joined",
                    after=partial(self.hub.publish_presence, room, joined=user.nick),
                )

    def _batch(
        self,
        kind: str,
        messages: Iterable[StoredMessage],
        user_nick_of: UserRecord | str,
        *,
        tag: str | None = None,
        target: str | None = None,
        gap: bool = False,
        more: bool = False,
    ) -> bytes:
        """One coalesced write: batch open, the messages, batch close."""
        me = fold(user_nick_of.nick if isinstance(user_nick_of, UserRecord) else user_nick_of)
        parts = [encode(Batch(state="open", kind=kind, tag=tag, target=target, gap=gap))]
        count = 0
        for m in messages:
            ref = m.client_msg_id if m.sender is not None and fold(m.sender) == me else None
            parts.append(encode(message_frame(m, ref)))
            count += 1
        parts.append(
            encode(Batch(state="close", kind=kind, tag=tag, target=target, more=more, count=count))
        )
        return b"".join(parts)

    # --- system notices -------------------------------------------------------------

    def post_system(self, room: str, text: str, after: Callable[[], None] | None = None) -> None:
        """Store a system notice in *room*, then deliver it (and run *after*)."""

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                log.warning("could not store system notice in %s: %s", room, exc)
            else:
                self.hub.deliver_message(result[0], None, None)
            if after is not None:
                after()

        self.store.submit(
            partial(writes.add_message, kind="system", body=text, now=utcnow(), room=room), done
        )

    # --- messages ---------------------------------------------------------------------

    def send(self, conn: Connection, f: Send) -> None:
        """send {id, room | to, text}: store, then ack and fan out after commit."""
        assert conn.user_id is not None
        if len(f.text) > self.cfg.max_text_chars:
            conn.send_frame(
                Error(
                    code=ErrorCode.TEXT_TOO_LONG,
                    message=f"message text is over {self.cfg.max_text_chars} characters",
                    ref=f.id,
                )
            )
            return
        now = utcnow()
        if f.room is not None:
            room = self.hub.room_name(conn.user_id, f.room)
            if room is None:
                conn.send_frame(
                    Error(
                        code=ErrorCode.NOT_IN_ROOM,
                        message=f"you are not in {f.room}; join it first",
                        ref=f.id,
                    )
                )
                return
            op = partial(
                writes.add_message,
                kind="public",
                body=f.text,
                now=now,
                room=room,
                sender_id=conn.user_id,
                client_msg_id=f.id,
            )
        else:
            assert f.to is not None
            with self.store.read() as s:
                recipient = queries.get_user(s, f.to)
            if recipient is None:
                conn.send_frame(
                    Error(code=ErrorCode.NO_SUCH_NICK, message=f"no user named {f.to}", ref=f.id)
                )
                return
            op = partial(
                writes.add_message,
                kind="private",
                body=f.text,
                now=now,
                sender_id=conn.user_id,
                recipient_id=recipient.id,
                client_msg_id=f.id,
            )
        self.store.submit(op, partial(self._committed, conn, f))

    def _committed(self, conn: Connection, f: Send, result: Any, exc: BaseException | None) -> None:
        # Runs on the writer thread, after COMMIT (or its failure).
        if exc is not None:
            if isinstance(exc, StoreError):
                log.error("could not store a message from %s: %s", conn.nick, exc)
                message = f"your message was NOT stored ({exc}); it will be retried"
                code = ErrorCode.STORE_FAILED
            elif isinstance(exc, StoreConflict):
                message, code = str(exc), ErrorCode.NOT_IN_ROOM
            else:
                log.error("storing a message failed", exc_info=exc)
                message, code = "internal server error", ErrorCode.INTERNAL
            conn.send_frame(Error(code=code, message=message, ref=f.id))
            return
        msg, duplicate = result
        # Fan out first, then ack: the sender's own copy is queued ahead of the
        # ack on its connection, so a client that says bye right after the ack
        # has already been sent everything.
        if not duplicate:
            self.hub.deliver_message(msg, conn.user_id, f.id)
        conn.send_frame(Ack(ref=f.id, id=msg.id, ts=format_ts(msg.created_at), duplicate=duplicate))

    # --- rooms ----------------------------------------------------------------------------

    def join(self, conn: Connection, f: Join) -> None:
        """join {room}: become a member (creating the room if new)."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        current = self.hub.room_name(uid, f.room)
        if current is not None:
            conn.send_frame(Presence(room=current, online=self.hub.online_in(current), joined=nick))
            return
        now = utcnow()

        def op(s: Any) -> tuple[str, StoredMessage | None]:
            joined = writes.join_room(s, uid, f.room, now)
            canonical = queries.room_exists(s, f.room) or f.room
            if not joined:
                return canonical, None
            msg, _ = writes.add_message(
                s, kind="system", body=f"{nick} joined {canonical}", now=now, room=canonical
            )
            return canonical, msg

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                conn.send_frame(
                    Error(code=ErrorCode.STORE_FAILED, message=f"could not join: {exc}")
                )
                return
            room, msg = result
            self.hub.joined(uid, room)
            if msg is not None:
                self.hub.deliver_message(msg, None, None)
            self.hub.publish_presence(room, joined=nick)

        self.store.submit(op, done)

    def leave(self, conn: Connection, f: Leave) -> None:
        """leave {room}: stop being a member. The default room cannot be left."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        if fold(f.room) == fold(DEFAULT_ROOM):
            conn.send_frame(
                Error(code=ErrorCode.CANNOT_LEAVE, message=f"everyone stays in {DEFAULT_ROOM}")
            )
            return
        room = self.hub.room_name(uid, f.room)
        if room is None:
            conn.send_frame(Error(code=ErrorCode.NOT_IN_ROOM, message=f"you are not in {f.room}"))
            return
        now = utcnow()

        def op(s: Any) -> StoredMessage | None:
            if not writes.leave_room(s, uid, room):
                return None
            msg, _ = writes.add_message(
                s, kind="system", body=f"{nick} left {room}", now=now, room=room
            )
            return msg

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                conn.send_frame(
                    Error(code=ErrorCode.STORE_FAILED, message=f"could not leave: {exc}")
                )
                return
            self.hub.left(uid, room)
            if result is not None:
                self.hub.deliver_message(result, None, None)
            self.hub.publish_presence(room, left=nick)
            # The leaver is no longer in the room, so tell its connections directly.
            self.hub.send_to_user(
                uid, encode(Presence(room=room, online=self.hub.online_in(room), left=nick))
            )

        self.store.submit(op, done)

    def who(self, conn: Connection, f: Who) -> None:
        """who {room?, tag?}: the online members of a room (default: the default room)."""
        room = f.room or DEFAULT_ROOM
        with self.store.read() as s:
            canonical = queries.room_exists(s, room)
        if canonical is None:
            conn.send_frame(Error(code=ErrorCode.NO_SUCH_ROOM, message=f"there is no room {room}"))
            return
        conn.send_frame(Presence(room=canonical, online=self.hub.online_in(canonical), tag=f.tag))

    def rooms(self, conn: Connection, f: ListRooms) -> None:
        """rooms {tag?}: every room with its member count, and whether the user is in it."""
        assert conn.user_id is not None
        with self.store.read() as s:
            infos = queries.list_rooms(s)
        mine = {fold(r) for r in self.hub.rooms_of(conn.user_id)}
        conn.send_frame(
            RoomList(
                rooms=[
                    {"name": r.name, "members": r.members, "joined": fold(r.name) in mine}
                    for r in infos
                ],
                tag=f.tag,
            )
        )

    # --- history and search --------------------------------------------------------------

    def history(self, conn: Connection, f: History) -> None:
        """history {room | with, before?, limit?, tag?}: a page of older messages, oldest first."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        if f.room is not None:
            room = self.hub.room_name(uid, f.room)
            if room is None:
                conn.send_frame(
                    Error(code=ErrorCode.NOT_IN_ROOM, message=f"you are not in {f.room}")
                )
                return
            with self.store.read() as s:
                messages, more = queries.history(s, uid, room=room, before=f.before, limit=f.limit)
            target = room
        else:
            assert f.with_ is not None
            with self.store.read() as s:
                peer = queries.get_user(s, f.with_)
                if peer is None:
                    conn.send_frame(
                        Error(code=ErrorCode.NO_SUCH_NICK, message=f"no user named {f.with_}")
                    )
                    return
                messages, more = queries.history(
                    s, uid, peer=peer.nick, before=f.before, limit=f.limit
                )
            target = peer.nick
        conn.send_bytes(self._batch("history", messages, nick, tag=f.tag, target=target, more=more))

    def search(self, conn: Connection, f: Search) -> None:
        """search {words, before?, limit?, tag?}: visible messages matching, newest first."""
        uid, nick = conn.user_id, conn.nick
        assert uid is not None and nick is not None
        with self.store.read() as s:
            messages, more = queries.search(s, uid, f.words, before=f.before, limit=f.limit)
        conn.send_bytes(self._batch("search", messages, nick, tag=f.tag, more=more))

    # --- keepalive and exit ----------------------------------------------------------------

    def ping(self, conn: Connection, f: Ping) -> None:
        """ping {token?}: answered with pong {token}."""
        conn.send_frame(Pong(token=f.token))

    def pong(self, conn: Connection, f: Pong) -> None:
        """pong {token?}: nothing to do; any frame counts as activity."""

    def bye(self, conn: Connection, f: Bye) -> None:
        """bye {reason?}: end the session gracefully, storing the reason."""
        reason = f"bye: {f.reason}" if f.reason else "bye"
        conn.close_after_flush(reason[:200])


HANDLERS: dict[type[Frame], tuple[Handler, bool]] = {
    # frame type: (handler, requires login)
    Hello: (Commands.hello, False),
    Ping: (Commands.ping, False),
    Pong: (Commands.pong, False),
    Bye: (Commands.bye, False),
    Send: (Commands.send, True),
    Join: (Commands.join, True),
    Leave: (Commands.leave, True),
    Who: (Commands.who, True),
    ListRooms: (Commands.rooms, True),
    History: (Commands.history, True),
    Search: (Commands.search, True),
}
