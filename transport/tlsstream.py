"""TLSStream, one non-blocking ssl.SSLSocket with an
outbound buffer.

Rules this module keeps:
1. Exactly one thread uses a TLSStream at a time (DESIGN.md section 3): it
   has no lock, because Python 3.11's ssl has none either.
2. read() drains everything readable, including bytes OpenSSL has already
   decrypted into its own buffer (SSLSocket.pending()), which select() and
   epoll cannot see. It stops early only at the caller's byte budget, and then
   says so (`has_buffered`), so the caller can come back without waiting for
   the socket to turn readable again.
3. After SSLWantWriteError OpenSSL must be given the same bytes again; the
   outbound buffer resends from its offset, so that always holds.
4. Errors leave as two classes: PeerClosed (a clean end of stream) and
   NetworkError (anything else that broke the connection). Callers translate
   them to their own side's vocabulary.
"""

from __future__ import annotations

import ssl

#: Bytes asked of one recv(): a TLS record holds at most 16 KiB of plaintext,
#: so this takes several records per call.
READ_CHUNK = 64 * 1024
#: Bytes handed to one send(): bounds the memoryview slice, not the total.
WRITE_CHUNK = 256 * 1024


class StreamClosed(Exception):
    """The TLS stream ended; `.reason` says how, in words fit for a log or a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerClosed(StreamClosed):
    """The peer ended the stream (TLS close_notify or TCP FIN)."""


class NetworkError(StreamClosed):
    """The connection broke: a reset, a TLS error, a failed send."""


class TLSStream:
    """A non-blocking TLS socket plus its outbound queue.

    `queue(data)` appends bytes (never blocks), `flush()` writes as much as the
    socket takes, `read(budget)` returns what has arrived. The socket must
    already be connected, handshaken and set non-blocking.
    """

    __slots__ = ("_out", "_out_bytes", "_wbuf", "_wpos", "has_buffered", "sock")

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self._out: list[bytes] = []  # a list: nothing pops from its front
        self._out_bytes = 0
        self._wbuf: bytes | memoryview = b""
        self._wpos = 0
        #: True when read() stopped at its budget with bytes possibly left in
        #: OpenSSL's buffer: call read() again before waiting on the socket.
        self.has_buffered = False

    # --- reading ----------------------------------------------------------------

    def read(self, budget: int = 1 << 30) -> bytes:
        """Everything readable now, up to about *budget* bytes (b"" if nothing).

        Raises PeerClosed or NetworkError when the stream has ended; bytes that
        arrived before the end are returned by the call before.
        """
        parts: list[bytes] = []
        got = 0
        self.has_buffered = False
        while True:
            if got >= budget:
                self.has_buffered = True
                break
            try:
                data = self.sock.recv(READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except ssl.SSLZeroReturnError as exc:
                if parts:
                    # Hand over what came first; the next read reports the end.
                    self.has_buffered = True
                    break
                raise PeerClosed("the peer closed the connection") from exc
            except ssl.SSLEOFError as exc:
                if parts:
                    self.has_buffered = True
                    break
                raise PeerClosed("the peer hung up without a TLS close") from exc
            except (ssl.SSLError, OSError) as exc:
                if parts:
                    self.has_buffered = True
                    break
                raise NetworkError(f"network error: {exc}") from exc
            if not data:
                if parts:
                    self.has_buffered = True
                    break
                raise PeerClosed("the peer closed the connection")
            parts.append(data)
            got += len(data)
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # --- writing ----------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Append *data* to the outbound queue (written by the next flush())."""
        self._out.append(data)
        self._out_bytes += len(data)

    def queue_many(self, chunks: list[bytes]) -> None:
        """Append several byte strings in order."""
        self._out.extend(chunks)
        self._out_bytes += sum(len(c) for c in chunks)

    @property
    def pending_bytes(self) -> int:
        """Bytes queued or partly written and not yet taken by the socket."""
        return self._out_bytes + len(self._wbuf) - self._wpos

    @property
    def wants_write(self) -> bool:
        """True while bytes wait to be written."""
        return bool(self._out) or self._wpos < len(self._wbuf)

    def flush(self) -> bool:
        """Write as much as the socket takes now. True when everything is written.

        Raises NetworkError if the connection broke.
        """
        while True:
            if self._wpos >= len(self._wbuf):
                if not self._out:
                    self._wbuf, self._wpos = b"", 0
                    return True
                # Coalesce: every queued frame goes into as few TLS records as
                # possible (one per 16 KiB), instead of one record per frame.
                out = self._out
                self._wbuf = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self._out_bytes = 0
                self._wpos = 0
            buf = self._wbuf
            if self._wpos or len(buf) > WRITE_CHUNK:
                buf = memoryview(buf)[self._wpos : self._wpos + WRITE_CHUNK]
            # else: the common case (one small write), sent without a view
            try:
                sent = self.sock.send(buf)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            except (ssl.SSLError, OSError) as exc:
                raise NetworkError(f"network error: {exc}") from exc
            self._wpos += sent

    def write(self, data: bytes) -> bool:
        """queue(data) and flush() in one call, cheaper when nothing else waits:
        one send() of *data* itself. True when everything is written.

        Raises NetworkError if the connection broke.
        """
        if self._out or self._wpos < len(self._wbuf) or len(data) > WRITE_CHUNK:
            self.queue(data)
            return self.flush()
        try:
            sent = self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except (ssl.SSLError, OSError) as exc:
            raise NetworkError(f"network error: {exc}") from exc
        if sent == len(data):
            return True
        # The rest goes out with the next flush(), from the same bytes (rule 3).
        self._wbuf, self._wpos = data, sent
        return False

    def discard_output(self) -> None:
        """Forget everything queued (the connection is being dropped)."""
        self._out.clear()
        self._out_bytes = 0
        self._wbuf, self._wpos = b"", 0

    def close(self) -> None:
        """Close the socket without waiting for the peer's close_notify (it could block)."""
        try:
            self.sock.close()
        except OSError:
            pass
