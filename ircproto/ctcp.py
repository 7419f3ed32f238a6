"""CTCP in message text and mIRC's formatting codes: what an IRC client puts
inside a PRIVMSG besides words.

An ACTION (`/me waves` in an IRC client) is `\\x01ACTION waves\\x01`; other
CTCP messages (VERSION, PING, TIME ...) are queries between clients, not chat.
Formatting codes (bold, colours, italics ...) are control characters that
plain-text chat cannot show.
"""

from __future__ import annotations

import re

#: CTCP's delimiter.
DELIMITER = "\x01"

_FORMATTING = re.compile(
    r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"  # colour, with its foreground[,background]
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"  # hex colour
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"  # bold, reset, monospace, reverse, italics, strike, underline
)


def parse_ctcp(text: str) -> tuple[str, str] | None:
    """(COMMAND, argument) when *text* is a CTCP message, else None. The closing
    delimiter is optional, as clients differ."""
    if not text.startswith(DELIMITER):
        return None
    body = text[1:].removesuffix(DELIMITER)
    command, _, argument = body.partition(" ")
    return command.upper(), argument


def action(text: str) -> str:
    """*text* as a CTCP ACTION (what an IRC client shows as "* nick text")."""
    return f"{DELIMITER}ACTION {text}{DELIMITER}"


def strip_formatting(text: str) -> str:
    """*text* without mIRC's formatting codes (colours with their numbers)."""
    return _FORMATTING.sub("", text)
