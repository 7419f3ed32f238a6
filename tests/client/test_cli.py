# Tests of client/cli.py: the output format and password rules in-process, then
# `python -m client.cli` as a real subprocess against a real server, checking
# stdout lines, stderr status and every documented exit code. Every subprocess
# runs under a timeout; every wait has a deadline.

from __future__ import annotations

import io
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import generate
from client import Acked, ChatClient, MessageReceived
from client.cli import (
    EXIT_LOGIN,
    EXIT_OK,
    EXIT_TLS,
    EXIT_UNACKED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PASSWORD_ENV,
    format_message,
    read_password,
)
from client.events import BatchEnded
from protocol import Message, format_ts
from tests.support import collect_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secret-pw"
RUN_TIMEOUT = 60
TIME = r"\d\d:\d\d:\d\d"


# --- in-process: format and password ------------------------------------------------------


def _message(text: str, **kwargs: object) -> Message:
    kwargs.setdefault("ts", format_ts(datetime.now(UTC)))
    kwargs.setdefault("kind", "public")
    return Message(id=1, text=text, **kwargs)  # type: ignore[arg-type]


def test_format_public_private_and_system_lines():
    moment = datetime(2026, 11, 24, 9, 30, 2, tzinfo=UTC)
    local = moment.astimezone().strftime("%H:%M:%S")
    now = moment.astimezone()
    ts = format_ts(moment)
    public = _message("hello, lobby", ts=ts, from_="alice", room="#lobby")
    private = _message("are you there?", ts=ts, kind="private", from_="alice", to="bob")
    system = _message("alice joined", ts=ts, kind="system", room="#lobby")
    assert format_message(public, now) == f"{local} #lobby <alice> hello, lobby"
    assert format_message(private, now) == f"{local} *alice -> bob* are you there?"
    assert format_message(system, now) == f"{local} #lobby -!- alice joined"


def test_format_multiline_other_day_and_control_characters():
    moment = datetime(2026, 11, 24, 9, 30, 2, tzinfo=UTC)
    local = moment.astimezone()
    m = _message("one\ntwo\n\tthree", ts=format_ts(moment), from_="bob", room="#dev")
    assert format_message(m, local).split("\n") == [
        f"{local:%H:%M:%S} #dev <bob> one",
        "    two",
        "    \tthree",
    ]
    assert format_message(m, local + timedelta(days=1)).startswith(
        f"{local:%Y-%m-%d %H:%M:%S} #dev <bob> one"
    )
    # A hostile server cannot drive the terminal: escapes are neutralised.
    evil = Message(
        id=2, ts=format_ts(moment), kind="public", text="a\x1b[2Jb", from_="x\x1b", room="#lobby"
    )
    assert "\x1b" not in format_message(evil, local)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_comes_from_env_then_a_terminal_prompt_else_nothing():
    assert read_password("alice", {PASSWORD_ENV: "pw"}, io.StringIO()) == "pw"
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    assert read_password("alice", {}, _Tty(), prompt) == "typed"
    assert asked == ["password for alice: "]
    assert read_password("alice", {}, io.StringIO(), prompt) is None
    assert read_password("alice", {PASSWORD_ENV: ""}, io.StringIO(), prompt) is None


# --- subprocess helpers ------------------------------------------------------------------------


