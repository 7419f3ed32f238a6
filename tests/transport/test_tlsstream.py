"""TLSStream.write(): one send when nothing waits, the rest kept in order when the
socket is full (a real TLS connection over a socket pair)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley_chat.client.tls import client_context
from parley_chat.transport import NetworkError, TLSStream


@pytest.fixture
def pair(certs_dir: Path, ca_file: Path) -> Iterator[tuple[TLSStream, ssl.SSLSocket]]:
    """(the server side as a non-blocking TLSStream, the client's blocking SSLSocket)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs_dir / "server.pem", certs_dir / "server.key")
    a, b = socket.socketpair()
    client = client_context(ca_file).wrap_socket(
        b, server_hostname="localhost", do_handshake_on_connect=False
    )
    server = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    shaker = threading.Thread(target=client.do_handshake)
    shaker.start()
    server.do_handshake()
    shaker.join(10)
    server.setblocking(False)
    client.settimeout(10)
    try:
        yield TLSStream(server), client
    finally:
        server.close()
        client.close()


def _read(client: ssl.SSLSocket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = client.recv(n - len(got))
        assert chunk, "the stream ended early"
        got += chunk
    return got


def test_a_small_write_goes_out_at_once(pair: tuple[TLSStream, ssl.SSLSocket]) -> None:
    stream, client = pair
    assert stream.write(b"hello\n") is True
    assert not stream.wants_write and stream.pending_bytes == 0
    assert _read(client, 6) == b"hello\n"


def test_a_write_into_a_full_socket_keeps_the_rest_in_order(
    pair: tuple[TLSStream, ssl.SSLSocket],
) -> None:
    stream, client = pair
    lines = [f"{i:08d}".encode() * 128 + b"\n" for i in range(2000)]  # ~2 MB, more than fits
    written = [stream.write(line) for line in lines]
    assert False in written, "the peer reads nothing yet: the socket must fill up"
    assert stream.wants_write
    expected = b"".join(lines)
    got = bytearray()
    # Read on this thread and flush between reads until everything is through.
    client.settimeout(0.5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stream.flush()
        try:
            got += client.recv(1 << 16)
        except TimeoutError:
            pass
        if len(got) >= len(expected):
            break
    assert bytes(got) == expected
    assert stream.flush() is True and stream.pending_bytes == 0


def test_a_write_to_a_closed_peer_is_a_network_error(
    pair: tuple[TLSStream, ssl.SSLSocket],
) -> None:
    stream, client = pair
    client.close()
    with pytest.raises(NetworkError):
        for _ in range(1000):  # the first writes may still land in the kernel's buffer
            stream.write(b"x" * 4096)
