# Tests of client/cli.py: the output format and password rules in-process, then
# `python -m parley_chat.client.cli` as a real subprocess against a real server, checking
# stdout lines, stderr status and every documented exit code. Every subprocess
# runs under a timeout; every wait has a deadline.

from __future__ import annotations

import dataclasses
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_chat.certs import generate
from parley_chat.client import Acked, ChatClient, MessageReceived
from parley_chat.client.cli import (
    EXIT_LOGIN,
    EXIT_OK,
    EXIT_TLS,
    EXIT_UNACKED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PASSWORD_ENV,
    format_message,
    isolate_text,
    neutralise_bidi,
    read_password,
    status_text,
)
from parley_chat.client.events import BatchEnded
from parley_chat.protocol import Message, format_ts
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


def _unchecked(frame: Message, **changes: object) -> Message:
    """A copy of *frame* with *changes* applied without the frame's own validation."""
    copy = object.__new__(Message)
    for f in dataclasses.fields(Message):
        object.__setattr__(copy, f.name, changes.get(f.name, getattr(frame, f.name)))
    return copy


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
    emote = _message("/me waves", ts=ts, from_="alice", room="#lobby")
    assert format_message(emote, now) == f"{local} #lobby * alice waves"
    nod = _message("/me nods", ts=ts, kind="private", from_="alice", to="bob")
    assert format_message(nod, now) == f"{local} *alice -> bob* * alice nods"


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


# Bidi: U+2068 FSI ... U+2069 PDI wrap a text run; codes replace what must not act.
FSI, PDI, RLO, LRE, PDF, RLI = "\u2068", "\u2069", "\u202e", "\u202a", "\u202c", "\u2067"
RLM, ALM, ZWJ, ZWNJ, ZWSP = "\u200f", "\u061c", "\u200d", "\u200c", "\u200b"
HEBREW = "\u05e9\u05dc\u05d5\u05dd"


def test_neutralise_bidi_shows_embeddings_overrides_and_unpaired_isolates():
    assert neutralise_bidi(f"pay {RLO}gnp.exe") == "pay <U+202E>gnp.exe"
    assert neutralise_bidi(f"{LRE}a{PDF}") == "<U+202A>a<U+202C>"
    assert neutralise_bidi(f"a{PDI}b") == "a<U+2069>b"  # would close our isolate early
    assert neutralise_bidi(f"a{RLI}b") == "a<U+2067>b"  # never closed
    assert neutralise_bidi(f"{PDI}{RLI}x{PDI}{RLI}") == f"<U+2069>{RLI}x{PDI}<U+2067>"
    assert neutralise_bidi("a\u2029b\u2028c") == "a<U+2029>b<U+2028>c"
    # Kept: paired isolates, marks, zero-width characters (emoji, Persian).
    kept = f"{RLI}{HEBREW}{PDI} {RLM}{ALM} \U0001f468{ZWJ}\U0001f469 \u0645{ZWNJ}\u06cc {ZWSP}"
    assert neutralise_bidi(kept) == kept


def test_isolate_text_wraps_only_text_that_can_reorder():
    assert isolate_text("plain text, 12:30 (ok)") == "plain text, 12:30 (ok)"
    assert isolate_text(f"emoji \U0001f468{ZWJ}\U0001f469") == f"emoji \U0001f468{ZWJ}\U0001f469"
    assert isolate_text(HEBREW) == f"{FSI}{HEBREW}{PDI}"
    assert isolate_text(f"x{RLM}") == f"{FSI}x{RLM}{PDI}"
    assert isolate_text("\u0661\u0662") == f"{FSI}\u0661\u0662{PDI}"  # Arabic-Indic digits
    # Neutralised to codes, nothing right-to-left is left: no wrapping needed.
    assert isolate_text(f"{RLO}abc") == "<U+202E>abc"