def cli_env(password: str | None = PASSWORD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    if password is not None:
        env[PASSWORD_ENV] = password
    return env


def cli_args(server, ca_file: Path, nick: str, *extra: str) -> list[str]:
    host, port = server.address
    return [
        sys.executable,
        "-m",
        "client.cli",
        "--host",
        host,
        "--port",
        str(port),
        "--ca",
        str(ca_file),
        "--nick",
        nick,
        *extra,
    ]


def run_cli(
    args: list[str], lines: list[str] | None = None, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input="".join(f"{line}\n" for line in lines) if lines is not None else None,
        stdin=subprocess.DEVNULL if lines is None else None,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env=cli_env(password),
    )


@pytest.fixture
def bob(server, ca_file):
    host, port = server.address
    client = ChatClient(host, port, nick="bob", password=PASSWORD, ca_file=ca_file, register=True)
    client.connect()
    collect_until(client, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
    yield client
    client.close(timeout=2.0)


# --- subprocess: the real thing ---------------------------------------------------------------


def test_lines_in_messages_out(server, ca_file, bob):
    # Sent before alice starts, so they reach her in the login replay.
    last = bob.send_text("first line\nsecond line")
    collect_until(bob, lambda e: isinstance(e, Acked) and e.client_id == last)

    result = run_cli(
        cli_args(server, ca_file, "alice", "--register"),
        ["hello, lobby", "/msg bob are you there?", "/join #dev", "in dev", "/bogus", "//slash"],
    )
    assert result.returncode == EXIT_OK, result.stderr
    out = result.stdout.splitlines()
    assert all(re.match(rf"({TIME} |    )", line) for line in out), out

    def index(pattern: str) -> int:
        for i, line in enumerate(out):
            if re.fullmatch(pattern, line):
                return i
        raise AssertionError(f"no line matches {pattern!r} in {out}")

    first = index(rf"{TIME} #lobby <bob> first line")
    assert out[first + 1] == "    second line"
    index(rf"{TIME} #lobby <alice> hello, lobby")
    index(rf"{TIME} \*alice -> bob\* are you there\?")
    index(rf"{TIME} #dev -!- alice joined #dev")
    assert index(rf"{TIME} #dev <alice> in dev") > index(rf"{TIME} #dev -!- alice joined #dev")
    index(rf"{TIME} #dev <alice> /slash")  # /join made #dev current
    assert "unknown command /bogus" in result.stderr
    assert "connected as alice" in result.stderr
    assert result.stderr.rstrip().endswith("goodbye")

    got = collect_until(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.kind == "private"
    )
    private = [e.message for e in got if isinstance(e, MessageReceived)][-1]
    assert (private.from_, private.to, private.text) == ("alice", "bob", "are you there?")


def test_no_password_and_no_terminal_exits_2(server, ca_file):
    result = run_cli(cli_args(server, ca_file, "alice"), None, password=None)
    assert result.returncode == EXIT_USAGE
    assert PASSWORD_ENV in result.stderr and result.stdout == ""


def test_usage_errors_exit_2(server, ca_file, tmp_path):
    result = run_cli(cli_args(server, ca_file, "bad nick!"), [])
    assert result.returncode == EXIT_USAGE
    result = run_cli(cli_args(server, tmp_path / "missing.pem", "alice"), [])
    assert result.returncode == EXIT_USAGE and "CA file" in result.stderr


def test_help_lists_commands_and_exit_codes():
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env=cli_env(None),
    )
    assert result.returncode == 0
    assert "exit codes" in result.stdout and "/rejoin" in result.stdout
    assert PASSWORD_ENV in result.stdout


def test_wrong_ca_exits_4_with_the_offered_fingerprint(server, tmp_path):
    other = tmp_path / "other"
    generate(other)
    result = run_cli(cli_args(server, other / "ca.pem", "alice", "--register"), ["hi"])
    assert result.returncode == EXIT_TLS
    assert re.search(r"fingerprint [0-9a-f]{64}", result.stderr), result.stderr


def test_unreachable_port_exits_3(server, ca_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    args = cli_args(server, ca_file, "alice")
    args[args.index("--port") + 1] = str(free_port)
    result = run_cli(args, ["hi"])
    assert result.returncode == EXIT_UNREACHABLE
    assert "unreachable" in result.stderr


def test_wrong_password_exits_5_with_code_and_message(server, ca_file, bob):
    result = run_cli(cli_args(server, ca_file, "bob"), ["hi"], password="not-bobs-password")
    assert result.returncode == EXIT_LOGIN
    assert "auth-failed" in result.stderr and "wrong password" in result.stderr


def test_messages_left_unacked_exit_6(make_server, ca_file):
    server = make_server()
    proc = subprocess.Popen(
        [*cli_args(server, ca_file, "alice", "--register"), "--ack-wait", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=cli_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None and proc.stdin is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)
    reader.start()
    try:

        def wait_stderr(fragment: str, timeout: float = 15.0) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if fragment in lines.get(timeout=0.2):
                        return
                except queue.Empty:
                    pass
            raise AssertionError(f"{fragment!r} never appeared on stderr")

        wait_stderr("connected as alice")
        server.stop()
        wait_stderr("disconnected")
        proc.stdin.write("nobody can ack this\n")
        proc.stdin.close()
        assert proc.wait(timeout=RUN_TIMEOUT) == EXIT_UNACKED
        reader.join(5)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert any("not acknowledged" in line for line in rest), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
