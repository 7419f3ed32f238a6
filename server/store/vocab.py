"""The store's own words: what its columns hold that never goes on the wire.

The words shared with the protocol (message kinds, moderation actions, roles)
live in protocol/vocab.py; these are the server's alone. Each is a StrEnum, so
a member binds, compares and prints as its string, and the CHECK constraints
in models.py are built from the same members.
"""

from __future__ import annotations

from enum import StrEnum


class SanctionKind(StrEnum):
    """What a room_sanctions row is."""

    BAN = "ban"
    MUTE = "mute"


class EndReason(StrEnum):
    """What a session's end is stored as (sessions.end_reason; see server/reasons.py).

    Plain phrases for operators and reports: the log keeps the detailed wording.
    """

    SIGNED_OUT = "signed out"
    SERVER_SHUTDOWN = "server shutdown"
    SERVER_RESTART = "server restart"
    NETWORK_ERROR = "network error"
    CONNECTION_CLOSED = "connection closed"
    TIMED_OUT = "timed out"
    NOT_READING = "not reading"
    FLOODING = "flooding"
    PROTOCOL_ERROR = "protocol error"
    ACCOUNT_CHANGED = "account changed"
    TOO_MANY_CONNECTIONS = "too many connections"
    SERVER_ERROR = "server error"
    #: An end nobody described yet (a bug, a new code path): still no raw text.
    CONNECTION_ENDED = "connection ended"


def sql_in(column: str, vocab: type[StrEnum]) -> str:
    """The SQL condition "*column* holds one of *vocab*'s words", for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(member.value) for member in vocab)})"
