"""Rooms as channels: JOIN, PART, NAMES, WHO, TOPIC, MODE, KICK, LIST.

A parley room is a channel of the same name. Channel operators are the room's
owner, moderators and the server operators among its members (`@`); TOPIC, KICK
and MODE +o/-o/+b/-b go through parley's moderation (server/moderation.py), so
the same ranks decide. The member list is who is online in the room, as in the
parley clients. Joins and leaves write what a parley `join`/`leave` writes.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from parley_chat.ircproto import Message
from parley_chat.ircproto import numerics as n
from parley_chat.protocol import DEFAULT_ROOM, ErrorCode, Presence, encode, fold
from parley_chat.protocol.limits import ROOM_RE
from parley_chat.protocol.moderation import Moderate
from parley_chat.protocol.vocab import Action

from .. import moderation
from ..commands import join_room_op, leave_room_op
from ..store import StoreConflict, queries, utcnow
from ..store import moderation as mstore
from ..store.moderation import Refused
from ..store.records import StoredMessage
from .gateway import REQUEST, Spec

if TYPE_CHECKING:
    from .connection import IrcConnection
    from .gateway import IrcGateway

#: Nicks per 353 line (keeps each line far below 512 bytes).
NAMES_PER_LINE = 12


def _ops(st: mstore.RoomSettings | None) -> set[str]:
    if st is None:
        return set()
    found = {fold(x) for x in (*st.moderators, *st.operators)}
    if st.owner:
        found.add(fold(st.owner))
    return found


def names_lines(gw: IrcGateway, conn: IrcConnection, room: str) -> list[Message]:
    """353 lines and 366 for *room*'s online members."""
    with gw.store.read() as s:
        st = mstore.room_settings(s, room)
    ops = _ops(st)
    full = conn.caps.has("userhost-in-names")
    nicks = [
        ("@" if fold(x) in ops else "") + (gw.mask(x) if full else x)
        for x in gw.hub.online_in(room)
    ]
    kind = "@" if st is not None and st.private else "="
    out = [
        gw.numeric(conn, n.RPL_NAMREPLY, kind, room, " ".join(nicks[i : i + NAMES_PER_LINE]))
        for i in range(0, len(nicks), NAMES_PER_LINE)
    ]
    out.append(gw.numeric(conn, n.RPL_ENDOFNAMES, room, "End of /NAMES list"))
    return out


def topic_lines(gw: IrcGateway, conn: IrcConnection, room: str, *, always: bool) -> list[Message]:
    """332 with the topic; without one, 331 when *always* (a TOPIC query), else nothing."""
    with gw.store.read() as s:
        st = mstore.room_settings(s, room)
    if st is not None and st.topic:
        return [gw.numeric(conn, n.RPL_TOPIC, room, st.topic)]
    return [gw.numeric(conn, n.RPL_NOTOPIC, room, "No topic is set")] if always else []


def join_burst(gw: IrcGateway, conn: IrcConnection, room: str) -> list[Message]:
    """What a client gets when it joins: its JOIN, the topic, the names."""
    assert conn.nick is not None
    return [
        Message("JOIN", (room,), gw.mask(conn.nick)),
        *topic_lines(gw, conn, room, always=False),
        *names_lines(gw, conn, room),
    ]


