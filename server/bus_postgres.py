"""PgBus: the bus between nodes over PostgreSQL's LISTEN/NOTIFY.

Two connections of its own, both autocommit, apart from the store's pools:

* the listener LISTENs on one channel and hands every payload to the node, in
  the order PostgreSQL delivers them (commit order). When the connection is
  lost (a restart, a network cut, pg_terminate_backend) it connects again with
  a growing pause, LISTENs again, and only then asks the node to resync: the
  node reads everything after the last id it delivered, so nothing missed
  while deaf is lost, and nothing is delivered twice (delivery is by id).
* the sender NOTIFYs what the node publishes, from a queue (publish() never
  blocks), several payloads per transaction. A lost sender connection is made
  again and the batch retried; what cannot be sent for a long outage is
  dropped (logged): messages are still found by the other nodes' tail check,
  which reads the largest id now and then.

NOTIFY is sent right after the writing transaction commits, not inside it, so
notifications from two nodes may arrive out of id order; the receiving node's
Order (server/bus_order.py) restores it. Payloads carry ids and routing only
(server/bus.py), far below NOTIFY's 8000-byte cap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Final

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from .bus import Event, Receive, Resync, pack, unpack

log = logging.getLogger("parley.bus")

#: The channel every node LISTENs on and NOTIFYs.
CHANNEL: Final = "parley"

#: Pauses between reconnection attempts grow from the first to the last.
RECONNECT_FIRST: Final = 0.1
RECONNECT_MAX: Final = 5.0

#: Events the sender keeps while it cannot reach the database; beyond that the
#: oldest are dropped (logged).
SEND_QUEUE_MAX: Final = 100_000

#: How long one wait for notifications lasts before the listener checks
#: whether it is stopping.
_POLL: Final = 0.5


def libpq_url(db_url: str) -> str:
    """The libpq connection URL of a SQLAlchemy PostgreSQL URL (the driver name removed)."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"the postgres bus needs a PostgreSQL database, not {url.drivername}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgBus:
    """LISTEN/NOTIFY between the nodes sharing one PostgreSQL database."""

    shared = True

    def __init__(self, db_url: str, node: str, *, channel: str = CHANNEL) -> None:
        """*node* names this node in the payloads it sends and in pg_stat_activity."""
        self._url = libpq_url(db_url)
        self.node = node
        self.channel = channel
        self._receive: Receive | None = None
        self._resync: Resync | None = None
        self._outbox: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._listen_conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._listener = threading.Thread(target=self._listen, name="bus-listen", daemon=True)
        self._sender = threading.Thread(target=self._send, name="bus-send", daemon=True)
        #: Times the listener connection was made again (for tests and logs).
        self.reconnects = 0
        self._dropped = 0

    @property
    def listen_application_name(self) -> str:
        """The application_name of the listener connection (pg_stat_activity)."""
        return f"parley-listen-{self.node}"[:63]

    def _connect(self, role: str) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(
            self._url,
            autocommit=True,
            application_name=f"parley-{role}-{self.node}"[:63],
            connect_timeout=10,
        )
        return conn

    def _listen_now(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = self._connect("listen")
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def start(self, receive: Receive, resync: Resync) -> None:
        """LISTEN (before returning: nothing published after this is missed), then
        start the listener and sender threads."""
        self._receive, self._resync = receive, resync
        self._listen_conn = self._listen_now()
        self._listener.start()
        self._sender.start()

    def publish(self, events: list[Event]) -> None:
        """Queue *events* for NOTIFY, in order; never blocks."""
        for event in events:
            self._outbox.put(event)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (bounded by *timeout*), then close both connections."""
        self._outbox.put(None)
        self._sender.join(timeout)
        self._stopping.set()
        self._listener.join(timeout)

    # --- the listener thread ---------------------------------------------------------

    def _listen(self) -> None:
        pause = RECONNECT_FIRST
        while not self._stopping.is_set():
            conn = self._listen_conn
            if conn is None:
                try:
                    conn = self._listen_conn = self._listen_now()
                except psycopg.Error as exc:
                    log.warning("bus: cannot listen (%s); retrying in %.1f s", exc, pause)
                    self._stopping.wait(pause)
                    pause = min(pause * 2, RECONNECT_MAX)
                    continue
                self.reconnects += 1
                log.warning("bus: listening again; catching up from the database")
                pause = RECONNECT_FIRST
                self._call_resync()
            try:
                for note in conn.notifies(timeout=_POLL):
                    self._deliver(note.payload)
                    if self._stopping.is_set():
                        break
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning("bus: the listening connection was lost (%s)", exc)
                self._close(conn)
                self._listen_conn = None
        if self._listen_conn is not None:
            self._close(self._listen_conn)
            self._listen_conn = None

    def _deliver(self, payload: str) -> None:
        try:
            node, events = unpack(payload)
        except ValueError as exc:
            log.warning("bus: ignored a malformed payload (%s)", exc)
            return
        assert self._receive is not None
        try:
            self._receive(node, events)
        except Exception:  # the listener must outlive a bug in one event's handling
            log.exception("bus: handling a payload failed")

    def _call_resync(self) -> None:
        assert self._resync is not None
        try:
            self._resync()
        except Exception:
            log.exception("bus: resync failed")

    @staticmethod
    def _close(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        try:
            conn.close()
        except Exception:  # already broken: nothing to release
            pass

    # --- the sender thread -------------------------------------------------------------

    def _send(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        pause = RECONNECT_FIRST
        pending: list[Event] = []
        stopping = False
        deadline: float | None = None
        while True:
            if not pending:
                if stopping:
                    break
                item = self._outbox.get()
                if item is None:
                    break
                pending.append(item)
            while True:  # everything queued now goes in one transaction
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping, deadline = True, time.monotonic() + 5.0
                    break
                pending.append(item)
            if len(pending) > SEND_QUEUE_MAX:
                drop = len(pending) - SEND_QUEUE_MAX
                del pending[:drop]
                self._dropped += drop
                log.error("bus: %d events dropped while the database was unreachable", drop)
            try:
                if conn is None:
                    conn = self._connect("notify")
                payloads = pack(self.node, pending)
                if len(payloads) == 1:  # the common case: one round trip, autocommit
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payloads[0]))
                else:  # several: one transaction, delivered together and in order
                    with conn.transaction():
                        for payload in payloads:
                            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                pending = []
                pause = RECONNECT_FIRST
            except psycopg.Error as exc:
                log.warning("bus: could not notify (%s); retrying in %.1f s", exc, pause)
                if conn is not None:
                    self._close(conn)
                    conn = None
                if stopping and deadline is not None and time.monotonic() > deadline:
                    log.error("bus: %d events not sent at shutdown", len(pending))
                    break
                time.sleep(pause)  # the sender's own back-off, no test waits on it
                pause = min(pause * 2, RECONNECT_MAX)
        if conn is not None:
            self._close(conn)
