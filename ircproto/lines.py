"""The IRC line decoder: bytes in, complete lines out, with IRC's length limits.

A line is at most 512 bytes with its CR LF, plus its tags: up to 8191 bytes for the
whole ``@`` section a server sends, and 4096 for what a client may send (the IRCv3
message-tags limits, ``@`` and the trailing space included). Clients end lines with
CR LF or a bare LF; both are accepted. A line over the limit is not fatal: it
is dropped and reported as a TooLong item, so the server can answer 417 and
carry on (the rest of that line is skipped up to its end).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The body of a line (source, command, parameters) with its CR LF.
MAX_LINE_BYTES = 512
#: The tags section of a line, ``@`` and trailing space included.
MAX_TAG_BYTES = 8191
#: The tags section a client may send (client-only tags), ``@`` and space included.
MAX_CLIENT_TAG_BYTES = 4096


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line that was over the limit and has been dropped."""

    size: int


@dataclass(frozen=True, slots=True)
class BadEncoding:
    """A line that is not UTF-8 (kept as bytes for logging only)."""

    raw: bytes


Item = str | TooLong | BadEncoding


class LineDecoder:
    """Splits a byte stream into lines; never holds more than the limits allow."""

    def __init__(self, max_line: int = MAX_LINE_BYTES, max_tags: int = MAX_TAG_BYTES) -> None:
        """*max_line* and *max_tags* as in the module docstring."""
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line, dropping to its end
        self._skipped = 0
        self._max_line = max_line
        self._max_tags = max_tags

    def _limit(self, line: bytes) -> int:
        if line.startswith(b"@"):
            space = line.find(b" ")
            if space < 0:
                return self._max_tags
            if space + 1 > self._max_tags:
                return 0
            return space + 1 + self._max_line
        return self._max_line

    def feed(self, data: bytes) -> list[Item]:
        """Decode *data*; returns the lines it completes (without line ends),
        TooLong for over-long ones and BadEncoding for non-UTF-8 ones. Empty
        lines are skipped."""
        out: list[Item] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if self._skipping:
                    self._skipped += len(self._buf)
                    self._buf.clear()
                elif len(self._buf) > self._limit(bytes(self._buf)) or (
                    len(self._buf) > self._max_tags + self._max_line
                ):
                    self._skipping = True
                    self._skipped = len(self._buf)
                    self._buf.clear()
                return out
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                out.append(TooLong(self._skipped + len(raw) + 1))
                self._skipped = 0
                continue
            if len(raw) + 1 > self._limit(raw):
                out.append(TooLong(len(raw) + 1))
                continue
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw.strip(b" "):
                continue
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(BadEncoding(raw))
