# Stress: twenty real TLS clients send and receive at full speed at once, each
# socket owned by one thread. No TLS error, and every acked message reaches
# every client exactly once.

from __future__ import annotations

import threading
import time
from collections import Counter

from parley_chat.protocol import Ack, Error, Message, Send
from tests.support import RawClient, barrier

CLIENTS = 20
SEND_SECONDS = 3.0
WINDOW = 8  # unacked sends a client keeps in flight


def test_twenty_clients_at_full_speed(server, ca_file):
    clients = []
    for i in range(CLIENTS):
        c = RawClient(server.address, ca_file)
        c.login(f"load{i}")
        clients.append(c)
    for c in clients:
        barrier(c)  # logged in and served (presence deltas after it are skipped below)

    acked: list[set[int]] = [set() for _ in range(CLIENTS)]
    received: list[Counter[int]] = [Counter() for _ in range(CLIENTS)]
    failures: list[str] = []
    all_sent = threading.Barrier(CLIENTS)

    def receive(i: int) -> int:
        """Read one frame for client i; returns how many of its sends it acked."""
        frame = clients[i].recv(10)
        if isinstance(frame, Ack):
            acked[i].add(frame.id)
            return 1
        if isinstance(frame, Message):
            received[i][frame.id] += 1
        elif isinstance(frame, Error):
            failures.append(f"client {i}: {frame.code} {frame.message}")
        return 0

    def run(i: int) -> None:
        c = clients[i]
        inflight = 0
        n = 0
        try:
            stop_sending = time.monotonic() + SEND_SECONDS
            while time.monotonic() < stop_sending:
                while inflight < WINDOW:
                    c.send(Send(id=f"c{i}-{n}", text=f"load {i} {n}", room="#lobby"))
                    inflight += 1
                    n += 1
                inflight -= receive(i)
            while inflight:
                inflight -= receive(i)
            all_sent.wait(30)
            # Every client's acks are in; read until all of them have arrived here.
            expected = set().union(*acked)
            deadline = time.monotonic() + 30
            while not expected <= received[i].keys():
                frame = c.recv(max(0.01, deadline - time.monotonic()))
                if isinstance(frame, Message):
                    received[i][frame.id] += 1
        except Exception as exc:  # recorded, then asserted on the test thread
            failures.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert failures == []
    expected = set().union(*acked)
    assert len(expected) >= CLIENTS * WINDOW  # every client got acks, the load really ran
    for i in range(CLIENTS):
        assert expected <= received[i].keys(), f"client {i} missed messages"
        assert max(received[i].values()) == 1, f"client {i} got a message twice"
    for c in clients:
        c.close()
