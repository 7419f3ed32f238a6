"""One running server per node name on a shared PostgreSQL database: an advisory lock.

Several nodes may share one PostgreSQL database, but two servers with the same node name
would each close the other's sessions at start and hand out one node's work twice. A
server therefore holds a session-level advisory lock keyed by its node name for as long
as it runs, on a connection of its own (autocommit, idle otherwise). PostgreSQL drops the
lock when that connection ends, so a crashed node never leaves a stale lock behind; the
connection's application_name says who holds it, for the refusal's message.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("parley.store")

#: Both the lock's key and the holder's name start with this.
LOCK_PREFIX = "parley-node:"


class NodeLockTaken(Exception):
    """Another running server holds this node name on the database."""


def libpq_params(url: str) -> dict[str, Any]:
    """psycopg.connect keyword arguments for a SQLAlchemy PostgreSQL *url*."""
    u = make_url(url)
    params: dict[str, Any] = {
        "host": u.host,
        "port": u.port,
        "dbname": u.database,
        "user": u.username,
        "password": u.password,
    }
    params.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return {k: v for k, v in params.items() if v is not None}


class NodeLock:
    """The advisory lock of node *node* on the PostgreSQL database at *url*."""

    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self._conn: Any = None

    @property
    def held(self) -> bool:
        """Whether this lock is held (by this process)."""
        return self._conn is not None

    def acquire(self) -> None:
        """Take the lock, or raise NodeLockTaken naming the server that holds it."""
        import psycopg

        holder_name = f"{LOCK_PREFIX}{self.node} pid {os.getpid()} on {socket.gethostname()}"
        conn = psycopg.connect(
            **libpq_params(self.url), autocommit=True, application_name=holder_name[:63]
        )
        try:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + self.node,)
            ).fetchone()
            if row is None or not row[0]:
                raise NodeLockTaken(self._holder(conn))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _holder(self, conn: Any) -> str:
        row = conn.execute(
            "SELECT application_name, client_addr FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND pid <> pg_backend_pid() LIMIT 1",
            (f"{LOCK_PREFIX}{self.node} %",),
        ).fetchone()
        if row is None:
            return "another process"
        name, addr = row
        who = str(name).removeprefix(LOCK_PREFIX)
        return f"node {who}" + (f", from {addr}" if addr else "")

    def release(self) -> None:
        """Give the lock up (closing its connection). Safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # the lock goes with the connection anyway
                log.warning("closing the node lock's connection failed: %s", exc)
