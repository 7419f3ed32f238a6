"""Benchmark: one node against two nodes sharing PostgreSQL, same load, same run.

Starts a throw-away PostgreSQL server (tests/pgserver.py: initdb and pg_ctl, as
the postgres user when root) and, for each configuration in turn, a fresh
database and its server processes (bench/loadgen_serve.py), then runs the same
load of bench/loadgen.py against it: clients split evenly over the nodes (the
load generator's workers take the nodes' addresses in turn), every message
sent to `#lobby`, so every delivery of a message sent on one node to a client
on the other crosses the bus (NOTIFY, then a read of the row by id).

Configurations (--configs, in this order by default):

* `sqlite`: one node on a SQLite file (the embedded default, for reference);
* `pg-1`: one node on PostgreSQL, bus local (no other node to tell);
* `pg-2`: two nodes on PostgreSQL, bus postgres (LISTEN/NOTIFY).

The server figures (CPU, RSS) are the sum over a configuration's nodes;
PostgreSQL's own CPU is reported beside them (its postmaster and backends).

    python -m bench.nodes --clients 200 --rate 20 --seconds 10
    python -m bench.nodes --clients 100 --rate 10 --seconds 3 --configs pg-1,pg-2

A program, not a test; the lead runs the real one (the machine is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.loadgen import CHEAP_SCRYPT_N, PASSWORD, Load, Result, load_table, run_load
from bench.loadgen_serve import ParleyServer
from bench.loadgen_stats import process_cpu

CONFIGS = ("sqlite", "pg-1", "pg-2")


@dataclass
class Cluster:
    """The nodes of one configuration, as the load generator's target."""

    name: str
    addresses: list[tuple[str, int]]
    pids: list[int]
    ca_file: str
    dialect: str = "parley"
    servers: list[ParleyServer] = field(default_factory=list)
    #: The first node's address and PID (the generator's single-server fields).
    host: str = ""
    port: int = 0
    pid: int = 0


def _postgres_pids(datadir: Path) -> list[int]:
    """The postmaster and its children (backends, writer, WAL writer), from /proc."""
    try:
        master = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        # The parent PID is the fourth field, after the ")" that ends the name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(proc.name))
    return pids


def _start(
    config: str, stack: ExitStack, certs: Path, users: int, scrypt_n: int, pg: Any
) -> Cluster:
    """The nodes of *config*, started (stopped by *stack*)."""
    if config == "sqlite":
        nodes = [(None, "")]
    elif config == "pg-1":
        url = pg.url(pg.create_database("bench"))
        nodes = [(url, "bus='local' node='a'")]
    elif config == "pg-2":
        url = pg.url(pg.create_database("bench"))
        nodes = [(url, "bus='postgres' node='a'"), (url, "bus='postgres' node='b'")]
    else:
        raise SystemExit(f"unknown configuration {config!r} (one of {', '.join(CONFIGS)})")
    cluster = Cluster(config, [], [], str(certs / "ca.pem"))
    for i, (db_url, settings) in enumerate(nodes):
        server = ParleyServer(
            scrypt_n=scrypt_n,
            users=users if i == 0 else 0,  # the first node makes the accounts
            password=PASSWORD,
            db_url=db_url,
            certs=certs,
            settings=settings,
        )
        server.start()
        stack.callback(server.stop)
        cluster.servers.append(server)
        cluster.addresses.append((server.host, server.port))
        cluster.pids.append(server.pid)
    cluster.host, cluster.port = cluster.addresses[0]
    cluster.pid = cluster.pids[0]
    return cluster


def main(argv: list[str] | None = None) -> int:
    """Run the same load against each configuration; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.nodes", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second, all senders")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--saturate", action="store_true", help="send as fast as acks allow")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--scrypt-n", type=int, default=CHEAP_SCRYPT_N)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="seconds to wait for an idle machine before each load (others' jobs)",
    )
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait for stragglers")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    # Clients split over the nodes by worker: at least one worker per node.
    workers = max(args.workers, 2 if "pg-2" in configs else 1)
    load = Load(
        clients=args.clients,
        rate=0.0 if args.saturate else args.rate,
        seconds=args.seconds,
        saturate=args.saturate,
        workers=workers,
        wait_quiet=args.wait_quiet,
        drain=args.drain,
    )
    from parley_chat.certs import generate
    from tests.pgserver import PgServer

    rows: list[tuple[str, Result]] = []
    pg_cpu: dict[str, float] = {}
    with TemporaryDirectory(prefix="parley-bench-nodes-") as tmp, ExitStack() as outer:
        certs = Path(tmp) / "certs"
        generate(certs)
        pg = PgServer()
        pg.start()
        outer.callback(pg.stop)
        for config in configs:
            print(f"{config}: starting", file=sys.stderr, flush=True)
            with ExitStack() as stack:
                cluster = _start(config, stack, certs, args.clients, args.scrypt_n, pg)
                pg_pids = _postgres_pids(pg.datadir) if config != "sqlite" else []
                before = sum(process_cpu(p) for p in pg_pids)
                t0 = time.monotonic()
                result = run_load(cluster, load, log=lambda m: print(m, file=sys.stderr))
                pg_pids = _postgres_pids(pg.datadir) if config != "sqlite" else []
                pg_cpu[config] = sum(process_cpu(p) for p in pg_pids) - before
                print(
                    f"{config}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True
                )
            result.server = config
            rows.append((config, result))
    print(load_table(rows))
    print()
    print("| config | nodes | PostgreSQL CPU s (whole run) |")
    print("|---|---|---|")
    for config, _ in rows:
        nodes = 2 if config == "pg-2" else 1
        cpu = f"{pg_cpu[config]:.1f}" if config != "sqlite" else "-"
        print(f"| {config} | {nodes} | {cpu} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
