"""Server addresses as people type them: `host:port,host2:port2`, for failover.

A client may know several servers of one site (the nodes of a cluster, or
one server by two names). ChatClient takes them as a list of (host, port) and
tries them in order; the terminal client's `--host` and the desktop client's
Server field take the comma-separated form parsed here. An IPv6 literal goes
in brackets (`[::1]:5555`; a bare one alone takes the default port); a host without a port gets the default port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

#: One server: (host name or IP literal, TCP port).
Address = tuple[str, int]


def parse_addresses(text: str, default_port: int) -> list[Address]:
    """The addresses in *text* (comma-separated `host[:port]`), in order, without repeats.

    Raises ValueError with a sentence fit for a user when an entry is empty,
    its port is not a number from 1 to 65535, or an IPv6 literal lacks brackets.
    """
    out: list[Address] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"empty server address in {text!r} (write host:port,host2:port2)")
        address = _parse_one(entry, default_port)
        if address not in out:
            out.append(address)
    return out


def format_addresses(addresses: Sequence[Address]) -> str:
    """The comma-separated form of *addresses* (what parse_addresses reads back)."""
    return ",".join(format_address(a) for a in addresses)


def format_address(address: Address) -> str:
    """`host:port`, or `[v6]:port` for an IPv6 literal."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_one(entry: str, default_port: int) -> Address:
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"bad server address {entry!r}: no closing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad server address {entry!r}: write [v6]:port")
        port_text = rest[1:] if rest else ""
    elif entry.count(":") > 1:
        try:  # a bare IPv6 literal, as --host always took: the default port
            return str(ipaddress.IPv6Address(entry)), default_port
        except ValueError:
            raise ValueError(
                f"bad server address {entry!r}: put an IPv6 address in brackets, [v6]:port"
            ) from None
    else:
        host, _, port_text = entry.partition(":")
        if not host:
            raise ValueError(f"bad server address {entry!r}: no host")
    if not port_text and ":" not in entry.split("]")[-1]:
        return host, default_port
    if not port_text.isdecimal() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in server address {entry!r}: a number from 1 to 65535")
    return host, int(port_text)