def test_bidi_text_never_moves_the_time_room_or_nick():
    moment = datetime(2026, 11, 24, 9, 30, 2, tzinfo=UTC)
    local = moment.astimezone()
    stamp = f"{local:%H:%M:%S}"
    ts = format_ts(moment)
    text = f"see {RLO}gnp.exe\n{HEBREW} {PDI}\nplain"
    public = _message(text, ts=ts, from_="bob", room="#dev")
    assert format_message(public, local).split("\n") == [
        f"{stamp} #dev <bob> see <U+202E>gnp.exe",
        f"    {FSI}{HEBREW} <U+2069>{PDI}",
        "    plain",
    ]
    # A room-less notice has no left-to-right letter before the text: without the
    # isolate, a bidi terminal would give the whole line a right-to-left direction.
    notice = _message(HEBREW, ts=ts, kind="system", to="bob")
    assert format_message(notice, local) == f"{stamp} -!- {FSI}{HEBREW}{PDI}"
    # Names are ASCII by protocol; a server sending others gets them as codes.
    # (The protocol refuses such a frame at decode; this checks the last line of defence.)
    forged = _unchecked(
        _message("hi", ts=ts, from_="alice", room="#a"), from_=f"ali{RLO}ec", room=f"#a{HEBREW[0]}"
    )
    assert format_message(forged, local) == f"{stamp} #a<U+05E9> <ali<U+202E>ec> hi"


_BIDI_ALPHABET = (
    "ab1 .\n"
    + HEBREW[:2]
    + "\u0661"
    + RLM
    + ZWJ
    + "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029])
)


def _isolates_balanced(line: str) -> bool:
    depth = 0
    for ch in line:
        if ch in "\u2066\u2067\u2068":
            depth += 1
        elif ch == PDI:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=_BIDI_ALPHABET, max_size=40))
def test_any_text_prints_as_balanced_isolated_runs_after_an_unchanged_head(text):
    # UAX #9: an isolated run whose isolates pair up, with no embedding, override
    # or paragraph separator in it, cannot change the order or direction of what
    # is outside it. So this property is what "never moves the nick" means.
    moment = datetime(2026, 11, 24, 9, 30, 2, tzinfo=UTC)
    local = moment.astimezone()
    lines = format_message(_message(text, ts=format_ts(moment), from_="bob", room="#x"), local)
    first, *rest = lines.split("\n")
    head = f"{local:%H:%M:%S} #x <bob> "
    assert first.startswith(head)
    assert all(line.startswith("    ") for line in rest)
    assert len(rest) == text.count("\n")
    for body in [first[len(head) :], *(line[4:] for line in rest)]:
        assert not set(body) & set("\u202a\u202b\u202c\u202d\u202e\u2028\u2029"), body
        assert _isolates_balanced(body), repr(body)


def test_status_lines_are_neutralised_too():
    assert status_text(f"error bad-room: no {RLO}room\x1b[2J") == (
        "error bad-room: no <U+202E>room\ufffd[2J"
    )
    assert status_text("joined #dev\nsecond") == "joined #dev\nsecond"


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
        "parley_chat.client.cli",
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


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    """The client as a running process with all three streams piped (text)."""
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=cli_env(),
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


def test_bidi_controls_arrive_verbatim_and_print_as_isolated_runs(server, ca_file, bob):
    # The server stores what was sent (only C0/C1 controls are refused); the
    # terminal client decides how to show it.
    last = bob.send_text(f"see {RLO}gnp.exe\n{HEBREW}")
    got = collect_until(bob, lambda e: isinstance(e, MessageReceived) and e.message.ref == last)
    echoed = [e.message for e in got if isinstance(e, MessageReceived)][-1]
    assert echoed.text == f"see {RLO}gnp.exe\n{HEBREW}"

    result = run_cli(cli_args(server, ca_file, "carol", "--register"), ["/exit"])
    assert result.returncode == EXIT_OK, result.stderr
    out = result.stdout.splitlines()
    first = next((i for i, ln in enumerate(out) if ln.endswith("<bob> see <U+202E>gnp.exe")), None)
    assert first is not None, out
    assert re.fullmatch(rf"{TIME} #lobby <bob> see <U\+202E>gnp\.exe", out[first])
    assert out[first + 1] == f"    {FSI}{HEBREW}{PDI}"
    assert RLO not in result.stdout


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
        [sys.executable, "-m", "parley_chat.client.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env=cli_env(None),
    )
    assert result.returncode == 0
    assert "exit codes" in result.stdout and "/rejoin" in result.stdout
    assert PASSWORD_ENV in result.stdout


