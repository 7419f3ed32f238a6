"""Parley servers found on the LAN by DNS-SD over
multicast DNS (python-zeroconf), as server/mdns.py advertises them.

Rules this module keeps:
1. What mDNS says is unauthenticated: anyone on the LAN can advertise any
   name, address and fingerprint. A found server fills in an address, and
   trust is settled exactly as for a typed one (the CA file, the pin, or a
   person comparing the fingerprint); the advertised fingerprint is shown,
   never trusted.
2. Browsing listens on the interfaces asked for (PARLEY_MDNS_INTERFACES, a
   comma-separated list of interface addresses; default all), and not at all
   with PARLEY_MDNS=off. Tests use both, so they never reach a real network.
3. zeroconf calls back on its own thread; ServerBrowser keeps a snapshot
   behind a lock, and user interfaces read it (servers()) on theirs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("parley.discovery")

SERVICE_TYPE = "_parley._tcp.local."
MDNS_ENV = "PARLEY_MDNS"
INTERFACES_ENV = "PARLEY_MDNS_INTERFACES"
#: How long a one-shot listing waits for answers (mDNS answers within ~1 s).
DEFAULT_WAIT = 3.0


@dataclass(frozen=True, slots=True)
class DiscoveredServer:
    """A server that advertised itself: where to connect, and what it says about itself."""

    name: str  #: the instance name, e.g. "parley on classroom-pc"
    host: str  #: the address to connect to (the first one advertised)
    port: int
    addresses: tuple[str, ...] = ()
    hostname: str = ""  #: its mDNS host name, e.g. "classroom-pc.local"
    fingerprint: str = ""  #: advertised SHA-256 of what it says clients pin (unverified)
    anchor: str = ""  #: "ca" or "cert": what that fingerprint is of
    version: str = ""  #: advertised protocol version

    @property
    def where(self) -> str:
        """host:port as a person types it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when PARLEY_MDNS=off: no browsing at all."""
    env = os.environ if environ is None else environ
    return env.get(MDNS_ENV, "on").strip().lower() != "off"


def interfaces_from_env(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The interface addresses PARLEY_MDNS_INTERFACES names (None: all interfaces)."""
    env = os.environ if environ is None else environ
    raw = env.get(INTERFACES_ENV, "").strip()
    if not raw:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _decode(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def server_from_info(info: object) -> DiscoveredServer | None:
    """A DiscoveredServer from a resolved zeroconf ServiceInfo (None if it has no address)."""
    addresses = tuple(info.parsed_addresses())  # type: ignore[attr-defined]
    port = info.port  # type: ignore[attr-defined]
    if not addresses or not port:
        return None
    # IPv4 first: it is what the certificate covers by default.
    ordered = sorted(addresses, key=lambda a: ipaddress.ip_address(a).version)
    props = info.properties or {}  # type: ignore[attr-defined]
    name = info.name.removesuffix("." + SERVICE_TYPE)  # type: ignore[attr-defined]
    return DiscoveredServer(
        name=name,
        host=ordered[0],
        port=port,
        addresses=tuple(ordered),
        hostname=(info.server or "").rstrip("."),  # type: ignore[attr-defined]
        fingerprint=_decode(props.get(b"sha256")).lower(),
        anchor=_decode(props.get(b"anchor")),
        version=_decode(props.get(b"v")),
    )


class ServerBrowser:
    """Browses for parley servers in the background until close().

    `servers()` is the current list (name order), safe from any thread;
    `changed` is set whenever it changes (cleared by whoever reads it).
    """

    def __init__(self, interfaces: Sequence[str] | None = None) -> None:
        self.interfaces = list(interfaces) if interfaces is not None else None
        self._lock = threading.Lock()
        self._found: dict[str, DiscoveredServer] = {}
        self._zc: object | None = None
        self._browser: object | None = None
        self.changed = threading.Event()
        self.error: str | None = None

    def start(self) -> ServerBrowser:
        """Start browsing (returns at once). A failure is kept in `error`, never raised."""
        try:
            from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, Zeroconf

            v6 = any(":" in a for a in self.interfaces or ())
            self._zc = zc = Zeroconf(
                interfaces=self.interfaces if self.interfaces is not None else InterfaceChoice.All,
                ip_version=IPVersion.All if v6 else IPVersion.V4Only,
            )
            self._browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_change])
        except Exception as exc:  # no multicast, no 5353: the user types the address
            self.error = str(exc) or type(exc).__name__
            log.info("mDNS browsing is not available: %s", self.error)
        return self

    def _on_change(
        self, zeroconf: object, service_type: str, name: str, state_change: object
    ) -> None:
        # On zeroconf's thread. Resolving asks the network: it has a deadline.
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._found.pop(name, None)
            self.changed.set()
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)  # type: ignore[attr-defined]
        server = server_from_info(info) if info is not None else None
        if server is None:
            return
        with self._lock:
            self._found[name] = server
        self.changed.set()

    def servers(self) -> list[DiscoveredServer]:
        """The servers found so far (still advertised), by name."""
        with self._lock:
            return sorted(self._found.values(), key=lambda s: (s.name.lower(), s.host))

    def close(self) -> None:
        """Stop browsing and release the sockets."""
        zc, self._zc = self._zc, None
        browser, self._browser = self._browser, None
        if browser is not None:
            browser.cancel()  # type: ignore[attr-defined]
        if zc is not None:
            zc.close()  # type: ignore[attr-defined]


def discover(
    wait: float = DEFAULT_WAIT, interfaces: Sequence[str] | None = None
) -> list[DiscoveredServer]:
    """Browse for *wait* seconds and return what answered (blocking; for the terminal client).

    Raises OSError when browsing cannot start at all (no usable interface).
    """
    browser = ServerBrowser(interfaces).start()
    try:
        if browser.error is not None:
            raise OSError(f"mDNS browsing is not available here: {browser.error}")
        # mDNS has no "that is everyone" answer: listening for a while is the protocol.
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            browser.changed.wait(left)
            browser.changed.clear()
        return browser.servers()
    finally:
        browser.close()
