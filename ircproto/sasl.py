"""SASL over AUTHENTICATE: 400-byte base64 chunks, ``+`` for empty, and PLAIN.

The IRCv3 SASL specification sends the base64 payload in chunks of 400 bytes; a
chunk shorter than 400 ends it, and a payload that is an exact multiple of 400
ends with a lone ``+``. ``*`` aborts.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

CHUNK = 400
#: The largest payload accepted (base64 bytes): a PLAIN login is far smaller.
MAX_PAYLOAD = 4096


class SaslError(ValueError):
    """A payload that is malformed or too long; `.too_long` marks a chunk over 400 bytes."""

    def __init__(self, message: str, *, too_long: bool = False) -> None:
        super().__init__(message)
        self.too_long = too_long


def chunks(payload: bytes) -> list[str]:
    """The AUTHENTICATE parameters that carry *payload* (base64-encoded here)."""
    data = base64.b64encode(payload).decode("ascii")
    if not data:
        return ["+"]
    out = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    if len(out[-1]) == CHUNK:
        out.append("+")
    return out


@dataclass
class ChunkAssembler:
    """Collects AUTHENTICATE chunks from the client into one payload."""

    parts: list[str] = field(default_factory=list)

    def feed(self, chunk: str) -> bytes | None:
        """Add *chunk*; returns the decoded payload when complete, else None.

        Raises SaslError for a chunk over 400 bytes, a payload over MAX_PAYLOAD
        or bad base64."""
        if len(chunk) > CHUNK:
            self.parts.clear()
            raise SaslError("chunk longer than 400 bytes", too_long=True)
        if chunk != "+":
            self.parts.append(chunk)
        if sum(len(p) for p in self.parts) > MAX_PAYLOAD:
            self.parts.clear()
            raise SaslError("the SASL payload is too long")  # a failure, not a bad chunk
        if len(chunk) == CHUNK:
            return None
        data = "".join(self.parts)
        self.parts.clear()
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SaslError("the SASL payload is not valid base64") from exc


def parse_plain(payload: bytes) -> tuple[str, str, str]:
    """(authzid, authcid, password) of a PLAIN payload. Raises SaslError."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaslError("the PLAIN payload is not UTF-8") from exc
    fields = text.split("\0")
    if len(fields) != 3 or not fields[1]:
        raise SaslError("a PLAIN payload is authzid NUL authcid NUL password")
    return fields[0], fields[1], fields[2]