def join(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """JOIN #a,#b (keys are ignored: parley rooms have none); JOIN 0 parts every channel."""
    if not gw.need_params(conn, msg, 1):
        return
    if msg.params[0] == "0":
        for room in conn.channels():
            _part(gw, conn, room, "Left all channels")
        return
    for name in msg.params[0].split(","):
        if name:
            _join_one(gw, conn, name)


def _join_one(gw: IrcGateway, conn: IrcConnection, name: str) -> None:
    uid, nick = conn.user_id, conn.nick
    assert uid is not None and nick is not None
    if ROOM_RE.fullmatch(name) is None:
        conn.reply(gw.numeric(conn, n.ERR_NOSUCHCHANNEL, name, "No such channel"))
        return
    cmds = gw.commands
    current = gw.hub.room_name(uid, name)
    if current is not None:
        if conn.shows(current) is None:
            conn.show(current)
            conn.reply(*join_burst(gw, conn, current))
        return
    if gw.hub.room_count(uid) >= gw.cfg.max_rooms_per_user:
        conn.reply(
            gw.numeric(conn, n.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
        )
        return
    if not cmds._join_allowed(uid):
        conn.reply(gw.numeric(conn, n.ERR_TOOMANYCHANNELS, name, "Joining too fast; wait a moment"))
        return
    now = utcnow()
    max_rooms = gw.cfg.max_rooms

    def op(s: Any) -> tuple[str, StoredMessage | None]:
        canonical, stored, _settings = join_room_op(s, uid, nick, name, now, max_rooms)
        return canonical, stored

    def done(result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            return
        room, stored = result
        conn.show(room)
        gw.hub.joined(uid, room)
        with gw.hub.batch():
            # The user's other connections learn of it as from a parley join.
            gw.hub.send_to_user(uid, encode(Presence(room=room, joined=nick)), skip=conn)
            if stored is not None:
                gw.hub.deliver_message(stored, None, None)
            gw.hub.publish_presence(room, joined=nick)
        gw.hub.flush_presence()

    try:
        room, _ = gw.commit(op, done)
    except Refused as exc:
        code = n.ERR_BANNEDFROMCHAN if exc.code == ErrorCode.BANNED else n.ERR_INVITEONLYCHAN
        conn.reply(gw.numeric(conn, code, name, exc.message))
        return
    except StoreConflict as exc:
        conn.reply(gw.numeric(conn, n.ERR_TOOMANYCHANNELS, name, str(exc)))
        return
    conn.reply(*join_burst(gw, conn, room))


def part(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """PART #a,#b [reason]."""
    if not gw.need_params(conn, msg, 1):
        return
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in msg.params[0].split(","):
        if name:
            _part(gw, conn, name, reason)


def _part(gw: IrcGateway, conn: IrcConnection, name: str, reason: str) -> None:
    uid, nick = conn.user_id, conn.nick
    assert uid is not None and nick is not None
    room = conn.shows(name)
    if room is None:
        with gw.store.read() as s:
            exists = queries.room_exists(s, name) is not None
        code = n.ERR_NOTONCHANNEL if exists else n.ERR_NOSUCHCHANNEL
        text = "You're not on that channel" if exists else "No such channel"
        conn.reply(gw.numeric(conn, code, name, text))
        return
    params = (room, reason) if reason else (room,)
    if reason:
        gw.set_part_reason(room, nick, reason)
    if fold(room) == fold(DEFAULT_ROOM):
        # Everyone stays in the default room: IRC only stops showing it.
        conn.hide(room)
        conn.reply(Message("PART", params, gw.mask(nick)))
        return
    now = utcnow()

    def op(s: Any) -> StoredMessage | None:
        return leave_room_op(s, uid, nick, room, now)

    def done(result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            return
        conn.hide(room)
        with gw.hub.batch():
            if result is not None:
                gw.hub.deliver_message(result, None, None)
            gw.hub.left(uid, room)
            gw.hub.publish_presence(room, left=nick, extra_user=uid)
        gw.hub.flush_presence()

    gw.commit(op, done)
    conn.reply(Message("PART", params, gw.mask(nick)))


def names(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """NAMES #a[,#b]: the online members; of a channel one may not see, nothing."""
    if not msg.params:
        conn.reply(gw.numeric(conn, n.RPL_ENDOFNAMES, "*", "End of /NAMES list"))
        return
    # Each channel's 353 lines, then one 366 naming what was asked (Modern IRC).
    for name in msg.params[0].split(","):
        room = _visible_room(gw, conn, name) if name else None
        if room is not None:
            conn.reply(*names_lines(gw, conn, room)[:-1])
    conn.reply(gw.numeric(conn, n.RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list"))


def _visible_room(gw: IrcGateway, conn: IrcConnection, name: str) -> str | None:
    assert conn.user_id is not None
    with gw.store.read() as s:
        room = queries.room_exists(s, name)
        if room is not None and not moderation.may_see(s, conn.user_id, room):
            return None
    return room


def who(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """WHO #channel | nick | mask (* and ? wildcards) [%fields[,token]]: 352 lines
    (354 with WHOX fields), then 315."""
    if not msg.params:
        conn.reply(gw.numeric(conn, n.RPL_ENDOFWHO, "*", "End of /WHO list"))
        return
    mask = msg.params[0]
    rows: list[tuple[str, str, bool]] = []  # (channel shown, nick, op)
    if mask.startswith("#"):
        room = _visible_room(gw, conn, mask)
        if room is not None:
            with gw.store.read() as s:
                ops = _ops(mstore.room_settings(s, room))
            rows = [(room, x, fold(x) in ops) for x in gw.hub.online_in(room)]
    elif "*" in mask or "?" in mask:
        # Everyone is +i: a mask finds only those who share a channel with the asker.
        pattern = fold(mask)
        near = {fold(conn.nick or "")}
        for room in conn.channels():
            near.update(fold(x) for x in gw.hub.online_in(room))
        rows = [
            ("*", x, False)
            for x in sorted(gw.hub.online_nicks(), key=fold)
            if fold(x) in near and fnmatch.fnmatchcase(fold(x), pattern)
        ]
    elif gw.hub.is_online(mask):
        rows = [("*", x, False) for x in gw.hub.online_nicks() if fold(x) == fold(mask)]
    whox = msg.params[1] if len(msg.params) > 1 and msg.params[1].startswith("%") else None
    for channel, who_nick, op in rows:
        flags = ("G" if _away(gw, who_nick) else "H") + ("@" if op else "")
        username, realname = gw.idents.get(fold(who_nick), (who_nick, who_nick))
        if whox is not None:
            conn.reply(_whox_line(gw, conn, whox, channel, who_nick, flags, username, realname))
            continue
        conn.reply(
            gw.numeric(
                conn,
                n.RPL_WHOREPLY,
                channel,
                username,
                "parley",
                gw.server_name,
                who_nick,
                flags,
                f"0 {realname}",
            )
        )
    conn.reply(gw.numeric(conn, n.RPL_ENDOFWHO, mask, "End of /WHO list"))


#: WHOX fields in the order of the reply (IRCv3 WHOX).
WHOX_FIELDS = "tcuihsnfdlaor"


def _whox_line(
    gw: IrcGateway,
    conn: IrcConnection,
    spec: str,
    channel: str,
    nick: str,
    flags: str,
    username: str,
    realname: str,
) -> Message:
    """A 354 reply with the fields *spec* (`%fields[,token]`) asks for."""
    fields, _, token = spec[1:].partition(",")
    account = "0" if fold(nick) in gw.guest_claims else nick
    values = {
        "t": token or "0",
        "c": channel,
        "u": username,
        "i": "255.255.255.255",  # addresses are not published
        "h": "parley",
        "s": gw.server_name,
        "n": nick,
        "f": flags,
        "d": "0",
        "l": "0",
        "a": account,
        "o": "n/a",
        "r": realname,
    }
    return gw.numeric(conn, "354", *[values[f] for f in WHOX_FIELDS if f in fields])


def _away(gw: IrcGateway, nick: str) -> bool:
    return fold(nick) in gw.away


def topic(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """TOPIC #a: the topic; TOPIC #a :text sets it (moderators), TOPIC #a : clears it."""
    if not gw.need_params(conn, msg, 1):
        return
    name = msg.params[0]
    room = conn.shows(name)
    if room is None:
        exists = _visible_room(gw, conn, name) is not None
        code = n.ERR_NOTONCHANNEL if exists else n.ERR_NOSUCHCHANNEL
        conn.reply(
            gw.numeric(
                conn, code, name, "You're not on that channel" if exists else "No such channel"
            )
        )
        return
    if len(msg.params) < 2:
        conn.reply(*topic_lines(gw, conn, room, always=True))
        return
    _moderate(gw, conn, Moderate(action=Action.TOPIC, room=room, text=msg.params[1]))


def _moderate(gw: IrcGateway, conn: IrcConnection, f: Moderate) -> None:
    """Run a parley moderation request and wait for its effects (they are this command's)."""
    moderation.moderate(gw.commands, conn, f)
    # Its op was queued first: once a no-op queued after it has been handed over,
    # so has everything the moderation delivered.
    gw.commit(lambda s: None, lambda result, exc: None)


def kick(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """KICK #a nick [reason]."""
    if not gw.need_params(conn, msg, 2):
        return
    room = conn.shows(msg.params[0])
    if room is None:
        conn.reply(
            gw.numeric(conn, n.ERR_NOTONCHANNEL, msg.params[0], "You're not on that channel")
        )
        return
    reason = msg.params[2] if len(msg.params) > 2 and msg.params[2] else None
    for target in msg.params[1].split(","):
        _moderate(gw, conn, Moderate(action=Action.KICK, room=room, nick=target, reason=reason))


_MODE_ACTIONS = {
    ("+", "o"): Action.OP,
    ("-", "o"): Action.DEOP,
    ("+", "b"): Action.BAN,
    ("-", "b"): Action.UNBAN,
}


def mode(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """MODE #a: +nt; MODE #a +o/-o/+b/-b nick: moderation; MODE #a b: the ban list;
    MODE nick: +i."""
    if not gw.need_params(conn, msg, 1):
        return
    target = msg.params[0]
    if not target.startswith("#"):
        if fold(target) != fold(conn.nick or ""):
            conn.reply(gw.numeric(conn, n.ERR_USERSDONTMATCH, "Can't change mode for other users"))
        elif len(msg.params) == 1:
            conn.reply(gw.numeric(conn, n.RPL_UMODEIS, "+i"))
        return
    room = _visible_room(gw, conn, target)
    if room is None:
        conn.reply(gw.numeric(conn, n.ERR_NOSUCHCHANNEL, target, "No such channel"))
        return
    if len(msg.params) == 1:
        conn.reply(gw.numeric(conn, n.RPL_CHANNELMODEIS, room, "+nt"))
        return
    changes = msg.params[1]
    args = list(msg.params[2:])
    sign = "+"
    for ch in changes:
        if ch in "+-":
            sign = ch
            continue
        if ch == "b" and not args:
            _ban_list(gw, conn, room)
            continue
        action = _MODE_ACTIONS.get((sign, ch))
        if action is None:
            if ch not in "nt":
                conn.reply(gw.numeric(conn, n.ERR_UNKNOWNMODE, ch, "is not a mode parley knows"))
            continue
        if not args:
            conn.reply(gw.numeric(conn, n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters"))
            return
        who_nick = args.pop(0).split("!", 1)[0]
        _moderate(gw, conn, Moderate(action=action, room=room, nick=who_nick))


def _ban_list(gw: IrcGateway, conn: IrcConnection, room: str) -> None:
    conn.reply(gw.numeric(conn, n.RPL_ENDOFBANLIST, room, "End of channel ban list"))


def list_(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """LIST: the rooms one may see, with member counts."""
    assert conn.user_id is not None
    with gw.store.read() as s:
        infos = queries.list_rooms(s)
        hidden = moderation.hidden_rooms(s, conn.user_id)
        settings = {st.name: st for st in mstore.rooms_settings(s, [r.name for r in infos])}
    conn.reply(gw.numeric(conn, "321", "Channel", "Users  Name"))
    for r in infos:
        if fold(r.name) in hidden:
            continue
        st = settings.get(r.name)
        conn.reply(
            gw.numeric(conn, "322", r.name, str(r.members), (st.topic if st else None) or "")
        )
    conn.reply(gw.numeric(conn, "323", "End of /LIST"))


COMMANDS: dict[str, Spec] = {
    "JOIN": Spec(join, True, REQUEST),
    "PART": Spec(part, True, REQUEST),
    "NAMES": Spec(names, True, REQUEST),
    "WHO": Spec(who, True, REQUEST),
    "TOPIC": Spec(topic, True, REQUEST),
    "KICK": Spec(kick, True, REQUEST),
    "MODE": Spec(mode, True, REQUEST),
    "LIST": Spec(list_, True, REQUEST),
}
