# The terminal client's two ways of reading input, against a real server:
# - scripting: piped lines are sent at the pace the server announces, so a long
#   script is stored whole under the default flood limits and exits 0;
# - a real terminal (a pseudo-terminal): a prompt_toolkit prompt where lines
#   that arrive while the user types do not break the line being typed, with
#   history (Up) and line editing.
# Every wait has a deadline and waits for a sign (output, a stored row).

from __future__ import annotations

import io
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parley_chat.client import Acked, ChatClient, MessageReceived
from parley_chat.client.cli import EXIT_OK, PASSWORD_ENV, Pacer
from parley_chat.client.events import BatchEnded
from tests.support import collect_until, wait_for_event

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secret-pw"


def _cli(server, ca_file: Path, nick: str) -> list[str]:
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
        "--register",
        # No end-to-end keys here: on a terminal they would ask for their passphrase
        # first (tests/client/test_cli_e2e.py covers them).
        "--no-e2e",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env[PASSWORD_ENV] = PASSWORD
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # the test terminal answers no cursor queries
    env["TERM"] = "xterm"
    return env


def _stored(server, sender: str) -> list[str]:
    con = sqlite3.connect(str(server.store.database_path))
    try:
        rows = con.execute(
            "SELECT m.body FROM messages m JOIN users u ON u.id = m.sender_id "
            "WHERE u.nick = ? ORDER BY m.id",
            (sender,),
        ).fetchall()
    finally:
        con.close()
    return [body for (body,) in rows]


# --- the pacer ------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_keeps_below_the_burst_then_goes_at_the_rate():
    clock = _Clock()
    pacer = Pacer(5.0, 10, clock=clock, sleep=clock.sleep)
    # hello took one of the 10; one more is kept spare: 8 go at once.
    assert [pacer.wait() for _ in range(8)] == [0.0] * 8
    assert pacer.wait() == pytest.approx(0.2)
    assert pacer.wait() == pytest.approx(0.2)
    clock.now += 60  # a long pause refills to burst - 1, never more
    assert [pacer.wait() for _ in range(9)] == [0.0] * 9
    assert pacer.wait() == pytest.approx(0.2)


def test_no_announced_pace_means_no_waiting():
    clock = _Clock()
    pacer = Pacer(None, None, clock=clock, sleep=clock.sleep)
    assert all(pacer.wait() == 0.0 for _ in range(1000)) and not clock.slept


# --- scripting: a long pipe under the default flood limits -------------------------------------


def test_130_piped_lines_are_all_stored_and_the_exit_code_is_0(make_server, ca_file):
    server = make_server(flood_rate=5.0, flood_burst=10, flood_backlog=200)
    lines = [f"line {i:03}" for i in range(130)]
    started = time.monotonic()
    result = subprocess.run(
        _cli(server, ca_file, "scripter"),
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_env(),
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert _stored(server, "scripter") == lines
    # Paced, not flooded: 130 frames at 5/s after a burst take about 25 s.
    assert time.monotonic() - started >= (130 - 10) / 5.0 * 0.9
    assert "not acknowledged" not in result.stderr


# --- a real terminal ------------------------------------------------------------------------


class Terminal:
    """The CLI in a pseudo-terminal: keys in, screen bytes out (with deadlines)."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=_env(), close_fds=True
        )
        os.close(slave)
        self.screen = b""

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, text: str, timeout: float = 20.0, since: int = 0) -> int:
        """Read the screen until *text* appears on it after byte *since*; where it starts."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.screen[since:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; screen: {self.screen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    raise AssertionError(f"{text!r} never appeared; the client ended") from None
        return self.screen.index(text.encode(), since)

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            os.close(self.master)


@pytest.fixture
def bob(server, ca_file):
    host, port = server.address
    client = ChatClient(host, port, nick="bob", password=PASSWORD, ca_file=ca_file, register=True)
    client.connect()
    collect_until(client, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
    yield client
    client.close(timeout=2.0)


def test_a_line_being_typed_survives_incoming_messages_and_comes_back_with_up(server, ca_file, bob):
    term = Terminal(_cli(server, ca_file, "alice"))
    try:
        term.wait_for("#lobby>")
        term.type("hello wo")
        term.wait_for("hello wo")
        # A message arrives while alice is typing.
        cid = bob.send_text("interrupting you")
        wait_for_event(bob, lambda e: isinstance(e, Acked) and e.client_id == cid)
        at = term.wait_for("<bob> interrupting you")
        # Printed above the prompt, which is drawn again below it with the typed text.
        prompt_at = term.wait_for("#lobby>", since=at)
        term.wait_for("hello wo", since=prompt_at)
        # Line editing: finish the word, go to the start, fix the first letter.
        term.type("rlx\x7fd")  # a typo, Backspace, the right letter
        term.type("\x01")  # Ctrl-A: to the start of the line
        term.type("\x1b[3~H")  # Delete the 'h', type 'H'
        term.type("\r")
        got = wait_for_event(
            bob,
            lambda e: isinstance(e, MessageReceived) and e.message.from_ == "alice",
        )
        assert got.message.text == "Hello world"
        # History: Up brings the line back, Enter sends it again.
        term.type("\x1b[A\r")
        again = wait_for_event(
            bob,
            lambda e: isinstance(e, MessageReceived) and e.message.from_ == "alice",
        )
        assert again.message.text == "Hello world"
        term.type("\x04")  # Ctrl-D on an empty line: leave
        term.wait_for("goodbye")
        assert term.close() == EXIT_OK
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait(5)
    assert _stored(server, "alice") == ["Hello world", "Hello world"]
    # The incoming line went above the prompt, not into the typed text.
    assert b"<bob> interrupting you" in term.screen


def test_the_login_list_prints_what_is_unread_on_stderr():
    from parley_chat.client.cli import _Printer
    from parley_chat.client.events import ConversationsListed, ConversationSummary

    out, err = io.StringIO(), io.StringIO()
    printer = _Printer(None, out, err)  # type: ignore[arg-type]
    printer.show(
        ConversationsListed(
            (
                ConversationSummary("room", "#lobby", None, 3, 10),
                ConversationSummary("room", "#dev", None, 0, 0),
                ConversationSummary("private", "bob", None, 1, 0),
            )
        )
    )
    assert err.getvalue() == "unread: #lobby 3, bob 1\n" and out.getvalue() == ""
    printer.show(ConversationsListed((ConversationSummary("room", "#dev", None, 0, 0),)))
    assert err.getvalue() == "unread: #lobby 3, bob 1\n"  # nothing unread: nothing said
