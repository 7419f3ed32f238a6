"""The fixed numbers of the wire contract.

These are properties of the protocol, shared by both sides. Operator-tunable
limits (text length, flood rates, deadlines) live in server.config.ServerConfig
and may only be *stricter* than what is here.
"""

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

#: An end-to-end encrypted message's envelope (printable ASCII JSON, client/e2e/crypto.py).
#: Even all quotes (escaped to two bytes each) it stays under MAX_LINE_BYTES.
MAX_ENVELOPE_CHARS = 30_000

#: The sealed account keys one device sends another while linking (base64).
MAX_LINK_BOX_CHARS = 2_048

#: Client-chosen message ids (for acks and de-duplication on resend).
MAX_CLIENT_ID_CHARS = 64

#: A page of history or search results never exceeds this many messages.
MAX_PAGE = 200

# --- bounds on every other field ---------------------------------------------
#
# Every string and number a peer sends is bounded at decode time, so every
# frame the server echoes back (a `pong` token, a `who` tag) or builds from
# what it was sent is bounded by construction, and nothing unbounded reaches
# the database. Frames.py checks each field against one of these; a violation
# is `bad-frame` unless a more specific code exists (`bad-nick`, `bad-room`,
# `bad-text`, `text-too-long`).

#: Largest message id, `before`, `last_seen`, session id or count: SQLite's
#: INTEGER is a signed 64-bit value, and a bigger number would overflow there
#: (or in any peer that keeps ids in an int64).
MAX_ID = 2**63 - 1

#: Longest integer literal accepted anywhere in a frame, in digits (sign not
#: counted). MAX_ID has 19 digits. JSON allows any length, and Python's int()
#: of a very long literal is slow and past 4300 digits raises ValueError, so
#: longer literals are refused while parsing, before any conversion happens.
MAX_INT_DIGITS = 19

#: `hello.version` / `welcome.version` is a small number: room for every
#: version we could ever agree on, and no more. An in-range version the server
#: does not speak gets `unsupported-version`; an out-of-range one `bad-frame`.
MAX_VERSION = 65535

#: A request `tag` (who, rooms, history, search): echoed in the answer. Clients
#: use short labels; 64 keeps every echo small.
MAX_TAG_CHARS = 64

#: A `ping`/`pong` token: echoed verbatim in the `pong`.
MAX_PING_TOKEN_CHARS = 128

#: A resume token (`hello.token`, `welcome.token`). The server issues 43
#: characters (32 random bytes, URL-safe base64); 128 leaves room to change that.
MAX_RESUME_TOKEN_CHARS = 128

#: `hello.client`, the client's self-description ("parley-gui 0.1"), stored on
#: the session row.
MAX_CLIENT_NAME_CHARS = 100

#: `bye.reason`, stored on the session row.
MAX_REASON_CHARS = 200

#: Search `words`.
MAX_SEARCH_CHARS = 200

#: A password. Long passphrases are welcome; 1024 characters bounds the
#: hashing work and what sits in memory.
MAX_PASSWORD_CHARS = 1024

#: `welcome.server`, the operator's name for the server.
MAX_SERVER_NAME_CHARS = 100

#: `error.code`. Ours are short; a client must accept codes it does not know yet.
MAX_ERROR_CODE_CHARS = 64

#: `error.message` is prose for people. A longer one is cut (not refused) when
#: the frame is built, so a long database error can never make the error frame
#: itself fail.
MAX_ERROR_MESSAGE_CHARS = 1000

#: A timestamp is fixed-width: 2026-11-24T09:30:00.123Z.
TS_CHARS = 24

#: `batch.target`: a room, a nick, or a word such as "latest".
MAX_TARGET_CHARS = 64

#: Most rooms in a list (welcome `rooms`, the `rooms` answer). Chosen so that
#: the longest possible `rooms` answer (each entry at most 90 bytes:
#: a 33-character name, a 19-digit member count) still fits one line: with
#: these caps no valid frame of any type is too long to send.
MAX_ROOMS_LISTED = 700

#: Most entries in one `conversations` frame (the list is paged), and the
#: longest text of the latest message an entry shows (longer texts are cut and
#: the entry says `cut: true`): chosen so that the widest possible page, every
#: field at its longest, still fits one line.
MAX_CONVERSATIONS_LISTED = 32
MAX_PREVIEW_CHARS = 200

#: The most a `conversations` entry's `unread` says: a count at this value means
#: this many or more (clients show "1000+"). Counting stops there, so a login's
#: cost does not grow with how far behind its user is in a busy room.
UNREAD_CAP = 1000

#: Most nicks in a presence `online` list (at most 27 bytes each on the wire).
MAX_ONLINE_LISTED = 2000

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

#: One-line fields (ids, tags, tokens, `client`, `reason`, search words) allow
#: no control character at all, newline and tab included: they end up in log
#: lines, database columns and echoes, where a newline could forge a line.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Lone UTF-16 surrogates (U+D800-U+DFFF). JSON's `\ud800` escape can produce
#: them, but they are not Unicode scalar values: they cannot be encoded as
#: UTF-8, so they would break the database writer and every echo.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def valid_nick(nick: str) -> bool:
    """True if *nick* is a syntactically valid nick."""
    return NICK_RE.fullmatch(nick) is not None


def valid_room(room: str) -> bool:
    """True if *room* is a syntactically valid room name (with its leading `#`)."""
    return ROOM_RE.fullmatch(room) is not None


def has_forbidden_control(text: str) -> bool:
    """True if *text* contains a control character other than newline and tab."""
    return _FORBIDDEN_CONTROL.search(text) is not None


def has_control(text: str) -> bool:
    """True if *text* contains any control character (C0 including newline and tab, DEL, C1)."""
    return _ANY_CONTROL.search(text) is not None


def has_surrogate(text: str) -> bool:
    """True if *text* contains a lone surrogate, which no UTF-8 encoder accepts."""
    # ASCII strings (most ids, tags, names) are answered without a regex scan.
    return not text.isascii() and _SURROGATE.search(text) is not None


def fold(name: str) -> str:
    """The case-insensitive key of a nick or room name (ASCII lower case)."""
    return name.lower()


# --- moderation (protocol/moderation.py) ----------------------------------------

#: A room's topic, shown under its name.
MAX_TOPIC_CHARS = 300

#: Longest timed ban or mute, in minutes (a year); no duration: until lifted.
MAX_SANCTION_MINUTES = 525_600

#: Most moderators (or operators) a `roominfo` frame lists.
MAX_ROLES_LISTED = 500

#: `moderated.message`, the sentence saying what a moderation request did. The
#: server cuts a longer one (a long reason quoted in it) rather than fail the reply.
MAX_MODERATED_CHARS = 500
