# The terminal client's end-to-end encryption, as a real parley-cli process
# against a real server: private messages go encrypted when both have keys,
# the keys are kept encrypted on disk, the replay decrypts, /search finds the
# message on the device only, /safety prints the number, and a peer without
# keys is named before anything is sent in the clear.

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from parley_chat.client import BatchEnded, ChatClient, MessageReceived
from parley_chat.client.cli import PASSWORD_ENV
from parley_chat.client.e2e.crypto import AccountKeys, E2EError
from parley_chat.client.e2e.files import PASSPHRASE_ENV
from parley_chat.client.e2e.pins import PinStore
from parley_chat.client.e2e.session import E2ESession
from parley_chat.client.e2e.terminal import key_passphrase
from tests.support import collect_until, wait_for_event

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secret-pw"
SECRET = "ultraviolet pangolin 7431"
TIME = r"\d\d:\d\d:\d\d"


def run(server, ca_file: Path, home: Path, nick: str, lines: list[str], **env: str):
    host, port = server.address
    environ = {
        "PATH": "/usr/bin:/bin",
        PASSWORD_ENV: PASSWORD,
        PASSPHRASE_ENV: f"passphrase of {nick}",
        "PARLEY_CONFIG_DIR": str(home),
        "PARLEY_DATA_DIR": str(home),
        "PARLEY_MDNS": "off",
        **env,
    }
    args = [sys.executable, "-m", "parley_chat.client.cli", "--host", host, "--port", str(port)]
    args += ["--ca", str(ca_file), "--nick", nick, "--register"]
    return subprocess.run(
        args,
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environ,
    )


@pytest.fixture
def carol(server, ca_file):
    """A library client without end-to-end encryption."""
    host, port = server.address
    client = ChatClient(host, port, nick="carol", password=PASSWORD, ca_file=ca_file, register=True)
    client.connect()
    collect_until(client, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
    yield client
    client.close(timeout=2.0)


def test_two_terminal_clients_talk_end_to_end_encrypted(server, ca_file, tmp_path, db_url, carol):
    first = run(server, ca_file, tmp_path / "bob", "bob", ["/exit"])
    assert first.returncode == 0, first.stderr
    assert "end-to-end encryption: on" in first.stderr
    key_file = next((tmp_path / "bob").rglob("keys.json"))
    assert key_file.stat().st_mode & 0o077 == 0 and b"argon2id" in key_file.read_bytes()

    (tmp_path / "a-file").write_text("not a folder")
    sent = run(
        server,
        ca_file,
        tmp_path / "alice",
        "alice",
        [
            f"/msg bob {SECRET}",
            "/safety bob",
            "/msg carol hello in the clear",
            "/msg nobody are you there",
            "/safety x y",  # no frame can carry that nick: it once ended the client
            f"/keys export {tmp_path / 'a-file' / 'keys.bin'}",  # a file where a folder goes
            f"/keys import {tmp_path / 'missing.bin'}",  # said before any passphrase is asked
        ],
        PARLEY_EXPORT_PASSPHRASE="export passphrase",
    )
    assert sent.returncode == 0, sent.stderr
    assert "not sent: no user named nobody" in sent.stderr
    assert "error: 'x y' is not a nick" in sent.stderr and "Traceback" not in sent.stderr
    assert f"error: cannot write {tmp_path / 'a-file' / 'keys.bin'}" in sent.stderr
    assert f"error: cannot read {tmp_path / 'missing.bin'}" in sent.stderr
    assert "nobody has no end-to-end" not in sent.stderr
    number = re.search(r"safety number with bob: ((?:\d{5} ){11}\d{5})", sent.stderr)
    assert number is not None, sent.stderr
    assert "carol has no end-to-end encryption keys" in sent.stderr
    assert "NOT end-to-end encrypted" in sent.stderr
    got = wait_for_event(carol, lambda e: isinstance(e, MessageReceived) and e.message.to)
    assert got.message.text == "hello in the clear" and not got.secure

    again = run(server, ca_file, tmp_path / "bob", "bob", ["/search pangolin", "/safety alice"])
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    shown = [ln for ln in lines if re.fullmatch(rf"{TIME} \*alice -> bob\* {SECRET}", ln)]
    assert len(shown) == 2, lines  # in the login replay, and the local search hit
    assert "on this device: 1 end-to-end encrypted message(s)" in again.stderr
    assert f"safety number with alice: {number.group(1)}" in again.stderr  # the same digits

    path = Path(db_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert SECRET.encode() not in stored


def test_without_a_passphrase_in_a_script_encryption_is_off_and_said_so(server, ca_file, tmp_path):
    result = run(server, ca_file, tmp_path, "dave", ["/exit"], **{PASSPHRASE_ENV: ""})
    assert result.returncode == 0, result.stderr
    assert "end-to-end encryption is off" in result.stderr and PASSPHRASE_ENV in result.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_key_passphrase_comes_from_env_then_a_prompt_else_encryption_is_off():
    assert key_passphrase({PASSPHRASE_ENV: "pp"}, io.StringIO(), False) == "pp"
    assert key_passphrase({}, io.StringIO(), True) is None  # --keyring
    assert key_passphrase({}, _Tty(), False, lambda _: "typed") == "typed"
    for answer in ("", EOFError()):

        def prompt(_: str, answer=answer) -> str:
            if isinstance(answer, BaseException):
                raise answer
            return answer

        with pytest.raises(E2EError, match="no passphrase given"):
            key_passphrase({}, _Tty(), False, prompt)
    with pytest.raises(E2EError, match="--keyring"):
        key_passphrase({}, io.StringIO(), False)


def test_a_changed_key_is_a_warning_and_nothing_is_sent(server, ca_file, tmp_path, db_url):
    assert run(server, ca_file, tmp_path / "bob", "bob", ["/exit"]).returncode == 0
    first = run(server, ca_file, tmp_path / "alice", "alice", ["/msg bob first"])
    assert first.returncode == 0 and "NOT SENT" not in first.stderr, first.stderr
    # bob's directory entry changes (a reset, or a server handing out its own key).
    host, port = server.address
    impostor = ChatClient(host, port, nick="bob", password=PASSWORD, ca_file=ca_file)
    session = E2ESession(impostor, AccountKeys.generate(), PinStore(None))
    impostor.connect()
    try:
        session.publish(replace=True)
    finally:
        impostor.close(timeout=2.0)

    second = run(server, ca_file, tmp_path / "alice", "alice", [f"/msg bob {SECRET}"])
    assert second.returncode == 0, second.stderr
    assert "NOT SENT" in second.stderr and "CHANGED" in second.stderr
    path = Path(db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        count = db.execute("SELECT count(*) FROM messages WHERE kind = 'private'").fetchone()[0]
    assert count == 1  # only the first
    trusted = run(server, ca_file, tmp_path / "alice", "alice", ["/trust bob", "/msg bob again"])
    assert "is trusted now" in trusted.stderr and "NOT SENT" not in trusted.stderr
