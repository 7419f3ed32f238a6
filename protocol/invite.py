"""The invite line, one string that tells a client where a
server is and which certificate to expect there (docs/protocol.md, "Invites").

    parley://HOST:PORT#sha256=HEX

HOST is a name, an IPv4 address or an IPv6 address in brackets; PORT is
optional (5555); HEX is the SHA-256 of the certificate trust on first use
pins (the server's local CA, or the server's own certificate when it has no
CA), 64 hex digits. `python -m parley_chat.server invite` prints one; both clients take
one in place of an address, and then pin that certificate without asking a
person to compare fingerprints. Pure: no sockets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

SCHEME = "parley"
#: The port an invite without one means (the server's default).
DEFAULT_INVITE_PORT = 5555
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?")


class InviteError(ValueError):
    """An invite line that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Invite:
    """Where a server is and the SHA-256 (hex) of the certificate to pin, if known."""

    host: str
    port: int = DEFAULT_INVITE_PORT
    fingerprint: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        tail = f"#sha256={self.fingerprint}" if self.fingerprint else ""
        return f"{SCHEME}://{host}:{self.port}{tail}"


def looks_like_invite(text: str) -> bool:
    """True when *text* is meant as an invite (starts with parley://), valid or not."""
    return text.strip().lower().startswith(f"{SCHEME}://")


def format_invite(host: str, port: int, fingerprint: str | None) -> str:
    """The invite line for *host*:*port* and the certificate *fingerprint* (hex)."""
    fp = None if fingerprint is None else _fingerprint(fingerprint)
    return str(Invite(_host(host), _port(str(port)), fp))


def parse_invite(text: str) -> Invite:
    """The Invite in *text* (surrounding spaces ignored). Raises InviteError."""
    line = text.strip()
    if not looks_like_invite(line):
        raise InviteError(f"an invite starts with {SCHEME}://")
    rest = line[len(SCHEME) + 3 :]
    address, _, fragment = rest.partition("#")
    address = address.rstrip("/")
    if "/" in address or "?" in address or "@" in address:
        raise InviteError("an invite holds only a host, a port and a fingerprint")
    if address.startswith("["):
        host, bracket, after = address[1:].partition("]")
        if not bracket:
            raise InviteError("an IPv6 address in an invite needs its closing ]")
        port_text = after[1:] if after.startswith(":") else after
        if after and not after.startswith(":"):
            raise InviteError(f"unexpected {after!r} after the address")
    else:
        host, _, port_text = address.partition(":")
    port = _port(port_text) if port_text else DEFAULT_INVITE_PORT
    fingerprint = None
    if fragment:
        key, eq, value = fragment.partition("=")
        if key.lower() != "sha256" or not eq:
            raise InviteError("the part after # must be sha256=<64 hex digits>")
        fingerprint = _fingerprint(value)
    return Invite(_host(host), port, fingerprint)


def _host(host: str) -> str:
    host = host.strip()
    if not host:
        raise InviteError("the invite has no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host):
        raise InviteError(f"{host!r} is not a host name or an IP address")
    return host


def _port(text: str) -> int:
    if not text.isdecimal() or not 0 < int(text) < 65536:
        raise InviteError(f"the port {text!r} is not a number from 1 to 65535")
    return int(text)


def _fingerprint(value: str) -> str:
    digits = value.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(digits):
        raise InviteError("the fingerprint is a SHA-256: 64 hex digits")
    return digits
