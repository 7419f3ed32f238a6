"""The slash commands of both clients: one table, one parser, typed commands.

`parse(line, client)` turns a line typed in the terminal client (client/cli.py)
or the desktop client's input box (client/gui/) into a typed command and never
performs it: each client acts on the command in its own way. A line that does
not start with "/" is a message to the current conversation; "//" at the
start sends a message that begins with one "/". A mistake comes back as
`Invalid`, with a sentence saying how to use the command; a name the table does
not know as `UnknownCommand` (an Invalid), so a client may offer it to its
extensions first (the end-to-end /keys and /trust commands).

The table (`COMMANDS`) lists every command once: its names, its usage, what
/help says of it, which clients offer it, and the function that reads its
arguments. A new command is one `Spec` appended to it (or given to `add`)
with its parser; both clients' /help and the parser pick it up. Usage strings
are written with upper-case placeholders (`/msg NICK TEXT`), as the terminal
shows them; the desktop client shows them in lower case (`/msg nick text`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from parley_chat.protocol import (
    EMOTE_PREFIX,
    MAX_ID,
    MAX_PAGE,
    MAX_SEARCH_CHARS,
    valid_nick,
    valid_room,
)
from parley_chat.protocol.limits import MAX_SANCTION_MINUTES
from parley_chat.protocol.vocab import Action


class Client(StrEnum):
    """Which program reads the line (commands differ a little between the two)."""

    TERMINAL = "terminal"
    GUI = "gui"


BOTH = frozenset(Client)
TERMINAL_ONLY = frozenset({Client.TERMINAL})

# --- the commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    """Post *text* to the current conversation (a room, or a private conversation)."""

    text: str


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """`/msg nick text`: send *text* privately to *nick*."""

    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """`/join #room`: join (creating it if new) and talk in *room*."""

    room: str


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    """`/leave [#room]`: leave *room*, or the current room when None."""

    room: str | None = None


@dataclass(frozen=True, slots=True)
class Who:
    """`/who [#room]`: list who is online in *room* (the current room when None)."""

    room: str | None = None


@dataclass(frozen=True, slots=True)
class ListRooms:
    """`/rooms`: every room with its member count."""


@dataclass(frozen=True, slots=True)
class ListConversations:
    """`/conversations` (`/list`): the user's rooms and private conversations."""


@dataclass(frozen=True, slots=True)
class MarkRead:
    """`/read`: mark what was shown as read."""


@dataclass(frozen=True, slots=True)
class ShowHistory:
    """`/history [n]`: the last *limit* messages of the current room (None: the default)."""

    limit: int | None = None


@dataclass(frozen=True, slots=True)
class SearchMessages:
    """`/search words`: search the messages this user may see."""

    words: str


@dataclass(frozen=True, slots=True)
class ToggleIds:
    """`/ids`: show (or hide again) message ids, for /delete and /edit."""


@dataclass(frozen=True, slots=True)
class Help:
    """`/help`: list the commands."""


@dataclass(frozen=True, slots=True)
class Exit:
    """`/exit` (`/quit`): leave the chat gracefully."""


@dataclass(frozen=True, slots=True)
class Rejoin:
    """`/rejoin`: connect again and replay what was missed."""


