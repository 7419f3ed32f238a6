"""The accept loop.

Rules this module keeps:
1. The accept thread only accepts: no TLS, no reads. Each socket is handed
   to the handshake stage (server/handshake.py), which does the handshake
   under a deadline, so a client that never handshakes stalls nobody.
2. Connections and handshakes per address, and handshakes overall, are
   capped by the callback (ChatServer._accept) before anything is spent.
3. Running out of descriptors (EMFILE and friends) is logged and retried
   after a pause, like trio's serve_listeners; other errors stop the loop.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .errors import AddressInUse

log = logging.getLogger("parley.listener")

_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_CAPACITY_PAUSE = 0.1
#: How long stop() waits for the accept thread (any on_accept call in progress:
#: the thread itself wakes at once, see Listener).
_STOP_WAIT = 5.0


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on (host, port) with *backlog* (ServerConfig.listen_backlog).

    Raises AddressInUse with a clear message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Reuse TIME_WAIT addresses after a restart, but never steal a live listener
        # (Linux refuses a second bind on a listening port even with SO_REUSEADDR).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"{host}:{port} is already in use (another parley server, or another "
                "program); stop it or choose another port with --port"
            ) from exc
        raise AddressInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class Listener:
    """Accepts on a bound socket and calls `on_accept(sock, peer)` for each connection.

    The accept thread waits in a selector on the listening socket and on a
    wake-up socketpair, so stop() wakes it at once (closing a socket under a
    thread blocked in accept() is unsafe, and polling with a timeout cost every
    stop up to one poll interval).
    """

    def __init__(
        self, sock: socket.socket, on_accept: Callable[[socket.socket, tuple[str, int]], None]
    ) -> None:
        self._sock = sock
        self._on_accept = on_accept
        self._stopping = threading.Event()
        self._sock.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="accept", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Start the accept thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the pair is gone: the thread has ended
        self._thread.join(_STOP_WAIT)
        self._sock.close()
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                sel.select()
                if self._stopping.is_set() or not self._accept_ready():
                    return

    def _accept_ready(self) -> bool:
        """Accept every connection waiting now; False when the listener must stop."""
        while not self._stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except BlockingIOError:
                return True
            except OSError as exc:
                if self._stopping.is_set():
                    return False
                if exc.errno in _CAPACITY_ERRNOS:
                    log.error(
                        "accept returned %s (%s); retrying in %s s",
                        errno.errorcode.get(exc.errno),
                        exc.strerror,
                        _CAPACITY_PAUSE,
                    )
                    time.sleep(_CAPACITY_PAUSE)
                    continue
                log.exception("accept failed; the listener stops")
                return False
            try:
                self._on_accept(conn, peer[:2])
            except Exception:
                log.exception("could not start a connection from %s", peer)
                conn.close()
        return False
