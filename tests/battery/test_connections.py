# Battery #1-#6 and pending item f: what reaches the port before a login.
# Plaintext, silence, trickled handshakes, too many sockets from one address,
# churn, and a TLS client that never logs in. The per-address connection cap
# is the default (16) everywhere here: for_tests relaxes it.

from __future__ import annotations

import threading
import time

from parley_chat.protocol import ErrorCode, Ping, Pong
from tests.battery.helpers import (
    DEFAULT_CONNECTION_LIMITS,
    OTHER_SOURCE,
    Client,
    barrier,
    client_hello,
    closed_within,
    codes,
    read_until_closed,
    silent_socket,
    wait_for,
)

#: Threads a server may start lazily (an I/O pool, say) on top of its baseline.
_THREAD_SLACK = 8


def _accepted(client: Client, token: str) -> bool:
    """True if the server serves *client* (a pong), False if it refused it (an error or EOF)."""
    try:
        client.send(Ping(token=token))
        frame = client.recv(5)
    except (EOFError, OSError):
        return False
    return isinstance(frame, Pong)


def test_plaintext_clients_are_told_in_plaintext_and_closed_at_once(server, battery):
    """Battery #1: a JSON line or an HTTP request on the TLS port: one plaintext error, close in < 1 s."""
    baseline = threading.active_count()
    payloads = [b'{"type":"hello"}\n', b"GET / HTTP/1.0\r\n\r\n"] * 10
    peers = []
    for payload in payloads:
        sock = silent_socket(server.address)
        with sock:
            peers.append(f"{sock.getsockname()[0]}:{sock.getsockname()[1]}")
            sock.sendall(payload)
            data, elapsed = read_until_closed(sock, timeout=5)
        assert elapsed < 1.0, f"closed after {elapsed:.2f} s"
        assert b'"code":"tls-required"' in data and data.endswith(b"\n") and data.count(b"\n") == 1
    for peer in peers:  # logged once per client, at INFO, with the peer's address
        battery.wait_for_log(lambda r, peer=peer: peer in r.getMessage())
        said = [r for r in battery.server_records() if peer in r.getMessage()]
        assert len(said) == 1 and "plaintext" in said[0].getMessage(), said
    wait_for(
        lambda: True if threading.active_count() <= baseline + _THREAD_SLACK else None,
        5,
        "the connection threads to end",
    )
    battery.finish(server)


def test_silent_sockets_do_not_delay_a_good_client_and_close_at_the_deadline(make_server, battery):
    """Battery #2: ten silent TCP sockets and a half-sent ClientHello: a good client logs in at once (< 2 s); they close at the deadline."""
    server = make_server(handshake_timeout=2.0, **DEFAULT_CONNECTION_LIMITS)
    # Before the first connect: every socket's deadline runs from its accept, after this,
    # so none can close sooner than 2 s after it, however long opening them takes.
    opened = time.monotonic()
    silent = [silent_socket(server.address) for _ in range(10)]
    half = silent_socket(server.address)
    half.sendall(client_hello()[:40])
    try:
        started = time.monotonic()
        alice = battery.online(server, "alice")
        barrier(alice, "ready")
        # < 2 s: generous for a shared CI machine (about 20 ms here).
        assert time.monotonic() - started < 2.0, "a good client waited on the silent ones"
        for sock in [*silent, half]:
            _, _ = read_until_closed(sock, timeout=10)
            age = time.monotonic() - opened
            assert 1.5 <= age <= 2.0 + 2.0, f"closed {age:.2f} s after connecting"
    finally:
        for sock in [*silent, half]:
            sock.close()
    timed_out = [r for r in battery.server_records() if "no TLS handshake" in r.getMessage()]
    assert len(timed_out) == 11
    battery.finish(server)


def test_a_trickled_handshake_is_closed_at_the_total_deadline(make_server, battery):
    """Battery #3: a ClientHello sent one byte every 0.25 s is cut at the total handshake deadline (2 s), not per byte."""
    server = make_server(handshake_timeout=2.0)
    hello = client_hello()
    with silent_socket(server.address) as sock:
        started = time.monotonic()
        closed_after = None
        for byte in hello:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            # The pause between bytes is spent waiting for the sign: the server hanging up.
            if closed_within(sock, 0.25):
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "the whole ClientHello trickled in and the server waited"
    assert 1.5 <= closed_after <= 2.0 + 1.5, f"closed after {closed_after:.2f} s"
    battery.wait_for_log(lambda r: "no TLS handshake" in r.getMessage())
    battery.finish(server)