@dataclass(frozen=True, slots=True)
class Moderate:
    """A moderation request: `action` and the fields of ChatClient.moderate.

    `room` None with `needs_room` True means the current room (the client
    fills it in); `needs_room` False: the action is not about a room.
    """

    action: str
    room: str | None = None
    nick: str | None = None
    message_id: int | None = None
    text: str | None = None
    reason: str | None = None
    minutes: int | None = None
    needs_room: bool = True


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that could not be understood; *message* says how to use it."""

    message: str


@dataclass(frozen=True, slots=True)
class UnknownCommand(Invalid):
    """`/name` is not in the table (for this client); *args* is the rest of the line."""

    name: str = ""
    args: str = ""


Command = (
    Say
    | PrivateMessage
    | JoinRoom
    | LeaveRoom
    | Who
    | ListRooms
    | ListConversations
    | MarkRead
    | ShowHistory
    | SearchMessages
    | ToggleIds
    | Help
    | Exit
    | Rejoin
    | Moderate
)


class Usage(Exception):
    """Raised by a Spec's parser: the arguments are wrong.

    Either *usage* (`/msg NICK TEXT`, shown as "usage: ..." in each client's
    spelling, then *hint*) or a sentence of its own, *message*, shown as is.
    """

    def __init__(self, message: str = "", *, usage: str | None = None, hint: str = "") -> None:
        super().__init__(message or f"usage: {usage}{hint}")
        self.message = message
        self.usage = usage
        self.hint = hint

    def text_for(self, client: Client) -> str:
        """What *client* tells the user."""
        if self.usage is None:
            return self.message
        usage = self.usage.lower() if client is Client.GUI else self.usage
        return f"usage: {usage}{self.hint}"


#: A Spec's parser: (the command's name, its arguments, stripped) -> the command.
ArgParser = Callable[[str, str], Command]


@dataclass(frozen=True, slots=True)
class Spec:
    """One slash command: how it is written, what /help says, how its arguments read.

    `names[0]` is the name /help shows; the others are aliases. `help_gui`
    replaces `help` in the desktop client when the two clients differ.
    `section` groups /help: "chat" or "moderation".
    """

    names: tuple[str, ...]
    usage: str
    help: str
    parse: ArgParser
    clients: frozenset[Client] = BOTH
    section: str = "chat"
    help_gui: str | None = None

    def usage_for(self, client: Client) -> str:
        """The usage as *client* shows it (lower-case placeholders in the desktop client)."""
        return self.usage.lower() if client is Client.GUI else self.usage

    def help_for(self, client: Client) -> str:
        """What /help says of the command in *client*."""
        return self.help_gui if client is Client.GUI and self.help_gui else self.help


# --- argument parsers -----------------------------------------------------------------------

_DURATION = re.compile(r"^(\d{1,7})([mhd]?)$")
_UNIT = {"": 1, "m": 1, "h": 60, "d": 1440}


def parse_duration(word: str) -> int | None:
    """Minutes for "30", "30m", "2h" or "7d"; None if *word* is not a duration."""
    m = _DURATION.match(word.lower())
    return int(m.group(1)) * _UNIT[m.group(2)] if m else None


def _room(text: str) -> str:
    room = text if text.startswith("#") else f"#{text}"
    if not valid_room(room):
        raise Usage(f"{text!r} is not a room name ('#' then 1 to 32 letters or digits)")
    return room


def _nick(text: str) -> str:
    if not valid_nick(text):
        raise Usage(f"{text!r} is not a nick (1 to 24 letters, digits, '_' or '-')")
    return text


def _no_args(make: Callable[[], Command]) -> ArgParser:
    def parse(name: str, rest: str) -> Command:
        if rest:
            raise Usage(f"/{name} takes no arguments")
        return make()

    return parse


def _msg(name: str, rest: str) -> Command:
    nick, _, text = rest.partition(" ")
    if not nick or not text.strip():
        raise Usage(usage="/msg NICK TEXT")
    return PrivateMessage(_nick(nick), text.strip())


def _join(name: str, rest: str) -> Command:
    if not rest or " " in rest:
        raise Usage(usage="/join #ROOM")
    return JoinRoom(_room(rest))


def _optional_room(make: Callable[[str | None], Command]) -> ArgParser:
    def parse(name: str, rest: str) -> Command:
        if " " in rest:
            raise Usage(usage=f"/{name} [#ROOM]")
        return make(_room(rest) if rest else None)

    return parse


def _history(name: str, rest: str) -> Command:
    if not rest:
        return ShowHistory(None)
    if not rest.isdecimal() or int(rest) < 1:
        raise Usage(usage="/history [N]", hint=" (how many messages: 1 or more)")
    return ShowHistory(min(MAX_PAGE, int(rest)))


def _search(name: str, rest: str) -> Command:
    if not rest:
        raise Usage(usage="/search WORDS")
    if len(rest) > MAX_SEARCH_CHARS:
        raise Usage(usage="/search WORDS", hint=f" (at most {MAX_SEARCH_CHARS} characters)")
    return SearchMessages(rest)


def _split_room(rest: str) -> tuple[str | None, str]:
    """A leading #room (the room the action is about), and the rest."""
    first, _, after = rest.partition(" ")
    if first.startswith("#"):
        return _room(first), after.strip()
    return None, rest


def _topic(name: str, rest: str) -> Command:
    room, text = _split_room(rest)
    return Moderate("topic", room=room, text=text)


def _privacy(name: str, rest: str) -> Command:
    room, extra = _split_room(rest)
    if extra:
        raise Usage(f"/{name} takes no arguments but a room name")
    return Moderate(name, room=room)


