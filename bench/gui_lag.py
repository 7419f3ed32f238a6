"""How responsive the desktop client stays under a message
flood. A program, not a test: `python -m bench.gui_lag` prints a table.

It starts a real server (temp database, temp certificates from
certs.generate), opens the real window on $DISPLAY (or on an Xvfb started
with pyvirtualdisplay), logs it in, and has a separate ChatClient post
--rate messages per second for --seconds seconds into #lobby. Meanwhile a
repeating after(10) probe on the Tk event loop records how late each tick
runs: that lateness is the lag a user would feel when typing or scrolling.

This program imports client.gui (it measures that window); nothing else
outside the GUI's own package and tests does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

PROBE_MS = 10


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.gui_lag",
        description="Event-loop lag of the desktop client while a sender floods #lobby.",
    )
    parser.add_argument("--rate", type=int, default=200, help="messages per second (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (10)")
    parser.add_argument("--geometry", default="1180x740", help="window size")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        if not os.environ.get("DISPLAY"):
            from pyvirtualdisplay import Display

            stack.enter_context(Display(size=(1280, 800), color_depth=24))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-gui-lag-")))
        return _run(args, tmp, stack)


def _run(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> int:
    from parley_chat.certs import generate
    from parley_chat.client import ChatClient
    from parley_chat.server.chat_server import ChatServer
    from parley_chat.server.config import ServerConfig

    paths = generate(tmp / "certs")
    # The sender posts far above the default flood limit (5/s): raise it, and use
    # a cheap password hash so logging in costs nothing.
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        db_url=f"sqlite:///{tmp / 'chat.db'}",
        certs_dir=tmp / "certs",
        flood_burst=100_000,
        flood_rate=100_000.0,
        flood_backlog=100_000,
        scrypt_n=2**10,
        backup_before_migrate=False,
        log_level="WARNING",
    )
    server = ChatServer(config)
    server.start()
    stack.callback(server.stop)
    host, port = server.address

    import customtkinter as ctk

    from parley_chat.client.gui.app import App
    from parley_chat.client.settings import Settings, SettingsStore

    ctk.set_appearance_mode("light")
    settings = Settings(
        host=host,
        port=port,
        ca_file=str(paths.ca_cert),
        nick="viewer",
        register=True,
        geometry=args.geometry,
    )
    app = App(SettingsStore(tmp / "config"), settings=settings, password="viewer-pw")
    deadline = time.monotonic() + 20
    while app.statusbar.state != "connected":
        app.update()
        if time.monotonic() > deadline:
            print("the window did not connect within 20 s", file=sys.stderr)
            return 1
        time.sleep(0.01)

    sender = ChatClient(
        host, port, nick="sender", password="sender-pw", ca_file=paths.ca_cert, register=True
    )
    sender.connect()
    stack.callback(sender.close, "bench done", 2.0)
    total = int(args.rate * args.seconds)
    sent_done = threading.Event()
    send_times: list[float] = []

    def send() -> None:
        start = time.perf_counter()
        for i in range(total):
            # Paced by the clock, not by sleeps adding up.
            target = start + i / args.rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sender.send_text(f"load {i:05d} the quick brown fox jumps over the lazy dog")
        send_times.append(time.perf_counter() - start)
        sent_done.set()

    lags: list[float] = []
    idle_lags: list[float] = []
    state: dict[str, Any] = {"expected": 0.0, "phase": "idle", "drained_at": 0.0}
    lobby_key = "#lobby"

    def shown() -> int:
        conv = app.model.conversations.get(lobby_key)
        if conv is None:
            return 0
        return sum(1 for ln in conv.lines if ln.sender == "sender")

    def probe() -> None:
        now = time.perf_counter()
        lag = max(0.0, now - state["expected"]) * 1000
        (lags if state["phase"] == "load" else idle_lags).append(lag)
        state["expected"] = time.perf_counter() + PROBE_MS / 1000
        app.after(PROBE_MS, probe)

    def watch() -> None:
        if state["phase"] == "idle" and len(idle_lags) >= 100:
            state["phase"] = "load"
            state["load_start"] = time.perf_counter()
            threading.Thread(target=send, name="bench-sender", daemon=True).start()
        elif state["phase"] == "load" and sent_done.is_set() and shown() >= total:
            state["drained_at"] = time.perf_counter()
            app.quit()
            return
        elif (
            state["phase"] == "load"
            and time.perf_counter() - state["load_start"] > args.seconds + 30
        ):
            app.quit()
            return
        app.after(50, watch)

    state["expected"] = time.perf_counter() + PROBE_MS / 1000
    app.after(PROBE_MS, probe)
    app.after(50, watch)
    app.mainloop()  # the real event loop, as a user runs it

    shown_count = shown()
    drain = (
        state["drained_at"] - state.get("load_start", 0.0) - (send_times[0] if send_times else 0)
    )
    conv = app.model.conversations.get(lobby_key)
    ids = (
        [ln.id for ln in conv.lines if ln.sender == "sender" and ln.id is not None] if conv else []
    )
    in_order = ids == sorted(ids) and len(ids) == len(set(ids))
    app.shutdown(timeout=1.0)

    print()
    print(f"parley GUI event-loop lag: {args.rate} msg/s for {args.seconds:g} s into #lobby")
    print(f"(after({PROBE_MS}) probe on the Tk loop; lag = how late each tick ran)")
    print()
    print(f"{'phase':<8} {'ticks':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (("idle", idle_lags), ("load", lags)):
        print(
            f"{name:<8} {len(values):>6} {_percentile(values, 50):>8.2f} "
            f"{_percentile(values, 95):>8.2f} {_percentile(values, 99):>8.2f} "
            f"{max(values, default=float('nan')):>8.2f}"
        )
    print()
    print(f"messages sent   {total}")
    print(f"messages shown  {shown_count} (in order, once each: {'yes' if in_order else 'NO'})")
    if send_times:
        print(f"send duration   {send_times[0]:.2f} s")
        print(
            f"all shown       within {drain * 1000:.0f} ms of the last send (checked every 50 ms)"
        )
    if lags:
        print(f"mean load lag   {statistics.fmean(lags):.2f} ms")
    return 0 if shown_count == total else 1


if __name__ == "__main__":
    sys.exit(main())
