"""Advertise a running server on the LAN with DNS-SD over
multicast DNS (python-zeroconf), so clients list it without an address.

Service type `_parley._tcp.local.`; instance "<server_name> on <host>"
(zeroconf renames it if another machine took the name); TXT records:
  v       the protocol version (protocol.PROTOCOL_VERSION)
  sha256  the fingerprint of the certificate clients pin (hex, 64 digits)
  anchor  "ca" when that is the local CA, "cert" for the server certificate
Anyone on a LAN can advertise anything: clients show these records, and never
trust a server because of them (docs/security.md).

Rules this module keeps:
1. The advertisement goes out only where the server listens: bound to
   loopback, on loopback only; to one address, on that interface; to a
   wildcard, on every interface.
2. Advertising never stops the server: zeroconf runs on its own threads, and
   a failure (no multicast, port 5353 refused) is one warning in the log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Sequence

from parley_chat.protocol import PROTOCOL_VERSION

log = logging.getLogger("parley.mdns")

SERVICE_TYPE = "_parley._tcp.local."
#: DNS-SD instance names are one DNS label: at most 63 bytes.
MAX_INSTANCE_BYTES = 63


def instance_name(server_name: str, hostname: str) -> str:
    """The DNS-SD instance name "<server_name> on <hostname>", cut to 63 bytes."""
    name = f"{server_name} on {hostname}".replace(".", "-")
    raw = name.encode()[:MAX_INSTANCE_BYTES]
    return raw.decode("utf-8", "ignore").strip() or "parley"


def txt_records(fingerprint: str, anchor_is_ca: bool) -> dict[str, str]:
    """The TXT records of the advertisement (see the module comment)."""
    return {
        "v": str(PROTOCOL_VERSION),
        "sha256": fingerprint,
        "anchor": "ca" if anchor_is_ca else "cert",
    }


def advertised_interfaces(bind_host: str) -> list[str] | None:
    """The interface addresses to advertise on for a server bound to *bind_host*
    (None: all interfaces)."""
    if bind_host in ("0.0.0.0", "::", ""):
        return None
    try:
        addr = ipaddress.ip_address(bind_host)
    except ValueError:
        # A name ("localhost"): the address the listener bound, never "everywhere".
        try:
            infos = socket.getaddrinfo(bind_host, None, type=socket.SOCK_STREAM)
            addr = ipaddress.ip_address(infos[0][4][0])
        except (OSError, IndexError, ValueError):
            return ["127.0.0.1"]
    if addr.is_loopback:
        return ["::1"] if addr.version == 6 else ["127.0.0.1"]
    return [str(addr)]


class Advertiser:
    """Registers one DNS-SD service on start() (in the background) and withdraws it on stop()."""

    def __init__(
        self,
        *,
        name: str,
        port: int,
        addresses: Sequence[str],
        txt: dict[str, str],
        interfaces: Sequence[str] | None,
        hostname: str | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.addresses = [a for a in addresses if _is_ip(a)]
        self.txt = txt
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.hostname = hostname or socket.gethostname().split(".")[0] or "parley"
        self._zc: object | None = None
        self._info: object | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.registered = threading.Event()
        self._thread = threading.Thread(target=self._register, name="mdns", daemon=True)

    def start(self) -> None:
        """Start registering; returns at once (probing the name takes about 2 s)."""
        self._thread.start()

    def _register(self) -> None:
        try:
            from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

            v6 = any(ipaddress.ip_address(a).version == 6 for a in self.addresses)
            v4 = any(ipaddress.ip_address(a).version == 4 for a in self.addresses)
            version = IPVersion.All if v4 and v6 else IPVersion.V6Only if v6 else IPVersion.V4Only
            zc = Zeroconf(
                interfaces=self.interfaces if self.interfaces is not None else InterfaceChoice.All,
                ip_version=version,
            )
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{self.name}.{SERVICE_TYPE}",
                port=self.port,
                properties=self.txt,
                server=f"{self.hostname}.local.",
                parsed_addresses=self.addresses,
            )
            with self._lock:
                if self._stopped:
                    zc.close()
                    return
                self._zc, self._info = zc, info
            zc.register_service(info, allow_name_change=True)
        except Exception as exc:  # no multicast, 5353 refused, ...: the server runs on
            log.warning("mDNS advertisement failed, clients must type the address: %s", exc)
            return
        log.info("advertised by mDNS as %r on %s", info.name, self.interfaces or "all interfaces")
        self.registered.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Withdraw the advertisement (a goodbye packet) and close zeroconf."""
        with self._lock:
            self._stopped = True
            zc = self._zc
        if self._thread.is_alive():
            self._thread.join(timeout)
        if zc is None:
            return
        try:
            zc.unregister_all_services()  # type: ignore[attr-defined]
        except Exception as exc:
            log.info("mDNS goodbye failed: %s", exc)
        zc.close()  # type: ignore[attr-defined]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
