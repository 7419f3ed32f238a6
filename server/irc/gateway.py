"""IrcGateway: the IRC listener's command dispatch, capabilities and ISUPPORT.

One gateway per server, sharing the server's store, hub, hasher, worker pools
and parley command handlers (server/commands.py). Each IRC line is parsed on
the connection's I/O loop; commands that only touch memory answer there, the
others run on a worker pool as the connection's one job, so an I/O loop never
waits for the database and a connection's answers keep its commands' order.
The handlers live in login.py (registration, CAP, SASL), channels.py (JOIN,
PART, NAMES, WHO, TOPIC, MODE, KICK), chat.py (PRIVMSG, NOTICE, AWAY, ...) and
history.py (CHATHISTORY).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parley_chat.ircproto import BadEncoding, Message, ParseError, TooLong, parse
from parley_chat.ircproto import numerics as n
from parley_chat.protocol import Error, ErrorCode, LocalProtocolError, fold
from parley_chat.protocol.limits import MAX_TOPIC_CHARS

from ..auth import PasswordHasher
from ..commands import WRITE_WAIT, Commands
from ..config import ServerConfig
from ..hub import Hub
from ..store import Store, StoreError
from ..workers import WorkerPool
from .connection import IrcConnection

log = logging.getLogger("parley.irc")

#: Messages CHATHISTORY returns at most per request (ISUPPORT CHATHISTORY).
CHATHISTORY_MAX = 1000
#: The host part of every user's mask (parley does not publish addresses).
USER_HOST = "parley"
#: How many recent NOTICE ids and PART/QUIT reasons are remembered.
RECENT_LIMIT = 10_000

Handler = Callable[["IrcGateway", IrcConnection, Message], None]
LOOP, LOGIN, REQUEST = "loop", "login", "request"


@dataclass(frozen=True, slots=True)
class Spec:
    """A command: its handler, whether it needs a finished registration, where it runs."""

    handler: Handler
    registered: bool
    runs_on: str


#: Parley error codes as IRC numerics (for refusals from the shared handlers).
ERROR_NUMERICS: dict[str, str] = {
    ErrorCode.NOT_PERMITTED: n.ERR_CHANOPRIVSNEEDED,
    ErrorCode.NOT_IN_ROOM: n.ERR_NOTONCHANNEL,
    ErrorCode.NO_SUCH_ROOM: n.ERR_NOSUCHCHANNEL,
    ErrorCode.NO_SUCH_NICK: n.ERR_NOSUCHNICK,
    ErrorCode.BANNED: n.ERR_BANNEDFROMCHAN,
    ErrorCode.INVITE_ONLY: n.ERR_INVITEONLYCHAN,
    ErrorCode.TOO_MANY_ROOMS: n.ERR_TOOMANYCHANNELS,
    ErrorCode.MUTED: n.ERR_CANNOTSENDTOCHAN,
}


class IrcGateway:
    """The IRC side of one ChatServer (see the module docstring)."""

    def __init__(
        self,
        cfg: ServerConfig,
        commands: Commands,
        *,
        login_pool: WorkerPool,
        request_pool: WorkerPool,
    ) -> None:
        """A gateway over *commands*' store, hub and hasher."""
        self.cfg = cfg
        self.commands = commands
        self.store: Store = commands.store
        self.hub: Hub = commands.hub
        self.hasher: PasswordHasher = commands.hasher
        self._pools = {LOGIN: login_pool, REQUEST: request_pool}
        self.server_name = re.sub(r"[^A-Za-z0-9.-]", "-", cfg.server_name) or "parley"
        if "." not in self.server_name:
            self.server_name += ".irc"  # a server name with a dot cannot be taken for a nick
        self._batch_ids = itertools.count(1)
        self.away: dict[str, str] = {}  # fold(nick) -> away message (IRC users only)
        #: fold(nick) -> (username, realname) that user's last IRC login gave.
        self.idents: dict[str, tuple[str, str]] = {}
        # Recent words for events parley does not store: message ids sent as NOTICE,
        # PART and QUIT reasons. Bounded; a restart forgets them (docs/irc.md).
        self._notices: OrderedDict[int, None] = OrderedDict()
        self._parts: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._quits: OrderedDict[str, str] = OrderedDict()
        self._recent_lock = threading.Lock()
        #: fold()ed nicks of guests logged in or logging in (two at once cannot take one).
        self.guest_claims: set[str] = set()
        from . import channels, chat, history, login

        self.handlers: dict[str, Spec] = {}
        for module in (login, channels, chat, history):
            self.handlers.update(module.COMMANDS)

    # --- what the server offers ------------------------------------------------------

    def registration_open(self) -> bool:
        """Whether accounts may be created (the operator's database setting wins)."""
        try:
            return self.commands._registration_open()
        except StoreError:
            return False

    def capabilities(self) -> dict[str, str]:
        """The capabilities offered (name -> value)."""
        caps = {
            "batch": "",
            "cap-notify": "",
            "draft/chathistory": "",
            "echo-message": "",
            "labeled-response": "",
            "message-tags": "",
            "multi-prefix": "",
            "sasl": "PLAIN",
            "server-time": "",
            "userhost-in-names": "",
            "draft/account-registration": "before-connect",
        }
        return caps

    def isupport(self) -> dict[str, str]:
        """The ISUPPORT (005) tokens."""
        return {
            "AWAYLEN": "200",
            "CASEMAPPING": "ascii",
            "CHANLIMIT": f"#:{self.cfg.max_rooms_per_user}",
            "CHANMODES": "b,,,nt",
            "CHANNELLEN": "33",
            "CHANTYPES": "#",
            "CLIENTTAGDENY": "*",
            "CHATHISTORY": str(CHATHISTORY_MAX),
            "MSGREFTYPES": "msgid,timestamp",
            "NETWORK": self.server_name.split(".")[0],
            "NICKLEN": "24",
            "PREFIX": "(ov)@+",
            "TARGMAX": "PRIVMSG:4,NOTICE:4,JOIN:,PART:,NAMES:,WHO:1",
            "TOPICLEN": str(MAX_TOPIC_CHARS),
            "UTF8ONLY": "",
            "WHOX": "",
            "KICKLEN": "200",
        }

    def mask(self, nick: str) -> str:
        """nick!user@host of a user."""
        ident = self.idents.get(fold(nick))
        return f"{nick}!{ident[0] if ident else nick}@{USER_HOST}"

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        with self._recent_lock:
            table[key] = value
            table.move_to_end(key)
            while len(table) > RECENT_LIMIT:
                table.popitem(last=False)

    def mark_notice(self, message_id: int) -> None:
        """Message *message_id* was sent as a NOTICE: IRC recipients see one."""
        self._remember(self._notices, message_id, None)

    def is_notice(self, message_id: object) -> bool:
        """Whether a message was sent (recently) as a NOTICE."""
        return isinstance(message_id, int) and message_id in self._notices

    def set_part_reason(self, room: str, nick: str, reason: str) -> None:
        """Why *nick* is leaving *room* (for the PART lines of the others)."""
        self._remember(self._parts, (fold(room), fold(nick)), reason)

    def part_reason(self, room: str, nick: str) -> str | None:
        """The reason *nick* gave for leaving *room*, if any."""
        return self._parts.get((fold(room), fold(nick)))

    def set_quit_reason(self, nick: str, reason: str) -> None:
        """The QUIT message of *nick*."""
        self._remember(self._quits, fold(nick), reason)

    def quit_reason(self, nick: str) -> str:
        """The QUIT line's text for *nick*."""
        reason = self._quits.get(fold(nick))
        return f"Quit: {reason}" if reason else "Quit: offline"

    def batch_id(self) -> str:
        """A fresh BATCH reference."""
        return f"b{next(self._batch_ids)}"

    def numeric(self, conn: IrcConnection, code: str, *params: str) -> Message:
        """A numeric reply to *conn* (its nick, or * before registration, as the target)."""
        return Message(code, (conn.nick or conn.wanted_nick or "*", *params), self.server_name)

    def fail(self, command: str, code: str, *context: str) -> Message:
        """A FAIL standard reply; the last of *context* is the description."""
        return Message("FAIL", (command, code, *context), self.server_name)

    def error_reply(self, conn: IrcConnection, err: Error) -> list[Message]:
        """The IRC form of a refusal from a shared (parley) handler."""
        code = ERROR_NUMERICS.get(err.code)
        target = conn.current_target or "*"
        if code is None:
            return [Message("NOTICE", (conn.nick or "*", err.message), self.server_name)]
        return [self.numeric(conn, code, target, err.message)]

    # --- lines in -------------------------------------------------------------------

    def handle(self, conn: IrcConnection, item: Any) -> None:
        """One decoded line (on the connection's I/O loop)."""
        if isinstance(item, TooLong):
            conn.reply(self.numeric(conn, n.ERR_INPUTTOOLONG, "Input line was too long"))
            return
        if isinstance(item, BadEncoding):
            conn.reply(self.fail("*", "INVALID_UTF8", "Message rejected: it is not valid UTF-8"))
            return
        try:
            msg = parse(item)
        except ParseError:
            return
        label = msg.tags.get("label") if conn.caps.has("labeled-response") else None
        spec = self.handlers.get(msg.command)
        if spec is None or (spec.registered and not conn.logged_in):
            if spec is None and conn.logged_in:
                answer = self.numeric(conn, n.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
            else:
                answer = self.numeric(conn, n.ERR_NOTREGISTERED, "You have not registered")
            conn.begin_command(label)
            conn.reply(answer)
            conn.end_command()
            return
        if spec.runs_on == LOOP:
            self._run(spec, conn, msg, label)
            return

        def job() -> None:
            try:
                self._run(spec, conn, msg, label)
            finally:
                conn.end_job()

        self.submit(conn, spec.runs_on, job)

    def submit(self, conn: IrcConnection, pool: str, job: Callable[[], None]) -> None:
        """Run *job* on *pool* as the connection's one job (it must call end_job)."""
        conn.begin_job()
        self._pools[pool].submit(job)

    def _run(self, spec: Spec, conn: IrcConnection, msg: Message, label: str | None) -> None:
        conn.begin_command(label)
        conn.current_target = msg.params[0] if msg.params else None
        try:
            spec.handler(self, conn, msg)
        except LocalProtocolError as exc:
            # A parley frame the client's own words cannot make (a topic over its
            # cap, a nick with a space): their mistake, said as a refusal is.
            conn.reply(*self.error_reply(conn, Error(code=exc.code, message=exc.message)))
        except StoreError as exc:
            log.error("store failure handling %s from %s: %s", msg.command, conn.peer, exc)
            conn.reply(self.fail(msg.command, "DATABASE", f"the server's database failed: {exc}"))
        except Exception:
            log.exception("IRC handler for %s failed", msg.command)
            conn.reply(self.fail(msg.command, "INTERNAL", "the server could not do that"))
        finally:
            conn.end_command()
        for step in conn.take_later():
            step()

    def commit(
        self, op: Callable[[Any], Any], done: Callable[[Any, BaseException | None], None]
    ) -> Any:
        """Run *op* on the store's writer and *done* after COMMIT, and return once what
        *done* delivered is queued on the connections (so a command's echo comes before
        the answer to the next command). Raises what *op* raised."""
        queued = threading.Event()

        def after(result: Any, exc: BaseException | None) -> None:
            try:
                done(result, exc)
            finally:
                self.hub.after_batch(queued.set)

        future = self.store.submit(op, after)
        result = future.result(WRITE_WAIT)
        queued.wait(WRITE_WAIT)
        return result

    def need_params(self, conn: IrcConnection, msg: Message, count: int) -> bool:
        """True if *msg* has *count* parameters; else answers 461 and returns False."""
        if len(msg.params) >= count and all(msg.params[:count]):
            return True
        conn.reply(self.numeric(conn, n.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters"))
        return False
