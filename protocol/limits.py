# protocol/limits.py: the fixed numbers of the wire contract.
#
# These are properties of the protocol, shared by both sides. Operator-tunable
# limits (text length, flood rates, deadlines) live in server.config.ServerConfig
# and may only be *stricter* than what is here.

import re

#: Version agreed in `hello`/`welcome`. Bumped on incompatible changes only.
PROTOCOL_VERSION = 1

#: One frame is one line. 64 KiB is far above any chat text (the server's text
#: limit defaults to 4000 characters, at most 4 bytes each in UTF-8, plus JSON
#: escaping) and small enough that a hostile peer cannot make either side buffer
#: much. A line past this cannot be delimited safely, so it ends the stream.
MAX_LINE_BYTES = 64 * 1024

#: Hard ceiling on message text; the server's configured limit may be lower.
MAX_TEXT_CHARS = 16_000

#: Client-chosen message ids (for acks and de-duplication on resend).
MAX_CLIENT_ID_CHARS = 64

#: A page of history or search results never exceeds this many messages.
MAX_PAGE = 200

#: Nicks: 1 to 24 letters, digits, `_` or `-` (ASCII only, so look-alike
#: Cyrillic/Greek letters cannot impersonate anyone). Unique case-insensitively.
NICK_RE = re.compile(r"[A-Za-z0-9_-]{1,24}")

#: Rooms: `#` then 1 to 32 letters, digits, `_` or `-`. Unique case-insensitively.
ROOM_RE = re.compile(r"#[A-Za-z0-9_-]{1,32}")

#: Every user is in this room; it cannot be left.
DEFAULT_ROOM = "#lobby"

#: Control characters allowed in message text: newline and tab. Everything else
#: below U+0020, DEL, and the C1 range U+0080-U+009F is refused, so a message
#: can never move a terminal's cursor or clear a screen.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def valid_nick(nick: str) -> bool:
    """True if *nick* is a syntactically valid nick."""
    return NICK_RE.fullmatch(nick) is not None


def valid_room(room: str) -> bool:
    """True if *room* is a syntactically valid room name (with its leading `#`)."""
    return ROOM_RE.fullmatch(room) is not None


def has_forbidden_control(text: str) -> bool:
    """True if *text* contains a control character other than newline and tab."""
    return _FORBIDDEN_CONTROL.search(text) is not None


def fold(name: str) -> str:
    """The case-insensitive key of a nick or room name (ASCII lower case)."""
    return name.lower()
