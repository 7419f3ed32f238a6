"""Throughput and latency of the server under many busy clients.

N real TLS clients (ChatClient, the client library, all in a child
process so they do not share the server's GIL) send to #lobby for a
fixed time, each keeping a few messages in flight. Reported: messages
committed and acked per second, deliveries per second (every message reaches
every client), and the latency from send to ack and from send to delivery at
another client (p50 / p99).

  python -m bench.load [--clients 20] [--seconds 5] [--window 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

from parley_chat.certs import generate
from parley_chat.client import Acked, ChatClient, MessageReceived
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")


def _drive(
    address: tuple[str, int],
    ca: Path,
    clients: int,
    seconds: float,
    window: int,
    out: multiprocessing.Queue,
) -> None:
    """The clients, in their own process so they do not share the server's GIL.

    Each is a ChatClient (its own I/O thread); one thread per client keeps
    *window* sends in flight and reads that client's events.
    """
    host, port = address
    conns = []
    for i in range(clients):
        c = ChatClient(host, port, nick=f"load{i}", password="load-pw", ca_file=ca, register=True)
        c.connect()
        conns.append(c)
    for c in conns:  # settle: the logins' replays and join notices
        while True:
            try:
                c.events.get(timeout=0.3)
            except queue.Empty:
                break
    sent_at: dict[str, float] = {}
    ack_lat: list[float] = []
    deliver_lat: list[float] = []
    delivered = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    stop = start + seconds

    def worker(i: int) -> None:
        c, inflight, n = conns[i], 0, 0
        while True:
            now = time.perf_counter()
            while now < stop and inflight < window:
                key = f"{i}-{n}"
                sent_at[key] = time.perf_counter()
                cid = c.send_text(f"load {key}", room="#lobby")
                sent_at[cid] = sent_at[key]
                inflight, n = inflight + 1, n + 1
            if now >= stop and inflight == 0:
                return
            event = c.events.get(timeout=30)
            t = time.perf_counter()
            if isinstance(event, Acked):
                inflight -= 1
                with lock:
                    ack_lat.append(t - sent_at[event.client_id])
            elif isinstance(event, MessageReceived) and event.message.ref is None:
                m = event.message
                if m.from_ and m.from_ != c.nick:
                    # Another client's message: its text names its send time's key.
                    key = m.text.removeprefix("load ")
                    with lock:
                        delivered[0] += 1
                        if key in sent_at:
                            deliver_lat.append(t - sent_at[key])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close(timeout=2)
    out.put(
        {
            "acked/s": len(ack_lat) / elapsed,
            "delivered/s": delivered[0] / elapsed,
            "ack p50": statistics.median(ack_lat) * 1000,
            "ack p99": _pct(ack_lat, 0.99),
            "deliver p50": statistics.median(deliver_lat) * 1000,
            "deliver p99": _pct(deliver_lat, 0.99),
        }
    )


def run(clients: int, seconds: float, window: int) -> dict[str, float]:
    """Run one load test (server here, clients in a child process); returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "certs")
        server = ChatServer(ServerConfig.for_tests(f"sqlite:///{root / 'load.db'}", root / "certs"))
        server.start()
        try:
            out: multiprocessing.Queue = multiprocessing.Queue()
            child = multiprocessing.Process(
                target=_drive,
                args=(server.address, root / "certs" / "ca.pem", clients, seconds, window, out),
            )
            child.start()
            result = out.get(timeout=seconds + 120)
            child.join(30)
        finally:
            server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"load: clients send to #lobby for {args.seconds:.0f} s, {args.window} in flight each")
    print(
        f"{'clients':>7} {'acked/s':>9} {'delivered/s':>11} {'ack p50 ms':>10} {'p99':>7} "
        f"{'deliver p50 ms':>14} {'p99':>7}"
    )
    for n in args.clients:
        r = run(n, args.seconds, args.window)
        print(
            f"{n:>7} {r['acked/s']:>9.0f} {r['delivered/s']:>11.0f} {r['ack p50']:>10.1f} "
            f"{r['ack p99']:>7.1f} {r['deliver p50']:>14.1f} {r['deliver p99']:>7.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
