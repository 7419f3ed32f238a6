"""How long a rejoin's replay of 500 messages takes when the
database holds 10,000 or 1,000,000 messages.

The database is filled with plain INSERTs in large transactions (the FTS
triggers run, as in production), then a real server replays to a real TLS
client (the client library, as users run it). Reported: the replay query
alone (through the store, the same call the server makes), the whole rejoin
as a user sees it (TLS connect, login, the end of the replay batch received
as events), and the number of SQL statements the replay query issued. Then
the other reads of a login, through the store: a replay far behind (last_seen
at half the history: 500 of far more, with the gap flag), a fresh login's
latest messages (no last_seen) and the conversation list.

  python -m bench.replay [--sizes 10000 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import event

from parley_chat.certs import generate
from parley_chat.client import BatchEnded, ChatClient, MessageReceived
from parley_chat.server.auth import PasswordHasher
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig
from parley_chat.server.store import Store, queries, upgrade_to_head

REPLAY = 500
USERS = 50
WORDS = [
    "lab",
    "meeting",
    "at",
    "three",
    "bring",
    "the",
    "slides",
    "coffee",
    "build",
    "failed",
    "again",
    "who",
    "broke",
    "main",
    "lunch",
    "pizza",
    "tonight",
    "server",
    "restart",
    "patch",
    "deployed",
    "ok",
    "thanks",
    "see",
    "you",
    "tomorrow",
]


def fill(db: Path, total: int) -> None:
    """Users u0..u49 (all in #lobby and #dev), then *total* public and private messages."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")  # filling only; the server runs with FULL
    t0 = datetime(2026, 1, 1)
    password_hash = PasswordHasher(n=2**4).hash("secret-pw")
    with con:
        con.execute(
            "INSERT INTO rooms (name, name_key, created_at) VALUES ('#dev', '#dev', ?)", (t0,)
        )
        for i in range(USERS):
            con.execute(
                "INSERT INTO users (nick, nick_key, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (f"u{i}", f"u{i}", password_hash, t0),
            )
        con.execute(
            "INSERT INTO room_members (room_id, user_id, joined_at) "
            "SELECT rooms.id, users.id, ? FROM rooms, users",
            (t0,),
        )
    rng = random.Random(1)
    batch = 50_000
    done = 0
    while done < total:
        rows: list[tuple[str, str, int | None, int, int | None, str, str]] = []
        for n in range(done, min(total, done + batch)):
            sender = rng.randrange(USERS) + 1
            text = " ".join(rng.choices(WORDS, k=rng.randint(3, 14)))
            ts = (t0 + timedelta(seconds=n)).isoformat(sep=" ")
            if n % 10 == 0:
                recipient = rng.randrange(USERS) + 1
                rows.append((ts, "private", None, sender, recipient, text, f"c{n}"))
            else:
                rows.append((ts, "public", 1 + n % 2, sender, None, text, f"c{n}"))
        with con:
            con.executemany(
                "INSERT INTO messages (created_at, kind, room_id, sender_id, recipient_id, body,"
                " client_msg_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        done += len(rows)
    con.close()


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"{statistics.median(values) * 1000:8.2f} {p95 * 1000:8.2f}"


def login_reads(db_url: str, runs: int) -> dict[str, str]:
    """p50/p95 of a login's other reads for u0: a replay from half-way, the
    latest messages of a fresh login, the conversation list."""
    store = Store(db_url)
    store.start()
    with store.read() as s:
        top = s.connection().exec_driver_sql("SELECT max(id) FROM messages").scalar() or 0
    reads = {
        "far": lambda s: queries.replay_after(s, 1, top // 2, REPLAY),
        "fresh": lambda s: queries.latest_for_user(s, 1, per_room=50, private_limit=50),
        "conversations": lambda s: queries.conversations(s, 1),
    }
    out = {}
    try:
        for name, read in reads.items():
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                with store.read() as s:
                    read(s)
                times.append(time.perf_counter() - t)
            out[name] = _ms(times)
    finally:
        store.close()
    return out


def measure(db_url: str, certs_dir: Path, runs: int) -> tuple[str, str, int, int]:
    """(query p50/p95, rejoin p50/p95, SQL statements per replay, messages replayed)."""
    store = Store(db_url)
    store.start()
    statements = 0

    def count(_conn: object, _cursor: object, statement: str, *_a: object) -> None:
        nonlocal statements
        statements += statement.lstrip().upper().startswith("SELECT")

    with store.read() as s:
        top = s.connection().exec_driver_sql("SELECT max(id) FROM messages").scalar() or 0
    after = top - REPLAY  # u0 sees all public messages of its two rooms and some private ones
    assert store._reader_engine is not None
    event.listen(store._reader_engine, "before_cursor_execute", count)
    query_times = []
    for _ in range(runs):
        statements = 0
        t = time.perf_counter()
        with store.read() as s:
            _got, _gap = queries.replay_after(s, 1, after - REPLAY, REPLAY)
        query_times.append(time.perf_counter() - t)
        per_replay = statements
    event.remove(store._reader_engine, "before_cursor_execute", count)
    store.close()

    cfg = ServerConfig.for_tests(db_url, certs_dir, scrypt_n=2**4)
    server = ChatServer(cfg)
    server.start()
    rejoin_times = []
    replayed = 0
    try:
        for _ in range(runs):
            host, port = server.address
            client = ChatClient(
                host,
                port,
                nick="u0",
                password="secret-pw",
                ca_file=certs_dir / "ca.pem",
                last_seen=after - REPLAY,
                auto_reconnect=False,
            )
            t = time.perf_counter()
            client.connect()  # TLS connect, handshake, login; the replay follows
            replayed = 0
            while True:
                got = client.events.get(timeout=30)
                if isinstance(got, MessageReceived) and got.batch == "replay":
                    replayed += 1
                elif isinstance(got, BatchEnded) and got.kind == "replay":
                    break
            rejoin_times.append(time.perf_counter() - t)
            client.close()
    finally:
        server.stop()
    return _ms(query_times), _ms(rejoin_times), per_replay, replayed


def main(argv: list[str] | None = None) -> int:
    """Fill databases of the given sizes and print the replay timing table."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "certs")
        print(f"replay of {REPLAY} messages after last_seen (p50 / p95 over {args.runs} runs, ms)")
        print(
            f"{'messages in db':>15} {'fill s':>7} {'query p50':>9} {'p95':>8} "
            f"{'rejoin p50':>10} {'p95':>8} {'SQL stmts':>9} {'replayed':>8} "
            f"{'far p50':>8} {'p95':>8} {'fresh p50':>9} {'p95':>8} {'convs p50':>9} {'p95':>8}"
        )
        for size in args.sizes:
            db = root / f"bench-{size}.db"
            url = f"sqlite:///{db}"
            upgrade_to_head(url, backup=False)
            t = time.perf_counter()
            fill(db, size)
            fill_s = time.perf_counter() - t
            q, r, stmts, replayed = measure(url, root / "certs", args.runs)
            q50, q95 = q.split()
            r50, r95 = r.split()
            other = login_reads(url, args.runs)
            f50, f95 = other["far"].split()
            n50, n95 = other["fresh"].split()
            c50, c95 = other["conversations"].split()
            print(
                f"{size:>15,} {fill_s:>7.1f} {q50:>9} {q95:>8} {r50:>10} {r95:>8} "
                f"{stmts:>9} {replayed:>8} {f50:>8} {f95:>8} {n50:>9} {n95:>8} {c50:>9} {c95:>8}",
                flush=True,
            )
    print("rejoin = TLS connect + login (scrypt n=16) + replay batch received, one client")
    print(
        "far = replay after half the history; fresh = a login without last_seen; convs = the list"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
