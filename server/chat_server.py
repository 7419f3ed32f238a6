"""ChatServer, which wires config, store, hub, TLS, listener and
connections together and owns the start-up and shutdown order.

Start: lock the database (one server per database), migrate it (backing up
a non-empty database first), start the writer, end sessions a crash left
open, build the TLS context, bind, accept.
Stop: stop accepting, tell every client, let their threads finish (bounded),
flush the writer, release the lock. Nothing acked is lost: acks are sent
only after COMMIT, and the writer drains before it stops.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import weakref
from collections import Counter, deque
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from parley_chat.protocol import Error, ErrorCode

from . import store as store_pkg
from .auth import LoginThrottle, PasswordHasher
from .bus import Bus, LocalBus
from .bus_node import Node, identity
from .commands import WRITE_WAIT, Commands
from .config import ServerConfig
from .connection import Connection
from .database_file import DatabaseFile
from .errors import DatabaseUnavailable
from .handshake import Handshaker
from .hub import Hub
from .irc.connection import IrcConnection
from .irc.gateway import IrcGateway
from .listener import Listener, bind
from .loop import IOLoop
from .memory import TRIM_CHECK_INTERVAL, HeapTrimmer, limit_malloc_arenas, space_young_collections
from .presence import GraceTimers
from .reasons import stored_reason
from .store import DEFERRED, Store, queries, utcnow, writes
from .store.engine import display_url
from .store.errors import database_said
from .store.models import REASON_CHARS
from .store.vocab import EndReason
from .tls import server_context
from .workers import WorkerPool

log = logging.getLogger("parley.server")

#: How often session rows get their last_active_at refreshed.
_TOUCH_INTERVAL = 30.0
#: How long stop() waits for each of the server's worker pools and timer threads
#: once the connections are closed: they have nothing left to do by then, and one
#: still busy is a daemon thread, abandoned rather than waited on.
THREAD_STOP_WAIT = 2.0


try:
    import resource  # POSIX only: Windows has no descriptor limit to raise
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]


def _raise_nofile_limit() -> None:
    # Each connection needs two or three descriptors (socket + wake-up pair).
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class ChatServer:
    """One parley server. start() returns once it is listening; stop() shuts it down."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # Presence deltas wait for the first loop's lazy flush (server/hub.py).
        self._loops: list[IOLoop] = []
        self.hub = Hub(request_flush=lambda: self._loops[0].request_lazy_flush())
        self.hasher = PasswordHasher(
            config.scrypt_n, config.scrypt_r, config.scrypt_p, config.max_concurrent_hashes
        )
        # The file the store opens (a temporary one for an in-memory URL) and its lock.
        self.database = DatabaseFile(config.db_url, node=config.node)
        self.store: Store = Store(
            self.database.url,
            group_max=config.group_max,
            callback_scope=self.hub.batch,
            node=config.node,
        )
        self._login_pool = WorkerPool("login", config.login_workers)
        self._request_pool = WorkerPool("request", config.request_workers)
        self.commands = Commands(
            config,
            self.store,
            self.hub,
            self.hasher,
            login_pool=self._login_pool,
            request_pool=self._request_pool,
        )
        # Several nodes sharing a PostgreSQL database hear of each other's commits
        # over the bus (server/bus_node.py); one node alone delivers directly.
        bus: Bus = LocalBus()
        node_identity = identity(config.node)
        if config.bus == "postgres":
            from .bus_postgres import PgBus  # psycopg: only where it is used

            bus = PgBus(self.database.url, node_identity)
        self.node = Node(
            node_identity,
            bus,
            self.store,
            self.hub,
            self.commands.mutes,
            timeout=config.node_timeout,
        )
        self.commands.cluster = self.node
        # The IRC listener's handlers (server/irc/): the same store, hub, hasher and pools.
        self.irc = IrcGateway(
            config,
            self.commands,
            login_pool=self._login_pool,
            request_pool=self._request_pool,
        )
        self._irc_listener: Listener | None = None
        # Accepted on the IRC port, until admitted (weak: a socket shed meanwhile just goes).
        self._irc_accepted: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.ssl_context = server_context(config)
        self.migration: store_pkg.MigrationReport | None = None
        self._listener: Listener | None = None
        self._loops = [
            IOLoop(
                f"io-{i}",
                self.hub.flush_presence if i == 0 else None,
                self.store.gathering,
            )
            for i in range(config.io_threads)
        ]
        self._next_loop = 0
        self._handshaker = Handshaker(
            self.ssl_context, config.handshake_timeout, self._handshaken, self._handshake_failed
        )
        self._conns: set[Connection] = set()
        self._per_ip: Counter[str] = Counter()
        self._handshakes_per_ip: Counter[str] = Counter()
        self._handshakes = 0
        self._in_handshake: set[Connection] = set()
        # Accepted sockets waiting for a handshake slot (oldest first), per address too.
        self._waiting: deque[tuple[socket.socket, tuple[str, int], float]] = deque()
        self._waiting_per_ip: Counter[str] = Counter()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._maintenance = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
        self.heap = HeapTrimmer()
        self._grace = GraceTimers(self._grace_expired)

    @property
    def throttle(self) -> LoginThrottle:
        """The failed-login throttle per (nick, address)."""
        return self.commands.throttle

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Lock and migrate the database, start the writer, bind and accept."""
        _raise_nofile_limit()
        limit_malloc_arenas()  # before the server's threads start (server/memory.py)
        space_young_collections()
        sys.setswitchinterval(self.config.switch_interval)
        self._lock_database()
        try:
            try:
                self.migration = store_pkg.upgrade_to_head(
                    self.database.url, backup=self.config.backup_before_migrate
                )
                self.store.start()
            except SQLAlchemyError as exc:
                raise DatabaseUnavailable(_cannot_open(self.database.url, exc)) from exc
            started = utcnow()
            ended = self.store.submit_bookkeeping(
                # On a shared (PostgreSQL) database, the other nodes' sessions are live.
                lambda s: writes.end_open_sessions(
                    s,
                    EndReason.SERVER_RESTART,
                    started,
                    node=self.config.node if self.store.shared else None,
                ),
                what="end_open_sessions",
            ).result(WRITE_WAIT)
            if ended is DEFERRED:
                log.warning(
                    "the database refuses writes (%s): serving reads; sessions left open "
                    "are ended once it accepts writes",
                    self.store.last_write_error,
                )
            elif ended:
                log.info("ended %d session(s) left open by an earlier run", ended)
            # Listen to the other nodes, then read the largest id, then serve.
            self.node.start()
            if self.store.shared and self.config.bus == "local":
                log.info(
                    "bus = local on a shared database: this node delivers only what it "
                    "commits itself; with several nodes, run each with --bus postgres"
                )
            self._linger_cut_off(started)
            sock = bind(self.config.host, self.config.port, self.config.listen_backlog)
            irc_sock = None
            if self.config.irc_port:
                try:
                    irc_sock = bind(
                        self.config.host, self.config.irc_port, self.config.listen_backlog
                    )
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            self.node.stop()
            self.store.close()
            self._unlock_database()
            raise
        for loop in self._loops:
            loop.start()
        self._login_pool.start()
        self._request_pool.start()
        self._handshaker.start()
        self._listener = Listener(sock, self._accept)
        self._listener.start()
        if irc_sock is not None:
            self._irc_listener = Listener(irc_sock, self._accept_irc)
            self._irc_listener.start()
        self._maintenance.start()
        self._grace.start()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server listens on (the real port when configured with 0)."""
        assert self._listener is not None, "start() the server first"
        return self._listener.address

    @property
    def irc_address(self) -> tuple[str, int] | None:
        """The (host, port) of the IRC listener, or None when it is off."""
        return self._irc_listener.address if self._irc_listener is not None else None

    def serve_forever(self) -> None:
        """Block until stop() is called (from a signal handler or another thread)."""
        self._stopped.wait()

    def stop(self) -> None:
        """Stop accepting, tell clients, close connections, flush the writer."""
        if self._stopping.is_set():
            self._stopped.wait()
            return
        self._stopping.set()
        if self._listener is not None:
            self._listener.stop()
        if self._irc_listener is not None:
            self._irc_listener.stop()
        self._handshaker.stop()
        with self._conns_lock:
            conns = list(self._conns)
            waiting = [sock for sock, _, _ in self._waiting]
            self._waiting.clear()
            self._waiting_per_ip.clear()
        for sock in waiting:
            sock.close()
        notice = Error(code=ErrorCode.SHUTDOWN, message="the server is shutting down")
        for conn in conns:
            conn.close_soon(EndReason.SERVER_SHUTDOWN, notice)
        deadline = time.monotonic() + self.config.shutdown_grace
        for conn in conns:
            conn.wait_closed(max(0.0, deadline - time.monotonic()))
        self._login_pool.stop(THREAD_STOP_WAIT)
        self._request_pool.stop(THREAD_STOP_WAIT)
        for loop in self._loops:
            loop.stop()  # its own deadline: it may still be closing connections
        self._maintenance.join(THREAD_STOP_WAIT)
        self._grace.stop(THREAD_STOP_WAIT)
        self.node.stop()
        self.store.close()
        self._unlock_database()
        self._stopped.set()
        log.info("server stopped")

    # --- one server per database -----------------------------------------------------------

    def _lock_database(self) -> None:
        self.database.acquire()

    def _unlock_database(self) -> None:
        self.database.release()

    # --- connections ----------------------------------------------------------------------

    def _accept(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        # Runs on the accept thread: bookkeeping only, never I/O on the socket.
        ip = peer[0]
        cfg = self.config
        accepted_at = time.monotonic()
        with self._conns_lock:
            if self._stopping.is_set():
                sock.close()
                return
            if not self._slot_free_locked(ip):
                # No handshake slot for this address now: wait for one (holding
                # only a descriptor). When too many of this address's sockets
                # wait already, the oldest gives way: it is the likeliest to be
                # abandoned (a reconnecting client has given up on it).
                if len(self._waiting) >= cfg.listen_backlog:
                    sock.close()  # shed load at once: nothing was spent on it yet
                    return
                if self._waiting_per_ip[ip] >= cfg.max_connections_per_ip:
                    oldest = next(w for w in self._waiting if w[1][0] == ip)
                    self._waiting.remove(oldest)
                    self._waiting_per_ip[ip] -= 1
                    oldest[0].close()
                self._waiting.append((sock, peer, accepted_at))
                self._waiting_per_ip[ip] += 1
                return
            conn = self._admit_locked(sock, peer, accepted_at)
        self._start_handshake(conn)

    def _accept_irc(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        # The IRC port: the same admission and limits, an IRC connection at the end.
        with self._conns_lock:
            self._irc_accepted.add(sock)
        self._accept(sock, peer)

    def _slot_free_locked(self, ip: str) -> bool:
        # An address's handshakes are capped before it may take a global slot,
        # so silent sockets from one address never starve anyone else.
        return (
            self._handshakes < self.config.max_handshakes
            and self._handshakes_per_ip[ip] < self.config.max_handshakes_per_ip
        )

    def _admit_locked(
        self, sock: socket.socket, peer: tuple[str, int], accepted_at: float
    ) -> Connection:
        ip = peer[0]
        self._handshakes += 1
        self._handshakes_per_ip[ip] += 1
        over = self._per_ip[ip] >= self.config.max_connections_per_ip
        self._per_ip[ip] += 1
        refuse = ErrorCode.TOO_MANY_CONNECTIONS if over else None
        conn: Connection
        if sock in self._irc_accepted:
            self._irc_accepted.discard(sock)
            conn = IrcConnection(
                self.config,
                sock,
                peer,
                gateway=self.irc,
                finished=self._irc_finished,
                refuse=refuse,
            )
        else:
            conn = Connection(
                self.config,
                sock,
                peer,
                dispatch=self.commands.dispatch,
                finished=self._connection_finished,
                refuse=refuse,
            )
        conn.accepted_at = conn.last_rx = accepted_at  # the deadlines run from the accept
        self._conns.add(conn)
        self._in_handshake.add(conn)
        return conn

    def _start_handshake(self, conn: Connection) -> None:
        try:
            conn.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.config.socket_send_buffer:
                conn.raw.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.socket_send_buffer
                )
        except OSError:
            pass
        self._handshaker.add(conn)

    def _handshake_ended(self, conn: Connection) -> None:
        admitted: list[Connection] = []
        expired: list[socket.socket] = []
        with self._conns_lock:
            if conn not in self._in_handshake:
                return
            self._in_handshake.discard(conn)
            self._handshakes -= 1
            self._handshakes_per_ip[conn.peer_ip] -= 1
            if self._handshakes_per_ip[conn.peer_ip] <= 0:
                del self._handshakes_per_ip[conn.peer_ip]
            # A slot is free: start the oldest waiting socket that may take it.
            now = time.monotonic()
            for item in list(self._waiting):
                sock, peer, accepted_at = item
                ip = peer[0]
                late = now - accepted_at >= self.config.handshake_timeout
                if late or self._stopping.is_set():
                    expired.append(sock)
                    if late:
                        # Logged as the handshake stage logs its own time-outs.
                        logging.getLogger("parley.handshake").info(
                            "%s:%s: no TLS handshake within %.0f s",
                            peer[0],
                            peer[1],
                            self.config.handshake_timeout,
                        )
                elif self._slot_free_locked(ip):
                    admitted.append(self._admit_locked(sock, peer, accepted_at))
                else:
                    continue
                self._waiting.remove(item)
                self._waiting_per_ip[ip] -= 1
                if self._waiting_per_ip[ip] <= 0:
                    del self._waiting_per_ip[ip]
                if admitted:
                    break
        for sock in expired:
            sock.close()
        for waiting in admitted:
            self._start_handshake(waiting)

    def _handshaken(self, conn: Connection) -> None:
        # On the handshake thread: give the connection to the least busy loop.
        self._handshake_ended(conn)
        loop = min(self._loops, key=lambda lp: lp.connection_count())
        loop.adopt(conn)

    def _handshake_failed(self, conn: Connection, reason: str) -> None:
        self._handshake_ended(conn)
        conn.finish(reason)

    def _connection_finished(self, conn: Connection, reason: str) -> None:
        # On the connection's loop thread (or the handshake thread): presence,
        # session row, counters. Cheap: the session row goes through the writer.
        self._handshake_ended(conn)
        with self._conns_lock:
            if conn in self._conns:
                self._conns.discard(conn)
                self._per_ip[conn.peer_ip] -= 1
                if self._per_ip[conn.peer_ip] <= 0:
                    del self._per_ip[conn.peer_ip]
        if conn.user_id is None or conn.session_id is None:
            log.debug("%s closed before login: %s", conn.peer, reason)
            return
        log.info("%s (%s) disconnected: %s", conn.peer, conn.nick, reason)
        session_id, nick = conn.session_id, conn.nick
        at = utcnow()
        # The log has the details; the session row gets a short human phrase.
        stored = stored_reason(reason)[:REASON_CHARS]
        self.store.submit_bookkeeping(
            lambda s: writes.end_session(s, session_id, stored, at),
            what="end_session",
        )
        grace = self.config.presence_grace
        if grace > 0 and not self._stopping.is_set():
            # The user lingers as online; their rooms hear of it only if they
            # are still gone when the grace ends (_grace_expired).
            token = self.hub.release(conn, conn.user_id)
            if token is not None:
                self._grace.schedule(conn.user_id, token, grace)
            return
        rooms = self.hub.detach(conn, conn.user_id)
        if rooms is None or self._stopping.is_set():
            return
        # The user's last connection is gone: tell the rooms (presence only).
        with self.hub.batch():
            for room in rooms:
                self.hub.publish_presence(room, left=nick)

    def _irc_finished(self, conn: Connection, reason: str) -> None:
        # An IRC connection ended: where its device stopped reading, then as any other.
        from .irc.login import finished, forget_guest

        assert isinstance(conn, IrcConnection)
        try:
            finished(self.irc, conn)
        finally:
            self._connection_finished(conn, reason)
        forget_guest(self.irc, conn)

    def _grace_expired(self, user_id: int, token: int) -> None:
        # On the grace thread: the user did not come back in time.
        gone = self.hub.expire(user_id, token)
        if gone is None or self._stopping.is_set():
            return
        nick, rooms = gone
        with self.hub.batch():
            for room in rooms:
                self.hub.publish_presence(room, left=nick)

    def _linger_cut_off(self, started: datetime) -> None:
        # Users the last shutdown (or crash) cut off stay listed as online for
        # the grace, as if the restart were a reconnect: coming back then makes
        # no joined/left noise, and those who do not come back are told as left.
        grace = self.config.presence_grace
        if grace <= 0:
            return
        try:
            with self.store.read() as s:
                cut_off = queries.cut_off_by_restart(
                    s,
                    started - timedelta(seconds=grace),
                    node=self.config.node if self.store.shared else None,
                )
        except Exception:  # presence is a nicety: never a reason not to start
            log.exception("could not read the sessions the last shutdown ended")
            return
        for user_id, nick, rooms, ended_at in cut_off:
            token = self.hub.linger(user_id, nick, rooms)
            if token is not None:
                left = grace - max(0.0, (started - ended_at).total_seconds())
                self._grace.schedule(user_id, token, left)
        if cut_off:
            log.info(
                "%d user(s) cut off by the restart listed as online for %.0f s", len(cut_off), grace
            )

    def connection_count(self) -> int:
        """Open connections (logged in or not)."""
        with self._conns_lock:
            return len(self._conns)

    def _maintain(self) -> None:
        # Every few seconds: end the connections of sessions the operator revoked
        # (a password reset or a deleted account revokes the login's token). Every
        # 30 s: refresh sessions.last_active_at for connections that spoke recently.
        touched: dict[int, float] = {}
        last_touch = time.monotonic()
        # What start-up (imports, the migration check) freed goes back at once,
        # and what a burst of logins freed once it is over (server/memory.py).
        self.heap.trim()
        next_check = time.monotonic() + self.config.revocation_check_interval
        tick = min(TRIM_CHECK_INTERVAL, self.config.revocation_check_interval)
        submitted = self.store.jobs_submitted
        while not self._stopping.wait(tick):
            with self._conns_lock:
                counts = (len(self._conns), sum(c.session_id is not None for c in self._conns))
                busy = self._handshakes > 0 or bool(self._waiting)
            # Chat traffic since the last look: a due trim waits for a lull.
            seen = self.store.jobs_submitted
            traffic, submitted = seen != submitted, seen
            self.heap.look(*counts, busy, traffic)
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + self.config.revocation_check_interval
            with self._conns_lock:
                conns = [c for c in self._conns if c.session_id is not None]
            self._end_revoked(conns)
            if time.monotonic() - last_touch < _TOUCH_INTERVAL:
                continue
            last_touch = time.monotonic()
            fresh = [
                c.session_id
                for c in conns
                if c.session_id is not None and c.last_rx > touched.get(c.session_id, 0.0)
            ]
            if fresh:
                for sid in fresh:
                    touched[sid] = last_touch
                at = utcnow()
                self.store.submit_bookkeeping(
                    partial(writes.touch_sessions, ids=fresh, now=at), what="touch_sessions"
                )

    def _end_revoked(self, conns: list[Connection]) -> None:
        if not conns:
            return
        try:
            with self.store.read() as s:
                revoked = queries.revoked_sessions(s, [c.session_id for c in conns])  # type: ignore[misc]
        except Exception:  # a busy or failing database must not stop maintenance
            log.exception("could not check for revoked sessions")
            return
        for conn in conns:
            if conn.session_id in revoked:
                log.info("%s (%s): session revoked by the operator", conn.peer, conn.nick)
                conn.close_soon(
                    "account changed by the operator",
                    Error(
                        code=ErrorCode.AUTH_FAILED,
                        message="the operator reset your password, locked or removed your "
                        "account; log in again with the new password",
                    ),
                )


def _cannot_open(url: str, exc: SQLAlchemyError) -> str:
    """What the operator reads when the database at *url* cannot be opened or upgraded."""
    return (
        f"cannot open the database {display_url(url)}: {database_said(exc)}; check "
        "that --db (or PARLEY_DB, db_url) names a parley database the server can read "
        "and write"
    )
