"""The server's own exceptions (the store has its own in
server/store/errors.py; wire errors are protocol.ProtocolError).

* ServerError                       never raised directly
  x StartupError                    the server cannot start: the operator must act
    + AddressInUse                  the port is taken (another server, or another program)
    + DatabaseLocked                another parley server already serves this database
    + DatabaseUnavailable           the database cannot be reached, created or opened
    + CertificateMissing            no server.pem/server.key in the certs directory
  x ConnectionClosed                a connection ended; `.reason` says why
    + PeerGone                      the peer hung up or the network failed (their side)
    + SendQueueExceeded             the peer stopped reading; we dropped it (their side)
    + ClosedByServer                we closed it (shutdown, timeout, protocol abuse)
"""


class ServerError(Exception):
    """Base of the server's exceptions."""


class StartupError(ServerError):
    """The server cannot start; the message says what the operator should do."""


class AddressInUse(StartupError):
    """The listening address is already taken."""


class DatabaseLocked(StartupError):
    """Another parley server holds this database's lock file."""


class DatabaseUnavailable(StartupError):
    """The database cannot be reached (PostgreSQL down), created (its folder is not
    writable) or opened (not a database): the URL or the machine needs fixing."""


class CertificateMissing(StartupError):
    """The certificate or key file is missing or unreadable."""


class ConnectionClosed(ServerError):
    """A connection ended. `reason` is what is stored in the session row."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerGone(ConnectionClosed):
    """The peer closed the connection or the network failed: nothing we did."""


class SendQueueExceeded(ConnectionClosed):
    """The peer did not read fast enough and its send queue overflowed."""


class ClosedByServer(ConnectionClosed):
    """The server closed the connection on purpose."""
