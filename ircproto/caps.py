"""IRCv3 capability negotiation (CAP LS 302 / REQ / ACK / NAK / LIST / END), sans-IO.

CapNegotiation holds one connection's state; each method returns the parameter
lists of the CAP replies to send (the caller adds source and target). Values are
advertised only to clients that asked for version 302 or later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A CAP LS line stays well under 512 bytes with this much of the list in it.
_LS_CHUNK = 380


@dataclass
class CapNegotiation:
    """One client's capability state. *supported* maps names to values ('' for none)."""

    supported: dict[str, str]
    version: int = 0
    enabled: set[str] = field(default_factory=set)
    #: True from the first CAP LS/REQ until CAP END: registration waits for it.
    negotiating: bool = False

    def ls(self, version: str | None) -> list[list[str]]:
        """CAP LS [version]: the parameter lists (after the target) of the replies."""
        self.negotiating = True
        if version is not None and version.isdecimal():
            self.version = max(self.version, int(version))
        if self.version >= 302:
            self.enabled.add("cap-notify")  # implied by 302 (the specification)
        items = [
            f"{name}={value}" if value and self.version >= 302 else name
            for name, value in self.supported.items()
        ]
        chunks: list[str] = []
        current = ""
        for item in items:
            if current and len(current) + 1 + len(item) > _LS_CHUNK:
                chunks.append(current)
                current = item
            else:
                current = f"{current} {item}" if current else item
        chunks.append(current)
        if self.version < 302:
            return [["LS", " ".join(chunks)]]
        return [["LS", "*", c] for c in chunks[:-1]] + [["LS", chunks[-1]]]

    def req(self, wanted: str) -> list[str]:
        """CAP REQ :caps: ACK all of them or NAK all of them (atomic, as specified)."""
        self.negotiating = True
        names = wanted.split()
        ok = bool(names)
        for name in names:
            bare = name[1:] if name.startswith("-") else name
            if bare not in self.supported:
                ok = False
        if not ok:
            return ["NAK", wanted]
        for name in names:
            if name.startswith("-"):
                self.enabled.discard(name[1:])
            else:
                self.enabled.add(name)
        return ["ACK", wanted]

    def list(self) -> list[str]:
        """CAP LIST: the enabled capabilities."""
        return ["LIST", " ".join(sorted(self.enabled))]

    def end(self) -> None:
        """CAP END: negotiation is over."""
        self.negotiating = False

    def has(self, name: str) -> bool:
        """True if *name* is enabled."""
        return name in self.enabled
