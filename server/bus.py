"""The bus between server nodes: what one node tells the others, and the one-node bus.

Several parley nodes may share one PostgreSQL database (DESIGN.md 4b). The
database holds the truth; the bus only tells the other nodes that something
changed, and where, so each can read the rows it needs and deliver them to its
own connections. An event therefore carries ids and routing, never a text:

* `message` {id, room | users (sender, recipient)}: a committed message.
  Message ids are in commit order with no gaps (the store's counter row), so
  a node delivers them strictly by id and reads any it was not told of.
* `edit` / `delete` {id, room | users}: a message changed; read its row.
* `member` {user}: a user's room memberships changed (join, leave, kick,
  ban); read them.
* `mute` {user, room}: a mute was set or lifted; read it.
* `roominfo` {room}: a room's topic, privacy or roles changed; read them.
* `moderation` {audit id}: a notice, a disconnection or an announcement;
  read the audit row.
* `read` {marker id, user, room | peer}: the user's read marker moved; their
  connections on the other nodes follow.
* `up` / `down` {user}: the user's first connection on the sending node
  began, or its last one ended (presence: who is online where).
* `hello` / `alive` / `sync`: a node started (everyone re-announces who is
  online on it), is still there, or asks for the announcements again.

LocalBus is the bus of a single node (the default): there is nobody to tell,
so the hub delivers directly, exactly as it did before nodes existed.
server/bus_postgres.py has the bus of several nodes (LISTEN/NOTIFY).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

#: The kinds of event (see the module docstring).
KINDS = frozenset(
    {
        "message",
        "edit",
        "delete",
        "member",
        "mute",
        "roominfo",
        "moderation",
        "read",
        "up",
        "down",
        "hello",
        "alive",
        "sync",
    }
)

#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a batch of events
#: is cut into payloads below this.
MAX_PAYLOAD_BYTES = 7900


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a node tells the others: its kind, the id it is about, and routing."""

    kind: str
    #: The message id (message, edit, delete) or the audit row id (moderation).
    id: int | None = None
    room: str | None = None
    #: User ids concerned: a private message's sender and recipient, the
    #: subject of member / mute / up / down / moderation.
    users: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown bus event kind {self.kind!r}")

    def to_wire(self) -> dict[str, object]:
        """The compact JSON form (short keys: payloads are capped)."""
        wire: dict[str, object] = {"k": self.kind}
        if self.id is not None:
            wire["i"] = self.id
        if self.room is not None:
            wire["r"] = self.room
        if self.users:
            wire["u"] = list(self.users)
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, object]) -> Event:
        """The event of to_wire(); ValueError for anything else."""
        kind = wire.get("k")
        mid = wire.get("i")
        room = wire.get("r")
        users = wire.get("u", [])
        if not isinstance(kind, str):
            raise ValueError("a bus event needs a kind")
        if mid is not None and (not isinstance(mid, int) or isinstance(mid, bool)):
            raise ValueError("a bus event's id must be an integer")
        if room is not None and not isinstance(room, str):
            raise ValueError("a bus event's room must be a string")
        if not isinstance(users, list) or not all(
            isinstance(u, int) and not isinstance(u, bool) for u in users
        ):
            raise ValueError("a bus event's users must be integers")
        return cls(kind, mid, room, tuple(users))


def pack(node: str, events: Iterable[Event]) -> list[str]:
    """*events* from *node* as NOTIFY payloads, in order, each under MAX_PAYLOAD_BYTES."""
    head = json.dumps(node)
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    budget = MAX_PAYLOAD_BYTES - len(head.encode()) - 16
    for event in events:
        item = json.dumps(event.to_wire(), ensure_ascii=False, separators=(",", ":"))
        n = len(item.encode()) + 1
        if n > budget:
            raise ValueError(f"a bus event does not fit a payload: {item[:80]}...")
        if current and size + n > budget:
            payloads.append(f'{{"n":{head},"e":[{",".join(current)}]}}')
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        payloads.append(f'{{"n":{head},"e":[{",".join(current)}]}}')
    return payloads


def unpack(payload: str) -> tuple[str, list[Event]]:
    """(sending node, events) of one payload made by pack(); ValueError if malformed."""
    try:
        wire = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"a bus payload is not JSON: {exc}") from exc
    if not isinstance(wire, dict):
        raise ValueError("a bus payload must be an object")
    node, items = wire.get("n"), wire.get("e")
    if not isinstance(node, str) or not isinstance(items, list):
        raise ValueError("a bus payload needs a node and events")
    events = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("a bus event must be an object")
        events.append(Event.from_wire(item))
    return node, events


#: Called by a bus with (sending node, events) for each payload it received,
#: on the bus's own thread, in the order the database delivered them.
Receive = Callable[[str, list[Event]], None]
#: Called by a bus after its listening connection was lost and made again:
#: anything may have been missed meanwhile, so the node reads the database.
Resync = Callable[[], None]


class Bus(Protocol):
    """What a node needs of the bus between nodes."""

    #: Whether other nodes may exist: if not, the hub delivers directly.
    shared: bool

    def start(self, receive: Receive, resync: Resync) -> None:
        """Listen; returns once listening, so nothing published after it is missed."""

    def publish(self, events: list[Event]) -> None:
        """Tell every node (this one included) of *events*, in order; never blocks."""

    def stop(self) -> None:
        """Stop listening and sending (what was published is sent first, bounded)."""


class LocalBus:
    """The bus of one node alone: nothing to tell anyone (the default)."""

    shared = False

    def start(self, receive: Receive, resync: Resync) -> None:
        """Nothing to listen to."""

    def publish(self, events: list[Event]) -> None:
        """Nobody else to tell: the hub has delivered already."""

    def stop(self) -> None:
        """Nothing to stop."""


class Cluster(Protocol):
    """What handlers tell the other nodes beyond the hub's own hooks (moderation)."""

    def moderated(self, f: Any, out: Any) -> None:
        """A moderation action (a Moderate frame, its committed Outcome) was carried out
        here: the other nodes' connections must learn of it too."""

    def read_moved(self, user_id: int, frame: Any, peer_id: int | None) -> None:
        """The user's read marker moved (a Read frame; *peer_id* for a private
        conversation): their devices on the other nodes follow."""


class NoCluster:
    """A node alone: nobody else to tell."""

    def moderated(self, f: Any, out: Any) -> None:
        """Nothing to do."""

    def read_moved(self, user_id: int, frame: Any, peer_id: int | None) -> None:
        """Nothing to do."""