def _on_nick(*, timed: bool = False, reason: bool = True, server_wide: bool = False) -> ArgParser:
    """/kick [#room] nick [reason], /ban [#room] nick [duration] [reason], ..."""

    def parse(name: str, rest: str) -> Command:
        room, rest = (None, rest) if server_wide else _split_room(rest)
        nick, _, tail = rest.partition(" ")
        if not nick:
            usage = f"/{name} NICK{' [DURATION]' if timed else ''}{' [REASON]' if reason else ''}"
            raise Usage(usage=usage)
        tail = tail.strip()
        minutes = None
        if timed and tail:
            word, _, after = tail.partition(" ")
            minutes = parse_duration(word)
            if minutes is not None and minutes > MAX_SANCTION_MINUTES:
                raise Usage(
                    f"a /{name} lasts at most a year ({MAX_SANCTION_MINUTES} minutes); "
                    "leave the duration out for one without an end"
                )
            if minutes is not None:
                tail = after.strip()
        return Moderate(
            name,
            room=room,
            nick=_nick(nick),
            reason=(tail or None) if reason else None,
            minutes=minutes or None,
            needs_room=not server_wide,
        )

    return parse


def _message_id(word: str, usage: str) -> int:
    # isdecimal, not isdigit: int() refuses "\u00b2", which isdigit accepts.
    if not word.isdecimal() or not 1 <= int(word) <= MAX_ID:
        raise Usage(usage=usage, hint=" (the id is the message's number)")
    return int(word)


def _delete(name: str, rest: str) -> Command:
    word, _, reason = rest.partition(" ")
    message_id = _message_id(word, "/delete ID [REASON]")
    return Moderate(
        "delete", message_id=message_id, reason=reason.strip() or None, needs_room=False
    )


def _edit(name: str, rest: str) -> Command:
    word, _, text = rest.partition(" ")
    message_id = _message_id(word, "/edit ID TEXT")
    if not text.strip():
        raise Usage(usage="/edit ID TEXT")
    return Moderate("edit", message_id=message_id, text=text, needs_room=False)


def _announce(name: str, rest: str) -> Command:
    if not rest:
        raise Usage(usage="/announce TEXT")
    return Moderate(Action.ANNOUNCE, text=rest, needs_room=False)


def _me(name: str, rest: str) -> Command:
    if not rest.strip():
        raise Usage(usage="/me TEXT")
    return Say(EMOTE_PREFIX + rest.strip())  # the text carries it: protocol.EMOTE_PREFIX


# --- the table ------------------------------------------------------------------------------

_MOD = "moderation"

#: Every command, in the order /help lists them. Append a Spec (or call add) to extend.
COMMANDS: list[Spec] = [
    Spec(("msg", "m", "query"), "/msg NICK TEXT", "private message", _msg),
    Spec(("me",), "/me TEXT", "say what you do: shown as * yournick TEXT", _me),
    Spec(
        ("join", "j"),
        "/join #ROOM",
        "join (or create) a room and talk there",
        _join,
        help_gui="join a room (it is created if new) and open it",
    ),
    Spec(
        ("leave", "part"),
        "/leave [#ROOM]",
        "leave a room (default: the current one; #lobby cannot be left)",
        _optional_room(LeaveRoom),
    ),
    Spec(("who",), "/who [#ROOM]", "who is online in a room", _optional_room(Who)),
    Spec(("rooms",), "/rooms", "all rooms", _no_args(ListRooms), TERMINAL_ONLY),
    Spec(
        ("conversations", "list"),
        "/conversations",
        "your rooms and private conversations, unread counts, the latest message "
        "(/list does the same)",
        _no_args(ListConversations),
        TERMINAL_ONLY,
    ),
    Spec(
        ("read",),
        "/read",
        "mark what was printed as read (on a terminal this happens by itself a moment "
        "after lines are printed)",
        _no_args(MarkRead),
        TERMINAL_ONLY,
    ),
    Spec(
        ("history",),
        "/history [N]",
        "the last N messages of the current room (default 20)",
        _history,
        TERMINAL_ONLY,
    ),
    Spec(("search",), "/search WORDS", "search the messages you can see", _search),
    Spec(
        ("rejoin",),
        "/rejoin",
        "reconnect and replay what you missed",
        _no_args(Rejoin),
        help_gui="connect again and show what you missed",
    ),
    Spec(("help",), "/help", "this list", _no_args(Help)),
    Spec(
        ("exit", "quit"),
        "/exit",
        "leave (end of input does the same)",
        _no_args(Exit),
        help_gui="leave the chat; the Rejoin button brings you back",
    ),
    # Moderation: in the current room unless a #ROOM comes first.
    Spec(("topic",), "/topic [TEXT]", "set (or clear) the room's topic", _topic, section=_MOD),
    Spec(
        ("private",),
        "/private",
        "make the room invite-only (owner)",
        _privacy,
        section=_MOD,
    ),
    Spec(("public",), "/public", "open the room to everyone again (owner)", _privacy, section=_MOD),
    Spec(
        ("invite",),
        "/invite NICK",
        "invite someone to a private room",
        _on_nick(reason=False),
        section=_MOD,
    ),
    Spec(("kick",), "/kick NICK [REASON]", "put someone out of the room", _on_nick(), section=_MOD),
    Spec(
        ("ban",),
        "/ban NICK [DURATION] [REASON]",
        "ban from the room (for minutes, or 30m, 2h, 7d; none: until /unban)",
        _on_nick(timed=True),
        section=_MOD,
    ),
    Spec(("unban",), "/unban NICK", "lift a ban", _on_nick(reason=False), section=_MOD),
    Spec(
        ("mute",),
        "/mute NICK [DURATION] [REASON]",
        "stop someone posting in the room (for as long as /ban)",
        _on_nick(timed=True),
        section=_MOD,
    ),
    Spec(("unmute",), "/unmute NICK", "let them post again", _on_nick(reason=False), section=_MOD),
    Spec(
        ("op",),
        "/op NICK",
        "grant the moderator role (owner)",
        _on_nick(reason=False),
        section=_MOD,
    ),
    Spec(
        ("deop",),
        "/deop NICK",
        "take the moderator role back (owner)",
        _on_nick(reason=False),
        section=_MOD,
    ),
    Spec(
        ("ids",),
        "/ids",
        "show message ids (for /delete and /edit)",
        _no_args(ToggleIds),
        TERMINAL_ONLY,
        section=_MOD,
    ),
    Spec(
        ("delete",),
        "/delete ID [REASON]",
        "delete a message (your own, or any in a room you moderate)",
        _delete,
        section=_MOD,
        help_gui="delete a message (or right-click it)",
    ),
    Spec(
        ("edit",),
        "/edit ID TEXT",
        "replace the text of your own message",
        _edit,
        section=_MOD,
        help_gui="replace the text of your own message (or right-click it)",
    ),
    Spec(
        ("announce",),
        "/announce TEXT",
        "a notice to everyone online (operators)",
        _announce,
        section=_MOD,
    ),
    Spec(
        ("disconnect",),
        "/disconnect NICK [REASON]",
        "put someone off the server (operators)",
        _on_nick(server_wide=True),
        section=_MOD,
    ),
    Spec(
        ("lock",),
        "/lock NICK [REASON]",
        "lock an account (operators)",
        _on_nick(server_wide=True),
        section=_MOD,
    ),
    Spec(
        ("unlock",),
        "/unlock NICK",
        "unlock an account (operators)",
        _on_nick(reason=False, server_wide=True),
        section=_MOD,
    ),
]


