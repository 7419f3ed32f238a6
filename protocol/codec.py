# protocol/codec.py: bytes <-> frames. One JSON object per line, UTF-8, `\n`.
#
# Bring-your-own-I/O, like h11: the caller pushes received bytes into a
# LineDecoder and gets complete lines back; encode() returns the bytes to send.
# Nothing here touches a socket.

import json
from typing import Any

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError, StreamError
from .frames import Frame, parse_client_frame, parse_server_frame
from .limits import MAX_LINE_BYTES


def encode(frame: Frame) -> bytes:
    """One `\\n`-terminated line for *frame*. Raises LocalProtocolError past the line cap."""
    data = json.dumps(frame.to_wire(), ensure_ascii=False, separators=(",", ":")).encode()
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

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held so far."""
        return len(self._buf)


def _load(line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(ErrorCode.BAD_UTF8, "the line is not valid UTF-8") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RemoteProtocolError(ErrorCode.BAD_JSON, "the line is not valid JSON") from exc


def decode_client_line(line: bytes) -> Frame:
    """Parse one line a client sent. Raises RemoteProtocolError (the connection may go on)."""
    return parse_client_frame(_load(line))


def decode_server_line(line: bytes) -> Frame:
    """Parse one line a server sent. Raises RemoteProtocolError."""
    return parse_server_frame(_load(line))
