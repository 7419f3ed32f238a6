"""The short, human reason stored for a session's end.

The I/O layers end a connection with whatever words describe it best for
the log, often with an exception's text in them ("network error: EOF
occurred in violation of protocol (_ssl.c:2427)"). The log keeps those; the
sessions table (which operators read and chat_log-style reports show) gets
one of a few plain phrases instead, so no raw exception or OpenSSL text is
ever stored or shown as the reason a user left.
"""

from __future__ import annotations

from .store.vocab import EndReason

#: What a session's end is stored as, by the start of the reason the server
#: closed it with (first match wins; see Connection, IOLoop, Commands.bye).
_BY_PREFIX: tuple[tuple[str, EndReason], ...] = (
    ("bye", EndReason.SIGNED_OUT),
    ("server shutdown", EndReason.SERVER_SHUTDOWN),
    ("server restart", EndReason.SERVER_RESTART),
    ("network error", EndReason.NETWORK_ERROR),
    ("the peer hung up without a TLS close", EndReason.NETWORK_ERROR),
    ("the peer closed the connection", EndReason.CONNECTION_CLOSED),
    ("ping timeout", EndReason.TIMED_OUT),
    ("login timed out", EndReason.TIMED_OUT),
    ("send queue exceeded", EndReason.NOT_READING),
    ("flooding", EndReason.FLOODING),
    ("line too long", EndReason.PROTOCOL_ERROR),
    ("too many invalid frames", EndReason.PROTOCOL_ERROR),
    ("unsupported protocol version", EndReason.PROTOCOL_ERROR),
    ("account changed by the operator", EndReason.ACCOUNT_CHANGED),
    ("too many connections", EndReason.TOO_MANY_CONNECTIONS),
    ("internal server error", EndReason.SERVER_ERROR),
)

#: Every phrase a session's end can be stored as.
STORED_REASONS = frozenset(EndReason)


def stored_reason(reason: str) -> EndReason:
    """The short phrase stored for a session that ended with *reason* (log wording)."""
    for prefix, phrase in _BY_PREFIX:
        if reason.startswith(prefix):
            return phrase
    return EndReason.CONNECTION_ENDED
