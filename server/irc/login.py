"""Registration on the IRC listener: CAP, NICK, USER, PASS, AUTHENTICATE (SASL
PLAIN), REGISTER (draft/account-registration), and the start of a session.

The nick is the account's: whatever NICK said, the session gets the nick of the
account that logged in. Logins go through parley's own checks
(Commands._authenticate: the same hasher on the login pool, the same throttles);
guests (temporary nicks without a password) only when irc_guests is on. A
client without draft/chathistory gets what this device missed since its last
session, through the replay's cap and de-duplication (Connection.send_replay).
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from parley_chat.ircproto import Message, SaslError, isupport_lines, parse_plain
from parley_chat.ircproto import numerics as n
from parley_chat.protocol import (
    DEFAULT_ROOM,
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    fold,
    message_wire,
)
from parley_chat.protocol.limits import NICK_RE

from .. import moderation
from ..auth import new_token
from ..commands import WRITE_WAIT, LoginFailed
from ..hub import message_frame
from ..store import StoreConflict, StoreError, bus_reads, queries, utcnow, writes
from ..store.models import REASON_CHARS
from ..store.records import UserRecord
from .gateway import LOGIN, LOOP, Spec

if TYPE_CHECKING:
    from .connection import IrcConnection
    from .gateway import IrcGateway

log = logging.getLogger("parley.irc")

#: The password hash of a guest account: no password ever matches it.
GUEST_HASH = "guest"
#: The server setting that keeps where each IRC device stopped reading.
SEEN_KEY = "irc.seen.{user}.{device}"


def _device(account: str) -> tuple[str, str]:
    """('alice', 'phone') for 'alice@phone' (Ergo's device syntax); device 'default'.

    A device name keeps letters, digits, `_`, `-` and `.`, at most 24 of them (it is
    part of a server setting's key)."""
    name, _, device = account.partition("@")
    return name, re.sub(r"[^A-Za-z0-9_.-]", "", device)[:24] or "default"


# --- CAP ---------------------------------------------------------------------------


def cap(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """CAP LS [302] / REQ :caps / LIST / END."""
    if not gw.need_params(conn, msg, 1):
        return
    sub = msg.params[0].upper()
    target = conn.nick or conn.wanted_nick or "*"
    src = gw.server_name
    if sub == "LS":
        for params in conn.caps.ls(msg.params[1] if len(msg.params) > 1 else None):
            conn.reply(Message("CAP", (target, *params), src))
    elif sub == "REQ":
        conn.reply(
            Message(
                "CAP", (target, *conn.caps.req(msg.params[1] if len(msg.params) > 1 else "")), src
            )
        )
    elif sub == "LIST":
        conn.reply(Message("CAP", (target, *conn.caps.list()), src))
    elif sub == "END":
        if not conn.logged_in:
            conn.caps.end()
            maybe_register(gw, conn)
    else:
        conn.reply(gw.numeric(conn, "410", msg.params[0], "Invalid CAP command"))


# --- NICK, USER, PASS -----------------------------------------------------------------


def nick(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """NICK: before registration, the nick asked for; afterwards nicks are the accounts'."""
    if not msg.params or not msg.params[0]:
        conn.reply(gw.numeric(conn, n.ERR_NONICKNAMEGIVEN, "No nickname given"))
        return
    wanted = msg.params[0]
    if NICK_RE.fullmatch(wanted) is None:
        conn.reply(gw.numeric(conn, n.ERR_ERRONEUSNICKNAME, wanted, "Erroneous nickname"))
        return
    if conn.logged_in:
        if fold(wanted) != fold(conn.nick or ""):
            conn.reply(
                gw.fail("NICK", "CANNOT_CHANGE_NICK", wanted, "your nick is your account's name")
            )
        return
    conn.wanted_nick = wanted
    maybe_register(gw, conn)


def user(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """USER user 0 * :realname."""
    if conn.logged_in:
        conn.reply(gw.numeric(conn, n.ERR_ALREADYREGISTERED, "You may not reregister"))
        return
    if not gw.need_params(conn, msg, 4):
        return
    conn.username = msg.params[0][:24]
    conn.realname = msg.params[3][:100]
    conn.user_given = True
    maybe_register(gw, conn)


def pass_(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """PASS account:password (or PASS password with the account as NICK)."""
    if conn.logged_in:
        conn.reply(gw.numeric(conn, n.ERR_ALREADYREGISTERED, "You may not reregister"))
        return
    if gw.need_params(conn, msg, 1):
        conn.password = msg.params[0]


def maybe_register(gw: IrcGateway, conn: IrcConnection) -> None:
    """Finish the registration once NICK and USER are in and CAP negotiation is over."""
    if conn.logged_in or conn.registering or conn.caps.negotiating:
        return
    if conn.wanted_nick is None or not conn.user_given:
        return
    conn.registering = True

    def job() -> None:
        conn.begin_command(None)
        try:
            _register(gw, conn)
        except Exception:
            log.exception("IRC registration of %s failed", conn.peer)
            _refuse(gw, conn, "the server could not log you in")
        finally:
            conn.end_command()
            conn.end_job()

    conn.later(lambda: gw.submit(conn, LOGIN, job))


def _refuse(gw: IrcGateway, conn: IrcConnection, why: str) -> None:
    """464 and ERROR with *why*, then close (after what the command gathered)."""
    conn.end_command()
    conn.reply(
        gw.numeric(conn, n.ERR_PASSWDMISMATCH, why), Message("ERROR", (f"Closing link: {why}",))
    )
    conn.close_soon(f"login refused: {why}"[:REASON_CHARS])


def _register(gw: IrcGateway, conn: IrcConnection) -> None:
    assert conn.wanted_nick is not None
    if conn.account is not None:
        account, device = conn.account
    elif conn.password is not None:
        name, sep, password = conn.password.partition(":")
        if not sep:
            name, password = conn.wanted_nick, conn.password
        name, device = _device(name)
        try:
            account = _check(gw, conn, name, password)
        except LoginFailed as exc:
            _refuse(gw, conn, exc.message)
            return
    elif gw.cfg.irc_guests:
        guest = _guest(gw, conn, conn.wanted_nick)
        if guest is None:
            return
        account, device = guest, "default"
    else:
        _refuse(
            gw,
            conn,
            "this server needs an account: log in with SASL PLAIN or PASS account:password",
        )
        return
    with gw.store.read() as s:
        locked = moderation.login_refusal(s, account.id)
    if locked is not None:
        _refuse(gw, conn, locked)
        return
    start_session(gw, conn, account, device)


def _check(gw: IrcGateway, conn: IrcConnection, name: str, password: str) -> UserRecord:
    """The account for *name* and *password*, through parley's own login checks."""
    if not password:
        raise LoginFailed(ErrorCode.AUTH_FAILED, "no password given")
    hello = Hello(version=PROTOCOL_VERSION, nick=name, password=password)
    user, _ = gw.commands._authenticate(conn, hello)
    return user


def _guest(gw: IrcGateway, conn: IrcConnection, wanted: str) -> UserRecord | None:
    """A new guest account for *wanted*. A guest account nobody is using is removed
    first (its messages stay with it): a guest never sees an earlier guest's history."""
    key = fold(wanted)
    with gw._recent_lock:
        claimed = key in gw.guest_claims
        if not claimed:
            gw.guest_claims.add(key)
    with gw.store.read() as s:
        found = queries.get_user(s, wanted)
    if claimed or (
        found is not None and (found.password_hash != GUEST_HASH or gw.hub.connections_of(found.id))
    ):
        if not claimed:
            gw.guest_claims.discard(key)
        conn.reply(gw.numeric(conn, n.ERR_NICKNAMEINUSE, wanted, "Nickname is already in use"))
        conn.registering = False
        conn.wanted_nick = None
        return None
    conn.guest_claim = key
    now = utcnow()

    def op(s: Any) -> UserRecord:
        old = queries.get_user(s, wanted)
        if old is not None:
            if old.password_hash != GUEST_HASH:
                raise StoreConflict(f"{wanted} is taken")
            writes.delete_user(s, old.nick, now)
        return writes.create_user(s, nick=wanted, password_hash=GUEST_HASH, now=now)

    try:
        user: UserRecord = gw.store.submit(op).result(WRITE_WAIT)
    except StoreConflict:
        gw.guest_claims.discard(key)
        conn.guest_claim = None
        conn.reply(gw.numeric(conn, n.ERR_NICKNAMEINUSE, wanted, "Nickname is already in use"))
        conn.registering = False
        conn.wanted_nick = None
        return None
    conn.guest = True
    return user


def forget_guest(gw: IrcGateway, conn: IrcConnection) -> None:
    """A guest's last connection ended: remove the account, freeing its nick."""
    if conn.guest_claim is not None:
        with gw._recent_lock:
            gw.guest_claims.discard(conn.guest_claim)
        conn.guest_claim = None
    if not conn.guest or conn.user_id is None or conn.nick is None:
        return
    if gw.hub.connections_of(conn.user_id):
        return
    nick, uid, now = conn.nick, conn.user_id, utcnow()

    def op(s: Any) -> None:
        old = queries.get_user(s, nick)
        # By id: the nick may be a newer guest's already.
        if old is not None and old.id == uid and old.password_hash == GUEST_HASH:
            writes.delete_user(s, old.nick, now)

    gw.store.submit(op)


# --- SASL and REGISTER ---------------------------------------------------------------------


def authenticate(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """AUTHENTICATE PLAIN, then the base64 payload in 400-byte chunks; * aborts."""
    if not gw.need_params(conn, msg, 1):
        return
    if conn.logged_in:
        # The session's account is fixed at registration (the nick is the account's).
        conn.reply(gw.numeric(conn, n.ERR_ALREADYREGISTERED, "You may not reregister"))
        return
    if conn.account is not None:
        conn.reply(gw.numeric(conn, n.ERR_SASLALREADY, "You have already authenticated"))
        return
    arg = msg.params[0]
    if arg == "*":
        conn.sasl_mech = None
        conn.sasl.parts.clear()
        conn.reply(gw.numeric(conn, n.ERR_SASLABORTED, "SASL authentication aborted"))
        return
    if conn.sasl_mech is None:
        if arg.upper() != "PLAIN":
            conn.reply(
                gw.numeric(conn, n.RPL_SASLMECHS, "PLAIN", "are the available SASL mechanisms"),
                gw.numeric(conn, n.ERR_SASLFAIL, "SASL authentication failed"),
            )
            return
        conn.sasl_mech = "PLAIN"
        conn.reply(Message("AUTHENTICATE", ("+",)))
        return
    try:
        payload = conn.sasl.feed(arg)
    except SaslError as exc:
        conn.sasl_mech = None
        code = n.ERR_SASLTOOLONG if exc.too_long else n.ERR_SASLFAIL
        conn.reply(gw.numeric(conn, code, f"SASL authentication failed: {exc}"))
        return
    if payload is None:
        return
    conn.sasl_mech = None

    def job() -> None:
        conn.begin_command(None)
        try:
            _sasl_plain(gw, conn, payload)
        finally:
            conn.end_command()
            conn.end_job()

    conn.later(lambda: gw.submit(conn, LOGIN, job))


def _sasl_plain(gw: IrcGateway, conn: IrcConnection, payload: bytes) -> None:
    try:
        authzid, authcid, password = parse_plain(payload)
        name, device = _device(authcid)
        if authzid and fold(_device(authzid)[0]) != fold(name):
            raise LoginFailed(ErrorCode.AUTH_FAILED, "authorization identity differs")
        account = _check(gw, conn, name, password)
    except (SaslError, LoginFailed) as exc:
        why = exc.message if isinstance(exc, LoginFailed) else str(exc)
        conn.reply(gw.numeric(conn, n.ERR_SASLFAIL, f"SASL authentication failed: {why}"))
        return
    conn.account = (account, device)
    me = conn.wanted_nick or account.nick
    conn.reply(
        gw.numeric(
            conn,
            n.RPL_LOGGEDIN,
            gw.mask(me),
            account.nick,
            f"You are now logged in as {account.nick}",
        ),
        gw.numeric(conn, n.RPL_SASLSUCCESS, "SASL authentication successful"),
    )


def register(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """REGISTER <account|*> <email|*> <password> (draft/account-registration)."""
    if conn.logged_in or conn.account is not None:
        conn.reply(gw.fail("REGISTER", "ALREADY_AUTHENTICATED", "*", "You are already logged in"))
        return
    if len(msg.params) < 3:
        conn.reply(
            gw.fail("REGISTER", "INVALID_PARAMS", "*", "REGISTER <account> <email> <password>")
        )
        return
    name = conn.wanted_nick if msg.params[0] == "*" else msg.params[0]
    password = msg.params[2]
    if name is None or NICK_RE.fullmatch(name) is None:
        conn.reply(
            gw.fail("REGISTER", "BAD_ACCOUNT_NAME", name or "*", "That account name is not valid")
        )
        return
    if not gw.registration_open():
        conn.reply(gw.fail("REGISTER", "DISALLOWED", name, "Registration is closed on this server"))
        return
    with gw.store.read() as s:
        found = queries.get_user(s, name)
    if (
        found is not None
        and found.password_hash == GUEST_HASH
        and not gw.hub.connections_of(found.id)
    ):
        # A guest's nick, nobody using it: the guest account goes (with its history).
        gw.store.submit(partial(writes.delete_user, nick=found.nick, now=utcnow())).result(
            WRITE_WAIT
        )
    elif found is not None:
        conn.reply(gw.fail("REGISTER", "ACCOUNT_EXISTS", name, "That account already exists"))
        return
    hello = Hello(version=PROTOCOL_VERSION, nick=name, password=password, register=True)
    try:
        account, _ = gw.commands._authenticate(conn, hello)
    except LoginFailed as exc:
        conn.reply(gw.fail("REGISTER", "DISALLOWED", name, exc.message))
        return
    conn.account = (account, "default")
    conn.reply(Message("REGISTER", ("SUCCESS", account.nick, "Account created"), gw.server_name))


# --- the session ---------------------------------------------------------------------------


def start_session(gw: IrcGateway, conn: IrcConnection, user: UserRecord, device: str) -> None:
    """Open the session: welcome, ISUPPORT, channels, and the replay of what this device missed."""
    cfg = gw.cfg
    now = utcnow()
    _token, hashed = new_token()
    login = gw.store.record_login(
        user_id=user.id,
        peer=conn.peer,
        client="irc",
        token_hash=hashed,
        now=now,
        expires_at=now + timedelta(seconds=60),  # IRC clients never resume with a token
    )
    try:
        login.stored.result(WRITE_WAIT)
    except (StoreError, StoreConflict, FutureTimeout) as exc:
        log.warning("%s: session %d not recorded yet: %s", conn.peer, login.session_id, exc)
    conn.device = device
    with gw.store.read() as s:
        rooms = queries.rooms_of(s, user.id)
        seen = queries.get_setting(s, SEEN_KEY.format(user=user.id, device=device))
        newest = bus_reads.max_message_id(s)
    conn.set_nick(user.nick)
    conn.wanted_nick = user.nick
    gw.idents[fold(user.nick)] = (conn.username, conn.realname or user.nick)
    for room in rooms:
        if cfg.irc_show_lobby or fold(room) != fold(DEFAULT_ROOM):
            conn.show(room)
    conn.hold_live()
    conn.user_id, conn.nick, conn.session_id = user.id, user.nick, login.session_id
    first = gw.hub.attach(conn, user.id, user.nick, rooms)
    conn.registering = False
    conn.reply(*welcome(gw, conn))
    from .channels import join_burst

    for room in conn.channels():
        conn.reply(*join_burst(gw, conn, room))
    parts: list[bytes] = []
    up_to = 0
    replayed = 0
    if not conn.caps.has("draft/chathistory") and seen is not None and seen.isdecimal():
        with gw.store.read() as s:
            messages, _gap = queries.replay_after(s, user.id, int(seen), cfg.replay_cap)
        lines: list[bytes] = []
        from parley_chat.ircproto import encode

        for m in messages:
            wire = message_wire(message_frame(m))
            for out, _own in conn.renderer.message(wire, replay=True):
                lines.append(encode(out))
        budget = cfg.replay_max_bytes
        kept: list[bytes] = []
        for line in reversed(lines):  # the newest are kept within the budget
            if len(line) > budget:
                break
            budget -= len(line)
            kept.append(line)
        parts = [b"".join(reversed(kept))] if kept else []
        up_to = max((m.id for m in messages), default=0)
        replayed = len(messages)
    conn.baseline = max(int(seen) if seen and seen.isdecimal() else 0, newest)
    conn.end_command()  # the welcome goes out before the replay
    conn.send_replay(parts, up_to)
    with gw.store.read() as s:
        gw.commands.mutes.load_once(s, now)
    log.info(
        "%s logged in on IRC as %s (device %s, session %d, %d replayed)",
        conn.peer,
        user.nick,
        device,
        login.session_id,
        replayed,
    )
    if first:
        with gw.hub.batch():
            for room in rooms:
                gw.hub.publish_presence(room, joined=user.nick)
        gw.hub.flush_presence()


def welcome(gw: IrcGateway, conn: IrcConnection) -> list[Message]:
    """001-005 and the (absent) MOTD."""
    nick = conn.nick or "*"
    out = [
        gw.numeric(conn, n.RPL_WELCOME, f"Welcome to the {gw.cfg.server_name} IRC gateway, {nick}"),
        gw.numeric(conn, n.RPL_YOURHOST, f"Your host is {gw.server_name}, running parley"),
        gw.numeric(conn, n.RPL_CREATED, "This server is a parley chat server"),
        gw.numeric(conn, n.RPL_MYINFO, gw.server_name, "parley", "i", "bnot"),
    ]
    out += [gw.numeric(conn, n.RPL_ISUPPORT, *p) for p in isupport_lines(gw.isupport())]
    out.append(gw.numeric(conn, n.ERR_NOMOTD, "MOTD File is missing"))
    return out


def finished(gw: IrcGateway, conn: IrcConnection) -> None:
    """The connection ended: remember where this device stopped reading."""
    if conn.user_id is None or conn.guest:  # a guest's account goes with it
        return
    last = max(conn.renderer.last_id, conn.baseline)
    key = SEEN_KEY.format(user=conn.user_id, device=conn.device)
    gw.store.submit_bookkeeping(lambda s: writes.set_setting(s, key, str(last)), what="irc_seen")


# --- keepalive and exit ----------------------------------------------------------------------


def ping(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """PING token: PONG server token."""
    if not msg.params:
        conn.reply(gw.numeric(conn, n.ERR_NEEDMOREPARAMS, "PING", "Not enough parameters"))
        return
    conn.reply(Message("PONG", (gw.server_name, msg.params[0]), gw.server_name))


def pong(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """PONG: any line counts as activity."""


def quit_(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """QUIT [reason]: ERROR, then close."""
    reason = msg.params[0] if msg.params else "Client Quit"
    conn.reply(Message("ERROR", (f"Closing link: Quit: {reason}",)))
    conn.end_command()
    conn.close_soon(f"quit: {reason}"[:REASON_CHARS])
    uid, nick = conn.user_id, conn.nick
    if uid is None or nick is None:
        return
    # Gone now, as IRC users expect (not once the close has lingered): the channels
    # hear the QUIT at once if this was the user's last connection.
    gw.set_quit_reason(nick, reason)
    rooms = gw.hub.detach(conn, uid)
    if rooms:
        with gw.hub.batch():
            for room in rooms:
                gw.hub.publish_presence(room, left=nick)
        gw.hub.flush_presence()
    forget_guest(gw, conn)  # a guest's nick is free from now


COMMANDS: dict[str, Spec] = {
    "CAP": Spec(cap, False, LOOP),
    "NICK": Spec(nick, False, LOOP),
    "USER": Spec(user, False, LOOP),
    "PASS": Spec(pass_, False, LOOP),
    "AUTHENTICATE": Spec(authenticate, False, LOOP),
    "REGISTER": Spec(register, False, LOGIN),
    "PING": Spec(ping, False, LOOP),
    "PONG": Spec(pong, False, LOOP),
    "QUIT": Spec(quit_, False, LOOP),
}
