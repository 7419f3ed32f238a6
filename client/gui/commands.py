"""What a line typed in the input box means. Pure: it
turns text into an action and never performs it (the app does).

A line that does not start with "/" is a message to the open conversation;
"//" at the start sends a message that begins with one "/". Everything else
starting with "/" is a command from COMMANDS; a mistake comes back as Invalid
with a sentence saying how to use the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley_chat.protocol import valid_nick, valid_room

from . import moderation


@dataclass(frozen=True, slots=True)
class Say:
    """Post *text* to the open conversation (a room, or a private conversation)."""

    text: str


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """`/msg nick text`: send *text* privately to *nick*."""

    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """`/join #room`: join (creating it if new) and open *room*."""

    room: str


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    """`/leave [#room]`: leave *room*, or the open room when None."""

    room: str | None = None


@dataclass(frozen=True, slots=True)
class Who:
    """`/who [#room]`: list who is online in *room* (the open room when None)."""

    room: str | None = None


@dataclass(frozen=True, slots=True)
class SearchMessages:
    """`/search words`: search the messages this user may see."""

    words: str


@dataclass(frozen=True, slots=True)
class Help:
    """`/help`: list the commands."""


@dataclass(frozen=True, slots=True)
class Exit:
    """`/exit`: leave the chat gracefully (the window stays, with a Rejoin button)."""


@dataclass(frozen=True, slots=True)
class Rejoin:
    """`/rejoin`: connect again and replay what was missed."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that could not be understood; *message* says how to use it."""

    message: str


Action = Say | PrivateMessage | JoinRoom | LeaveRoom | Who | SearchMessages | Help | Exit | Rejoin

#: Usage and description of every command, in the order /help lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("/msg nick text", "send a private message to nick"),
    ("/join #room", "join a room (it is created if new) and open it"),
    ("/leave [#room]", "leave the open room (#lobby cannot be left)"),
    ("/who [#room]", "list who is online in the room"),
    ("/search words", "search the messages you can see"),
    ("/exit", "leave the chat; the Rejoin button brings you back"),
    ("/rejoin", "connect again and show what you missed"),
    ("/help", "show this list"),
)

_ALIASES = {"quit": "exit", "part": "leave", "m": "msg", "query": "msg", "j": "join"}


def parse(line: str) -> Action | moderation.ModerationCommand | Invalid | None:
    """The action *line* asks for; None for a blank line."""
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    head, _, rest = line[1:].partition(" ")
    name = _ALIASES.get(head.lower(), head.lower())
    rest = rest.strip()
    if name == "msg":
        nick, _, text = rest.partition(" ")
        if not nick or not text.strip():
            return Invalid("usage: /msg nick text")
        if not valid_nick(nick):
            return Invalid(f"{nick!r} is not a nick (1 to 24 letters, digits, '_' or '-')")
        return PrivateMessage(nick, text.strip())
    if name == "join":
        if not rest or " " in rest:
            return Invalid("usage: /join #room")
        room = _room(rest)
        if room is None:
            return Invalid(f"{rest!r} is not a room name ('#' then 1 to 32 letters or digits)")
        return JoinRoom(room)
    if name in ("leave", "who"):
        if " " in rest:
            return Invalid(f"usage: /{name} [#room]")
        room = None
        if rest:
            room = _room(rest)
            if room is None:
                return Invalid(f"{rest!r} is not a room name")
        return LeaveRoom(room) if name == "leave" else Who(room)
    if name == "search":
        if not rest:
            return Invalid("usage: /search words")
        return SearchMessages(rest)
    if name in ("help", "exit", "rejoin"):
        if rest:
            return Invalid(f"/{name} takes no arguments")
        return {"help": Help, "exit": Exit, "rejoin": Rejoin}[name]()
    try:  # /topic, /kick, /ban, /delete, /edit ... (moderation.py)
        request = moderation.parse(name, rest)
    except moderation.Invalid as exc:
        return Invalid(str(exc))
    if request is not None:
        return request
    return Invalid(f"unknown command /{head}; type /help for the list")


def help_lines() -> list[str]:
    """The /help text, one command a line (moderation's after the others)."""
    listed = (*COMMANDS, *moderation.HELP)
    width = max(len(usage) for usage, _ in listed)
    return [f"{usage.ljust(width)}  {what}" for usage, what in listed]


def _room(text: str) -> str | None:
    room = text if text.startswith("#") else f"#{text}"
    return room if valid_room(room) else None
