# `python -m parley_chat.server` as a user runs it: one "listening" line with the address,
# TLS versions and fingerprint; clear errors and exit 2 for a busy database or
# missing certificates; SIGTERM stops it cleanly. And `alembic upgrade head` by hand.

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from parley_chat.certs import fingerprint_sha256
from tests.support import first_line

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parley_chat.server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_server_prints_listening_then_refuses_a_second_one_and_stops_on_sigterm(
    tmp_path, certs_dir
):
    db = f"sqlite:///{tmp_path / 'main.db'}"
    args = ["--port", "0", "--db", db, "--certs", str(certs_dir), "--scrypt-n", "16"]
    proc = _start(args)
    try:
        line = first_line(proc)
        assert line.startswith("parley listening on 127.0.0.1:")
        assert "TLS 1.2, TLS 1.3" in line or "TLSv1.2" in line
        assert fingerprint_sha256((certs_dir / "server.pem").read_bytes()) in line
        second = subprocess.run(
            [sys.executable, "-m", "parley_chat.server", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "already using" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        finally:
            proc.kill()
    assert rc == 0


def test_missing_certificates_are_a_clear_error(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "--port",
            "0",
            "--db",
            f"sqlite:///{tmp_path}/x.db",
            "--certs",
            str(tmp_path / "none"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "parley-certs" in out.stderr or "make certs" in out.stderr


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path, certs_dir):
    # Once a traceback from deep in SQLAlchemy; a folder given as the database too.
    (tmp_path / "notes.db").write_bytes(os.urandom(8192))
    (tmp_path / "folder.db").mkdir()
    for name, why in (("notes.db", "file is not a database"), ("folder.db", "unable to open")):
        out = subprocess.run(
            [
                *(sys.executable, "-m", "parley_chat.server", "--port", "0"),
                *("--db", f"sqlite:///{tmp_path / name}", "--certs", str(certs_dir)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert f"cannot start: cannot open the database sqlite:///{tmp_path / name}" in out.stderr
        assert why in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_alembic_upgrade_head_by_hand(tmp_path):
    db = tmp_path / "by-hand.db"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db=sqlite:///{db}", "upgrade", "head"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    con = sqlite3.connect(db)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    finally:
        con.close()
    assert {"users", "messages", "chat_log", "messages_fts"} <= names


def test_every_acked_message_survives_kill_9(tmp_path, certs_dir, ca_file):
    from parley_chat.protocol import Ack, Send
    from tests.support import RawClient

    db = tmp_path / "kill.db"
    proc = _start(
        ["--port", "0", "--db", f"sqlite:///{db}", "--certs", str(certs_dir), "--scrypt-n", "16"]
    )
    acked: list[int] = []
    try:
        line = first_line(proc)
        port = int(line.split()[3].rsplit(":", 1)[1])
        client = RawClient(("127.0.0.1", port), ca_file)
        client.login("durable")
        # The real defaults apply here (flood control: a burst of 10, then 5 per second).
        for i in range(30):
            client.send(Send(id=f"d{i}", text=f"keep {i}", room="#lobby"))
        while len(acked) < 12:  # kill mid-stream, with sends still in flight
            frame = client.recv()
            if isinstance(frame, Ack):
                acked.append(frame.id)
    finally:
        proc.kill()  # SIGKILL: no shutdown, no flush
        proc.wait(30)
    con = sqlite3.connect(db)
    try:
        stored = {r[0] for r in con.execute("SELECT id FROM messages")}
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        con.close()
    assert set(acked) <= stored