def test_the_terminal_client_and_the_library_never_load_the_gui_toolkit(tmp_path):
    # A headless machine may have no Tk at all, and customtkinter's import
    # copies fonts into ~/.fonts: neither belongs to the terminal client.
    probe = (
        "import sys, parley_chat.client.cli, parley_chat.client.connection\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tkinter', '_tkinter', 'customtkinter') or m.startswith('parley_chat.client.gui')))"
    )
    env = {**cli_env(None), "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=ROOT,
            env=env,
        )

    result = run("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    helped = run("-m", "parley_chat.client.cli", "--help")
    assert helped.returncode == 0, helped.stderr
    assert not (tmp_path / ".fonts").exists()


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
    proc = start_cli([*cli_args(server, ca_file, "alice", "--register"), "--ack-wait", "1"])
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


def test_several_hosts_fail_over_to_the_first_that_answers(server, ca_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    host, port = server.address
    args = cli_args(server, ca_file, "alice", "--register")
    args[args.index("--host") + 1] = f"{host}:{dead},{host}:{port}"
    args[args.index("--port") + 1] = "1"  # each address carries its own port
    result = run_cli(args, ["over here"])
    assert result.returncode == EXIT_OK, result.stderr
    assert f"connected as alice to {host}:{port}" in result.stderr
    assert re.search(rf"{TIME} #lobby <alice> over here", result.stdout), result.stdout


def test_a_bad_host_list_is_a_usage_error(server, ca_file):
    args = cli_args(server, ca_file, "alice")
    args[args.index("--host") + 1] = "127.0.0.1:5555,,b"
    result = run_cli(args, ["hi"])
    assert result.returncode == EXIT_USAGE
    assert "bad --host" in result.stderr and "empty server address" in result.stderr


@pytest.mark.parametrize("io_encoding", ["utf-8:strict", "utf-8:surrogateescape"])
def test_a_piped_line_that_is_not_utf8_is_refused_alone_and_the_rest_is_sent(
    server, ca_file, bob, io_encoding
):
    # A Latin-1 "café" in a UTF-8 pipe. Read strictly (a UTF-8 locale) it ended
    # the client with a traceback; read with surrogateescape (the C locale) it
    # reached the I/O thread, failed to encode there and dropped the connection.
    env = cli_env() | {"PYTHONIOENCODING": io_encoding}
    result = subprocess.run(
        cli_args(server, ca_file, "alice", "--register", "--no-e2e"),
        input=b"caf\xe9 au lait\n/msg bob caf\xe9\nafter the bad lines\n",
        capture_output=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env=env,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == EXIT_OK, stderr
    assert stderr.count("not sent: the line holds bytes that are not UTF-8 text") == 2, stderr
    assert "Traceback" not in stderr and "internal" not in stderr, stderr
    got = collect_until(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.text == "after the bad lines"
    )
    texts = [e.message.text for e in got if isinstance(e, MessageReceived) and e.message.from_]
    assert texts == ["after the bad lines"]  # nothing of the refused lines went out


def test_a_bug_behind_one_command_is_one_error_line_and_the_session_goes_on(server, ca_file, bob):
    # Fault injection: /who raises as a bug would. The client says so in a line
    # and carries on (the next line is still sent), rather than end with a
    # traceback and lose the connection.
    inject = (
        "import sys\n"
        "from parley_chat.client.connection import ChatClient\n"
        "def who(self, *args, **kwargs): raise RuntimeError('injected')\n"
        "ChatClient.who = who\n"
        "from parley_chat.client.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = cli_args(server, ca_file, "alice", "--register", "--no-e2e")
    result = run_cli([sys.executable, "-c", inject, *args[3:]], ["/who", "after the bug"])
    assert result.returncode == EXIT_OK, result.stderr
    assert "error: parley could not do that (RuntimeError: injected)" in result.stderr
    assert "Traceback" not in result.stderr
    got = collect_until(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.text == "after the bug"
    )
    assert got


def test_a_closed_standard_output_is_said_once_and_the_session_goes_on(server, ca_file, bob):
    # `parley-cli ... | head -1`: every later event printed "(could not show an
    # event: [Errno 32] Broken pipe)" on stderr.
    last = bob.send_text("something to print")
    collect_until(bob, lambda e: isinstance(e, Acked) and e.client_id == last)
    proc = start_cli(cli_args(server, ca_file, "alice", "--register", "--no-e2e"))
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline()  # the first line, as `head -1` reads it
    proc.stdout.close()  # ... and goes away
    proc.stdin.write("/history 50\nstill sent\n")
    proc.stdin.close()
    try:
        assert proc.wait(RUN_TIMEOUT) == EXIT_OK
    finally:
        proc.kill()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert stderr.count("standard output was closed") == 1, stderr
    assert "could not show" not in stderr and "Traceback" not in stderr
    got = collect_until(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.text == "still sent"
    )
    assert got