def add(spec: Spec) -> None:
    """Add a command to the table (ValueError if one of its names is taken)."""
    taken = {name for s in COMMANDS for name in s.names}
    clash = taken.intersection(spec.names)
    if clash:
        raise ValueError(f"command name(s) already in the table: {', '.join(sorted(clash))}")
    COMMANDS.append(spec)


def find(name: str, client: Client) -> Spec | None:
    """The command called *name* (or an alias of it) in *client*, or None."""
    key = name.lower()
    for spec in COMMANDS:
        if key in spec.names and client in spec.clients:
            return spec
    return None


def parse(line: str, client: Client) -> Command | Invalid | None:
    """The command *line* asks for in *client*; None for a blank line.

    Trailing newlines are ignored; a message keeps its spaces.
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    head, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    spec = find(head, client)
    if spec is None:
        return UnknownCommand(
            f"unknown command /{head}; type /help for the list", name=head.lower(), args=rest
        )
    try:
        return spec.parse(head.lower(), rest)
    except Usage as exc:
        return Invalid(exc.text_for(client))


def help_lines(client: Client, section: str | None = None) -> list[str]:
    """The /help of *client*, one command a line (`usage  what it does`), aligned.

    *section* ("chat", "moderation") keeps one group; None lists all, chat first.
    """
    specs = [
        s for s in COMMANDS if client in s.clients and (section is None or s.section == section)
    ]
    specs.sort(key=lambda s: s.section != "chat")  # stable: table order within a section
    width = max(len(s.usage_for(client)) for s in specs)
    return [f"{s.usage_for(client).ljust(width)}  {s.help_for(client)}" for s in specs]


def help_text(client: Client, section: str, *, indent: int = 2, columns: int = 79) -> str:
    """One section of the /help of *client* as a block, long lines wrapped under their text."""
    lines = help_lines(client, section)
    usage_width = max(
        len(s.usage_for(client)) for s in COMMANDS if client in s.clients and s.section == section
    )
    out: list[str] = []
    for line in lines:
        out.extend(
            textwrap.wrap(
                line,
                width=columns,
                initial_indent=" " * indent,
                subsequent_indent=" " * (indent + usage_width + 2),
                break_on_hyphens=False,
            )
        )
    return "\n".join(out)
