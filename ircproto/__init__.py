"""Sans-IO IRC: messages, lines, capabilities, ISUPPORT, SASL chunks, numerics.

Pure functions and small state holders; no sockets, no threads. The server's IRC
gateway (server/irc/) is built on it.
"""

from __future__ import annotations

from . import numerics
from .caps import CapNegotiation
from .ctcp import action, parse_ctcp, strip_formatting
from .isupport import isupport_lines
from .lines import (
    MAX_CLIENT_TAG_BYTES,
    MAX_LINE_BYTES,
    MAX_TAG_BYTES,
    BadEncoding,
    LineDecoder,
    TooLong,
)
from .message import (
    Message,
    ParseError,
    encode,
    escape_tag_value,
    format_message,
    parse,
    sendable,
    unescape_tag_value,
)
from .sasl import ChunkAssembler, SaslError, chunks, parse_plain

__all__ = [
    "MAX_CLIENT_TAG_BYTES",
    "MAX_LINE_BYTES",
    "MAX_TAG_BYTES",
    "BadEncoding",
    "CapNegotiation",
    "ChunkAssembler",
    "LineDecoder",
    "Message",
    "ParseError",
    "SaslError",
    "TooLong",
    "action",
    "chunks",
    "encode",
    "escape_tag_value",
    "format_message",
    "isupport_lines",
    "numerics",
    "parse",
    "parse_ctcp",
    "parse_plain",
    "sendable",
    "strip_formatting",
    "unescape_tag_value",
]