def test_connections_beyond_the_address_cap_are_refused_at_once(make_server, battery):
    """Battery #4: 50 idle TLS connections from one address: 16 served, 34 refused at once; another address is unaffected."""
    server = make_server(**DEFAULT_CONNECTION_LIMITS)
    baseline = threading.active_count()
    kept = [battery.connect(server) for _ in range(16)]
    assert all(_accepted(c, f"k{i}") for i, c in enumerate(kept))
    for _ in range(34):
        started = time.monotonic()
        extra = battery.connect(server)
        frames = extra.expect_closed(timeout=5)
        assert time.monotonic() - started < 1.0, "a refused connection was kept waiting"
        assert codes(frames) == [ErrorCode.TOO_MANY_CONNECTIONS]
    # Behaviour, not internals: the refused ones hold nothing (threads only loosely).
    wait_for(
        lambda: True if threading.active_count() <= baseline + 16 + _THREAD_SLACK else None,
        5,
        "the refused connections' threads to end",
    )
    started = time.monotonic()
    other = battery.online(server, "alice", source=OTHER_SOURCE)
    barrier(other, "in")
    assert time.monotonic() - started < 2.0  # generous: about 20 ms here
    assert all(_accepted(c, f"still{i}") for i, c in enumerate(kept)), "the kept ones were dropped"
    for c in kept:
        c.close()
    battery.finish(server)


def test_connect_churn_gives_every_address_slot_back(make_server, battery):
    """Battery #5: 200 connects in a burst (100 bare TCP, 100 TLS) from one address: afterwards all 16 slots are free again."""
    server = make_server(**DEFAULT_CONNECTION_LIMITS)
    for _ in range(100):
        silent_socket(server.address).close()
    for _ in range(100):
        battery.connect(server).close()

    def sixteen_get_in() -> bool | None:
        clients = [battery.connect(server) for _ in range(16)]
        try:
            return True if all(_accepted(c, f"s{i}") for i, c in enumerate(clients)) else None
        finally:
            for c in clients:
                c.close()

    wait_for(sixteen_get_in, 10, "the churned connections' slots to be released")
    battery.finish(server)


def test_pings_before_login_do_not_extend_the_login_deadline(make_server, battery):
    """Battery #6: a TLS client that only pings, never logs in, is closed with `timeout` at the login deadline (2 s)."""
    server = make_server(login_timeout=2.0)
    client = battery.connect(server)
    started = time.monotonic()
    frames = []
    pongs = 0
    while not client.closed:
        assert time.monotonic() - started < 6, "never closed"
        try:
            client.send(Ping(token=f"p{pongs}"))
            frames += client.recv_until(lambda f: isinstance(f, Pong), timeout=1.0)
            pongs += 1
            frames.append(client.recv(0.3))  # the pause between pings waits for the close
        except TimeoutError:
            continue
        except (EOFError, OSError):
            break
    elapsed = time.monotonic() - started
    frames += [] if client.closed else client.expect_closed(timeout=3)
    assert codes(frames) == [ErrorCode.TIMEOUT]
    assert pongs >= 3, "it was not pinging through the deadline"
    assert 1.0 <= elapsed <= 2.0 + 1.0, f"closed after {elapsed:.2f} s"
    battery.finish(server)


# --- pending item f: handshake slots -----------------------------------------------------


def test_silent_sockets_over_the_address_cap_take_no_handshake_slot(make_server, battery):
    """Battery #2/#4, item f: 16 + 50 silent sockets from one address; a client from another logs in < 2 s."""
    server = make_server(**DEFAULT_CONNECTION_LIMITS)
    silent = [silent_socket(server.address, "127.0.0.1") for _ in range(16 + 50)]
    try:
        started = time.monotonic()
        other = battery.online(server, "alice", source=OTHER_SOURCE)
        barrier(other, "in")
        assert time.monotonic() - started < 2.0
    finally:
        for sock in silent:
            sock.close()
    battery.finish(server)


def test_one_address_holds_at_most_its_share_of_handshake_slots(make_server, battery):
    """Battery #2, item f: 40 silent sockets from each of 15 addresses (600 > 256 slots, but
    each address holds at most its 16); a 16th address still logs in < 2 s."""
    server = make_server(**DEFAULT_CONNECTION_LIMITS)
    silent = [silent_socket(server.address, f"127.0.0.{3 + i // 40}") for i in range(15 * 40)]
    try:
        started = time.monotonic()
        other = battery.online(server, "alice", source=OTHER_SOURCE)
        barrier(other, "in")
        assert time.monotonic() - started < 2.0
    finally:
        for sock in silent:
            sock.close()
    battery.finish(server)
