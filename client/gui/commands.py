"""What a line typed in the desktop client's input box means: client/commands.py for the GUI.

The one slash-command table and parser of both clients lives in
client/commands.py; this module gives the desktop app its view of it (the
commands it offers, usages in lower case) under the names the app uses.
Pure: it turns text into a command and never performs it (the app does).
"""

from __future__ import annotations

from ..commands import (
    Client,
    Command,
    Exit,
    Help,
    Invalid,
    JoinRoom,
    LeaveRoom,
    Moderate,
    PrivateMessage,
    Rejoin,
    Say,
    SearchMessages,
    UnknownCommand,
    Who,
)
from ..commands import help_lines as _help_lines
from ..commands import parse as _parse

__all__ = [
    "Action",
    "Exit",
    "Help",
    "Invalid",
    "JoinRoom",
    "LeaveRoom",
    "Moderate",
    "PrivateMessage",
    "Rejoin",
    "Say",
    "SearchMessages",
    "UnknownCommand",
    "Who",
    "help_lines",
    "parse",
]

#: What parse() may return besides Invalid and None.
Action = Command


def parse(line: str) -> Command | Invalid | None:
    """The command *line* asks for in the desktop client; None for a blank line."""
    return _parse(line, Client.GUI)


def help_lines() -> list[str]:
    """The /help text, one command a line (moderation's after the others)."""
    return _help_lines(Client.GUI)
