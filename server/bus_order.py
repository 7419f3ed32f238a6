"""Delivery strictly by message id: what a node may deliver now, and what it must read.

Message ids are in commit order with no gaps (the store's counter row), so a
node that has delivered up to id N must deliver N + 1 next. What it knows of
an id comes from three places, in any order: its own writer (the committed
message in hand), the bus (an id and routing: the row is read when one of the
node's connections needs it, skipped otherwise), and reads of the database.

A later id is held until the earlier ones are settled. An id nobody has told
the node of (its notification is still on the way, or was lost with a
crashed node) is waited for a short *hold*, then read from the database
together with everything up to the highest id known to be committed: since
commits follow id order, every id below a committed one is committed too, and
an id the database does not have (SQLite's rolled-back ids, a removed row) is
skipped.

Sans-IO: no threads, no clock, no database. server/bus_node.py drives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Read:
    """Read from the database the ids in (after, upto] that `ids` does not rule out."""

    after: int
    upto: int


class Order(Generic[T]):
    """The delivery order of one node: payloads come out by id, each once."""

    def __init__(self, last: int, hold: float) -> None:
        """*last*: the largest id already delivered (or not to deliver: the
        database's largest when the node started). *hold*: seconds a gap may
        wait for its notification before it is read from the database."""
        self.last = last
        self.hold = hold
        self._have: dict[int, T | None] = {}  # settled, waiting their turn (None: nothing to do)
        self._need: set[int] = set()  # told of; the row must be read
        self._gap_since: float | None = None  # when last + 1 was first missed

    @property
    def waiting(self) -> int:
        """How many ids are held (settled or not) beyond the last delivered."""
        return len(self._have) + len(self._need)

    def _known(self, mid: int) -> bool:
        return mid <= self.last or mid in self._have or mid in self._need

    def offer(self, mid: int, payload: T, *, replace: bool = False) -> bool:
        """The message *mid* is committed and here it is (from this node's writer).

        False if *mid* was delivered (or passed) already. With *replace*, this
        payload takes the place of one settled by a read (this node's own copy,
        which carries more than the row: the ack that must follow it)."""
        if mid <= self.last:
            return False
        self._need.discard(mid)
        if replace:
            self._have[mid] = payload
        else:
            self._have.setdefault(mid, payload)
        return True

    def skip(self, mid: int) -> None:
        """*mid* is committed, and nobody here needs it."""
        if not self._known(mid):
            self._have[mid] = None

    def need(self, mid: int) -> None:
        """*mid* is committed, and a connection here needs its row."""
        if not self._known(mid):
            self._need.add(mid)

    def take(self, now: float) -> list[T]:
        """The payloads deliverable now, in id order (the delivered ids are passed)."""
        out: list[T] = []
        while self.last + 1 in self._have:
            self.last += 1
            payload = self._have.pop(self.last)
            if payload is not None:
                out.append(payload)
        if self._have or self._need:
            if self.last + 1 in self._need:
                self._gap_since = None  # not a gap: the row is to be read at once
            elif self._gap_since is None:
                self._gap_since = now
        else:
            self._gap_since = None
        return out

    def to_read(self, now: float) -> Read | None:
        """What to read from the database now, if anything.

        Ids the bus named as needed are read at once; a gap once it has waited
        for `hold`. Either way the read reaches the highest id known to be
        committed, so one read settles every id below it.
        """
        if not self._have and not self._need:
            return None
        top = max(max(self._have, default=0), max(self._need, default=0))
        if self._need:
            return Read(self.last, top)
        if self._gap_since is not None and now - self._gap_since >= self.hold:
            return Read(self.last, top)
        return None

    def deadline(self) -> float | None:
        """When to_read() will next have something to say without new input (None: not
        before new input; minus infinity: now)."""
        if self._need:
            return float("-inf")
        if self._gap_since is None:
            return None
        return self._gap_since + self.hold

    def filled(self, upto: int, rows: dict[int, T]) -> None:
        """A read of the database up to *upto* returned *rows* (id -> payload). Every id
        up to *upto* is settled: read, already in hand, or not in the database."""
        for mid in range(self.last + 1, upto + 1):
            if mid in self._have:
                continue
            self._need.discard(mid)
            self._have[mid] = rows.get(mid)
        self._gap_since = None
