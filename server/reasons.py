"""The short, human reason stored for a session's end.

The I/O layers end a connection with whatever words describe it best for
the log, often with an exception's text in them ("network error: EOF
occurred in violation of protocol (_ssl.c:2427)"). The log keeps those; the
sessions table (which operators read and chat_log-style reports show) gets
one of a few plain phrases instead, so no raw exception or OpenSSL text is
ever stored or shown as the reason a user left.
"""

from __future__ import annotations

#: What a session's end is stored as, by the start of the reason the server
#: closed it with (first match wins; see Connection, IOLoop, Commands.bye).
_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("bye", "signed out"),
    ("server shutdown", "server shutdown"),
    ("server restart", "server restart"),
    ("network error", "network error"),
    ("the peer hung up without a TLS close", "network error"),
    ("the peer closed the connection", "connection closed"),
    ("ping timeout", "timed out"),
    ("login timed out", "timed out"),
    ("send queue exceeded", "not reading"),
    ("flooding", "flooding"),
    ("line too long", "protocol error"),
    ("too many invalid frames", "protocol error"),
    ("unsupported protocol version", "protocol error"),
    ("account changed by the operator", "account changed"),
    ("too many connections", "too many connections"),
    ("internal server error", "server error"),
)

#: Every phrase a session's end can be stored as.
STORED_REASONS = frozenset({phrase for _, phrase in _BY_PREFIX} | {"connection ended"})


def stored_reason(reason: str) -> str:
    """The short phrase stored for a session that ended with *reason* (log wording)."""
    for prefix, phrase in _BY_PREFIX:
        if reason.startswith(prefix):
            return phrase
    # An end nobody described yet (a bug, a new code path): still no raw text.
    return "connection ended"
