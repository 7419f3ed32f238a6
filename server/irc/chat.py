"""Messages and people: PRIVMSG, NOTICE, TAGMSG, AWAY, WHOIS, MOTD, LUSERS.

PRIVMSG to a channel stores a public message of the room, to a nick a private
message, exactly as a parley `send` does (the sender is the session's account,
the client id is this connection's, so the echo is recognised). NOTICE is
stored the same way: parley has one kind of message, so IRC users receive it
as a PRIVMSG (docs/irc.md). The command ends only once the message is
committed and fanned out, so its echo comes before the answer to the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from parley_chat.ircproto import Message, parse_ctcp, strip_formatting
from parley_chat.ircproto import numerics as n
from parley_chat.protocol import EMOTE_PREFIX, fold, has_forbidden_control
from parley_chat.protocol.vocab import MessageKind

from ..store import IdReused, StoreConflict, StoreError, StoreRejected, queries, utcnow, writes
from .gateway import LOOP, REQUEST, Spec

#: The longest AWAY text kept (as a reason: longer ones are cut, as IRC servers do).
AWAY_CHARS = 200

if TYPE_CHECKING:
    from .connection import IrcConnection
    from .gateway import IrcGateway

#: Targets one PRIVMSG may name (ISUPPORT TARGMAX).
MAX_TARGETS = 4


def privmsg(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """PRIVMSG target[,target] :text."""
    _send(gw, conn, msg, notice=False)


def notice(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """NOTICE target :text (never answered with an error, as IRC wants)."""
    _send(gw, conn, msg, notice=True)


def _send(gw: IrcGateway, conn: IrcConnection, msg: Message, *, notice: bool) -> None:
    if not msg.params or not msg.params[0]:
        if not notice:
            conn.reply(gw.numeric(conn, n.ERR_NORECIPIENT, f"No recipient given ({msg.command})"))
        return
    if len(msg.params) < 2 or msg.params[1] == "":
        if not notice:
            conn.reply(gw.numeric(conn, n.ERR_NOTEXTTOSEND, "No text to send"))
        return
    text = msg.params[1]
    targets = [t for t in msg.params[0].split(",") if t][:MAX_TARGETS]
    for target in targets:
        err = _send_one(gw, conn, target, text, notice)
        if err is not None and not notice:
            conn.reply(err)


def _send_one(
    gw: IrcGateway, conn: IrcConnection, target: str, text: str, notice: bool = False
) -> Message | None:
    uid = conn.user_id
    assert uid is not None
    cfg = gw.cfg
    if len(text) > cfg.max_text_chars:
        return gw.numeric(conn, n.ERR_INPUTTOOLONG, f"Message over {cfg.max_text_chars} characters")
    if any(ch in text for ch in "\0\r\n"):
        return gw.numeric(conn, n.ERR_CANNOTSENDTOCHAN, target, "Control characters in text")
    ctcp = parse_ctcp(text)
    if ctcp is not None:
        command, argument = ctcp
        if command != "ACTION" or not argument.strip():
            return None  # VERSION, PING, TIME...: queries between IRC clients, not chat
        text = EMOTE_PREFIX + argument  # "/me waves", as parley clients write it
    text = strip_formatting(text)  # bold, colours: codes plain-text chat cannot show
    if not text.strip():  # formatting codes and nothing else
        return gw.numeric(conn, n.ERR_NOTEXTTOSEND, "No text to send")
    if has_forbidden_control(text):
        return gw.numeric(conn, n.ERR_CANNOTSENDTOCHAN, target, "Control characters in text")
    now = utcnow()
    ref = conn.new_ref()
    if target.startswith("#"):
        room = gw.hub.room_name(uid, target)
        if room is None or conn.shows(room) is None:
            with gw.store.read() as s:
                exists = queries.room_exists(s, target) is not None
            if not exists:
                return gw.numeric(conn, n.ERR_NOSUCHCHANNEL, target, "No such channel")
            return gw.numeric(
                conn, n.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel (join it)"
            )
        muted = gw.commands.mutes.refusal(uid, room, now)
        if muted is not None:
            return gw.numeric(conn, n.ERR_CANNOTSENDTOCHAN, room, muted)
        op = partial(
            writes.add_message,
            kind=MessageKind.PUBLIC,
            body=text,
            now=now,
            room=room,
            sender_id=uid,
            client_msg_id=ref,
        )
    else:
        with gw.store.read() as s:
            recipient = queries.get_user(s, target)
        if recipient is None or recipient.deleted:
            return gw.numeric(conn, n.ERR_NOSUCHNICK, target, "No such nick/channel")
        op = partial(
            writes.add_message,
            kind=MessageKind.PRIVATE,
            body=text,
            now=now,
            sender_id=uid,
            recipient_id=recipient.id,
            client_msg_id=ref,
        )
        away = gw.away.get(fold(recipient.nick))
        if away is not None and not notice:
            conn.reply(gw.numeric(conn, n.RPL_AWAY, recipient.nick, away))

    def done(result: Any, exc: BaseException | None) -> None:
        if exc is None:
            stored, duplicate = result
            if notice:
                gw.mark_notice(stored.id)
            if not duplicate:
                gw.hub.deliver_message(stored, uid, ref)

    try:
        gw.commit(op, done)
    except (StoreRejected, StoreConflict, IdReused) as exc:
        return gw.numeric(conn, n.ERR_CANNOTSENDTOCHAN, target, f"Not stored: {exc}")
    except StoreError as exc:
        return gw.fail("PRIVMSG", "DATABASE", target, f"Your message was NOT stored: {exc}")
    return None


def tagmsg(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """TAGMSG: client tags (typing...) are not relayed; accepted silently."""


def away(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """AWAY :message marks the user away (for IRC users' WHO, WHOIS and PRIVMSG); AWAY unmarks."""
    key = fold(conn.nick or "")
    if msg.params and msg.params[0]:
        gw.away[key] = msg.params[0][:AWAY_CHARS]
        conn.reply(gw.numeric(conn, n.RPL_NOWAWAY, "You have been marked as being away"))
    else:
        gw.away.pop(key, None)
        conn.reply(gw.numeric(conn, n.RPL_UNAWAY, "You are no longer marked as being away"))


def whois(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """WHOIS nick: 311, 319 (shared channels), 312, 330, 318."""
    if not gw.need_params(conn, msg, 1):
        return
    nick = msg.params[-1]
    with gw.store.read() as s:
        found = queries.get_user(s, nick)
    if found is None or not gw.hub.is_online(found.nick):
        conn.reply(
            gw.numeric(conn, n.ERR_NOSUCHNICK, nick, "No such nick/channel"),
            gw.numeric(conn, n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list"),
        )
        return
    mine = {fold(r) for r in conn.channels()}
    assert conn.user_id is not None
    shared = [r for r in gw.hub.rooms_of(found.id) if fold(r) in mine]
    username, realname = gw.idents.get(fold(found.nick), (found.nick, found.nick))
    conn.reply(gw.numeric(conn, n.RPL_WHOISUSER, found.nick, username, "parley", "*", realname))
    if shared:
        conn.reply(gw.numeric(conn, n.RPL_WHOISCHANNELS, found.nick, " ".join(shared)))
    conn.reply(gw.numeric(conn, n.RPL_WHOISSERVER, found.nick, gw.server_name, "parley"))
    if found.password_hash != "guest":
        conn.reply(gw.numeric(conn, n.RPL_WHOISACCOUNT, found.nick, found.nick, "is logged in as"))
    away_msg = gw.away.get(fold(found.nick))
    if away_msg is not None:
        conn.reply(gw.numeric(conn, n.RPL_AWAY, found.nick, away_msg))
    conn.reply(gw.numeric(conn, n.RPL_ENDOFWHOIS, found.nick, "End of /WHOIS list"))


def time_(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """TIME: the server's time (UTC)."""
    now = datetime.now(UTC)
    conn.reply(gw.numeric(conn, "391", gw.server_name, now.strftime("%A %B %d %Y -- %H:%M:%S UTC")))


def motd(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """MOTD: there is none."""
    conn.reply(gw.numeric(conn, n.ERR_NOMOTD, "MOTD File is missing"))


def lusers(gw: IrcGateway, conn: IrcConnection, msg: Message) -> None:
    """LUSERS: how many are online."""
    count = gw.hub.online_count()
    conn.reply(gw.numeric(conn, n.RPL_LUSERCLIENT, f"There are {count} users on 1 server"))


COMMANDS: dict[str, Spec] = {
    "PRIVMSG": Spec(privmsg, True, REQUEST),
    "NOTICE": Spec(notice, True, REQUEST),
    "TAGMSG": Spec(tagmsg, True, LOOP),
    "AWAY": Spec(away, True, LOOP),
    "WHOIS": Spec(whois, True, REQUEST),
    "MOTD": Spec(motd, True, LOOP),
    "TIME": Spec(time_, True, LOOP),
    "LUSERS": Spec(lusers, True, LOOP),
}
