"""The non-blocking TLS byte stream that the server and the client
library share. It does I/O (unlike protocol/, which is sans-IO) but knows
nothing of frames, threads or selectors: the caller owns the loop and decides
when to read and write; this package only gets the ssl module's non-blocking
rules right once (WantRead/WantWrite, bytes OpenSSL already decrypted, writes
that must be retried with the same bytes).
"""

from .tlsstream import NetworkError, PeerClosed, StreamClosed, TLSStream

__all__ = ["NetworkError", "PeerClosed", "StreamClosed", "TLSStream"]
