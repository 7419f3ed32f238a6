"""What the server tells its operator at start, so that
joining takes one step: the addresses a client should type (each one the
certificate covers), the fingerprint of the certificate clients pin on first
use in a short grouped form, and an invite line (protocol/invite.py).

Rules this module keeps:
1. Only addresses the server certificate covers are offered: any other one
   fails the client's host name check, so printing it would only mislead.
2. Bound to a wildcard (0.0.0.0, ::), the machine's interfaces are listed
   (ifaddr, no network traffic); bound to one address, just that one.
3. The fingerprint shown is the trust anchor's: the local CA when the server
   sends it with its certificate (server/tls.py), which a renewal keeps;
   otherwise the server certificate's own.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from parley_chat.certs import fingerprint_sha256, short_fingerprint
from parley_chat.protocol.invite import format_invite

_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True, slots=True)
class Anchor:
    """The certificate a client pins on first use: its SHA-256 (hex) and whether it is the CA."""

    fingerprint: str
    is_ca: bool

    @property
    def short(self) -> str:
        """The fingerprint as eight groups of four hex digits (certs.short_fingerprint)."""
        return short_fingerprint(self.fingerprint)


def trust_anchor(cert_file: Path, ca_file: Path) -> Anchor:
    """What clients pin: *ca_file* when it signed *cert_file* (the server sends it
    along), else *cert_file* itself."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return Anchor(fingerprint_sha256(cert), is_ca=False)
    return Anchor(fingerprint_sha256(ca), is_ca=True)


def certificate_names(cert_file: Path) -> tuple[set[str], set[str]]:
    """The DNS names (lower case) and IP addresses the certificate's SAN covers."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return dns, ips


def interface_addresses() -> list[str]:
    """This machine's interface addresses, loopback and link-local left out (no traffic)."""
    import ifaddr  # a dependency of zeroconf; imported here so a failure stays local

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
                found.append(str(addr))
    return list(dict.fromkeys(found))


def short_hostname() -> str:
    """This machine's host name without its domain (what the certs script puts in .local)."""
    return socket.gethostname().split(".")[0] or "localhost"


def client_addresses(
    bind_host: str,
    cert_dns: Iterable[str],
    cert_ips: Iterable[str],
    *,
    interfaces: Sequence[str] | None = None,
    hostname: str | None = None,
) -> list[str]:
    """The hosts a client should type for a server bound to *bind_host*: only
    those the certificate covers, LAN addresses first, then hostname.local."""
    dns = {n.lower() for n in cert_dns}
    ips = set(cert_ips)
    if bind_host not in _WILDCARDS:
        return [bind_host] if bind_host in ips or bind_host.lower() in dns else []
    want_v6 = bind_host in ("::", "")
    candidates = interface_addresses() if interfaces is None else list(interfaces)
    out = [a for a in candidates if a in ips and (want_v6 or ipaddress.ip_address(a).version == 4)]
    local = f"{hostname or short_hostname()}.local".lower()
    if local in dns:
        out.append(local)
    return out


def host_port(host: str, port: int) -> str:
    """host:port as a person types it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def invite_host(addresses: Sequence[str], bind_host: str) -> str:
    """The host an invite names: the first address offered, else the bound one."""
    if addresses:
        return addresses[0]
    return "127.0.0.1" if bind_host in _WILDCARDS else bind_host


def banner(
    bind_host: str,
    port: int,
    cert_file: Path,
    ca_file: Path,
    *,
    interfaces: Sequence[str] | None = None,
    hostname: str | None = None,
) -> list[str]:
    """The lines printed under "parley listening on ...": addresses, fingerprint, invite."""
    dns, ips = certificate_names(cert_file)
    addresses = client_addresses(bind_host, dns, ips, interfaces=interfaces, hostname=hostname)
    anchor = trust_anchor(cert_file, ca_file)
    lines: list[str] = []
    if addresses:
        where = "this machine only" if _loopback(bind_host) else "the LAN"
        lines.append(f"parley: clients connect to ({where}):")
        lines += [f"parley:   {host_port(a, port)}" for a in addresses]
    else:
        lines.append(
            "parley: the certificate covers no address this server listens on: "
            "run `parley-certs --renew` (or --san ADDRESS)"
        )
    what = "CA" if anchor.is_ca else "server certificate"
    lines.append(f"parley: first connection: check the {what} fingerprint {anchor.short}")
    lines.append(
        f"parley: invite: {format_invite(invite_host(addresses, bind_host), port, anchor.fingerprint)}"
    )
    return lines


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
