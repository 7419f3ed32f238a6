r"""Bytes <-> frames. One JSON object per line, UTF-8, `\n`.

Bring-your-own-I/O, like h11: the caller pushes received bytes into a
LineDecoder and gets complete lines back; encode() returns the bytes to send.
Nothing here touches a socket.

Decoding is the trust boundary, so whatever the bytes, the only exceptions
that leave decode_client_line / decode_server_line / LineDecoder.feed are
RemoteProtocolError and its subclass StreamError. The JSON parser is
stricter than json.loads' defaults:
* NaN, Infinity and -Infinity (which Python accepts) are refused: not JSON.
* A number literal past MAX_INT_DIGITS digits is refused before int() sees
  it (Python's int() of a long literal is slow, past 4300 digits it raises
  ValueError); a float that overflows to infinity (1e999) is refused too.
* A key twice in one object is refused: two parsers could disagree about
  which value counts.
* Lone surrogates (`"\ud800"`) are refused anywhere in the frame.
"""

import json
import math
import re
import typing
from typing import Any

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError, StreamError
from .frames import CLIENT_FRAMES, SERVER_FRAMES, Frame, parse_frame
from .limits import MAX_INT_DIGITS, MAX_LINE_BYTES


def encode(frame: Frame) -> bytes:
    """One `\\n`-terminated line for *frame*. Raises LocalProtocolError past the line cap."""
    try:
        data = json.dumps(frame.to_wire(), ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as exc:
        # A lone surrogate in a locally built frame: decode refuses them, so
        # only a bug on this side can get here.
        raise LocalProtocolError(
            ErrorCode.BAD_FRAME, f"{frame.TYPE} frame holds a string that is not valid Unicode"
        ) from exc
    if len(data) >= MAX_LINE_BYTES:
        raise LocalProtocolError(
            ErrorCode.LINE_TOO_LONG, f"{frame.TYPE} frame of {len(data)} bytes is over the cap"
        )
    return data + b"\n"


class LineDecoder:
    """Splits a byte stream into lines, refusing any line longer than *max_line* bytes.

    feed() returns the complete lines (without the newline, a trailing `\\r`
    dropped, blank lines skipped). It raises StreamError as soon as the
    buffered partial line passes the cap, without waiting for its newline, so a
    peer streaming junk can never make us buffer more than the cap.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._max = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the lines they completed."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._buf[start:end])
            start = end + 1
            if len(line) > self._max:
                raise StreamError(ErrorCode.LINE_TOO_LONG, f"line over {self._max} bytes")
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                lines.append(line)
        del self._buf[:start]
        if len(self._buf) > self._max:
            raise StreamError(ErrorCode.LINE_TOO_LONG, f"line over {self._max} bytes")
        return lines


# --- the strict JSON parser ----------------------------------------------------


def _refuse_constant(name: str) -> typing.NoReturn:
    raise RemoteProtocolError(ErrorCode.BAD_JSON, f"{name} is not valid JSON")


def _parse_int(literal: str) -> int:
    # Called by the scanner with the literal's text, before any conversion.
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        raise RemoteProtocolError(
            ErrorCode.BAD_FRAME, f"a number of {len(literal)} digits is out of range"
        )
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise RemoteProtocolError(ErrorCode.BAD_FRAME, "a number is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        shown = repr(dup[:40])
        raise RemoteProtocolError(ErrorCode.BAD_JSON, f"key {shown} appears twice in an object")
    return obj


# One decoder for all threads, as json.loads itself shares one: its scanner
# keeps no state between calls that a concurrent call could disturb.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_refuse_constant,
)

#: A JSON escape that may produce a surrogate: `\ud800` to `\udfff` (hex digits
#: in either case; JSON spells the `u` in lower case only). Lines without one,
#: nearly all of them, cannot hold a surrogate (raw UTF-8 cannot encode one),
#: so only lines with one pay for the walk over the decoded value. An escaped
#: valid pair (an emoji as `\ud83d\ude00`) matches too and passes the walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _load(line: bytes) -> tuple[Any, bool]:
    """The JSON value of *line*, and whether it may hold a surrogate.

    The line's length is LineDecoder's business: it never hands over a line
    past the cap, and a caller with lines from elsewhere bounds them itself.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(ErrorCode.BAD_UTF8, "the line is not valid UTF-8") from exc
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers json.JSONDecodeError; RecursionError deep nesting.
        raise RemoteProtocolError(ErrorCode.BAD_JSON, "the line is not valid JSON") from exc
    # A one-byte `in` is a memchr; the regex runs only on lines with a backslash.
    return value, b"\\" in line and _SURROGATE_ESCAPE.search(line) is not None


def decode_client_line(line: bytes) -> Frame:
    """Parse one line a client sent. Raises RemoteProtocolError (the connection may go on)."""
    value, maybe_surrogate = _load(line)
    return parse_frame(value, CLIENT_FRAMES, scan_surrogates=maybe_surrogate)


def decode_server_line(line: bytes) -> Frame:
    """Parse one line a server sent. Raises RemoteProtocolError."""
    value, maybe_surrogate = _load(line)
    return parse_frame(value, SERVER_FRAMES, scan_surrogates=maybe_surrogate)
