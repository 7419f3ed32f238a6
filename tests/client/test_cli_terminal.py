# The terminal client's two ways of reading input, against a real server:
# - scripting: piped lines are sent at the pace the server announces, so a long
#   script is stored whole and exits 0 (a real process at a tenfold rate; the
#   default limits on a clock of the test's own, against the server's bucket);
# - a real terminal (a pseudo-terminal): a prompt_toolkit prompt where lines
#   that arrive while the user types do not break the line being typed, with
#   history (Up) and line editing.
# Every wait has a deadline and waits for a sign (output, a stored row).

from __future__ import annotations

import dataclasses
import io
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parley_chat.client import Acked, ChatClient, MessageReceived
from parley_chat.client.cli import EXIT_OK, PASSWORD_ENV, Pacer
from parley_chat.client.events import BatchEnded
from parley_chat.server.config import ServerConfig
from parley_chat.server.flood import TokenBucket
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


# --- scripting: a long pipe at the server's flood pace -----------------------------------------


def test_130_lines_at_the_default_flood_limits_are_never_held_back_by_the_server():
    """The default pace, on a clock of the test's own: the CLI's pacer against the
    server's own token bucket at ServerConfig's defaults (5/s after a burst of 10).
    No line of a 130-line script (nor one ping between them) finds the server's
    bucket empty, and the script takes the ~25 s the pace implies, not less."""
    cfg = ServerConfig()
    clock = _Clock()
    server_bucket = TokenBucket(cfg.flood_burst, cfg.flood_rate, clock=clock)
    assert server_bucket.take()  # the login's hello
    pacer = Pacer(cfg.flood_rate, cfg.flood_burst, clock=clock, sleep=clock.sleep)
    started = clock.now
    for i in range(130):
        pacer.wait()
        assert server_bucket.take(), f"line {i} would wait for the server's bucket"
        if i == 60:  # the library's own ping: the pacer keeps a frame spare for it
            assert server_bucket.take(), "the ping would wait for the server's bucket"
    assert clock.now - started >= (130 - cfg.flood_burst) / cfg.flood_rate * 0.9


def test_130_piped_lines_are_all_stored_and_the_exit_code_is_0(make_server, ca_file):
    # The real process at ten times the default rate (the pace it keeps is the one
    # the server announces in welcome; the default pace is checked above): ~2.5 s.
    server = make_server(flood_rate=50.0, flood_burst=10, flood_backlog=200)
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
    # Paced, not flooded: 130 frames at 50/s after a burst take about 2.5 s.
    assert time.monotonic() - started >= (130 - 10) / 50.0 * 0.9
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
        # Both echoes printed and the prompt drawn again below them: the line is
        # empty and the prompt is reading keys (a key typed mid-redraw may be lost).
        first = term.wait_for("<alice> Hello world")
        second = term.wait_for("<alice> Hello world", since=first + 1)
        term.wait_for("#lobby>", since=second)
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


# --- conversations and read markers --------------------------------------------------------


def test_reading_in_the_terminal_moves_the_read_markers_and_conversations_lists_them(
    server, ca_file, bob
):
    from parley_chat.client.events import ConversationsListed, ReadMoved

    host, port = server.address
    # alice's other device: it hears when the terminal moves her read markers.
    phone = ChatClient(host, port, nick="alice", password=PASSWORD, ca_file=ca_file, register=True)
    phone.connect()
    collect_until(phone, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
    try:
        for text, to in (("psst alice", "alice"), ("hello lobby", None)):
            cid = bob.send_text(text, to=to)
            wait_for_event(bob, lambda e, c=cid: isinstance(e, Acked) and e.client_id == c)
        phone.conversations(tag="before")
        listed = wait_for_event(
            phone, lambda e: isinstance(e, ConversationsListed) and e.tag == "before"
        )
        unread = {c.name: c.unread for c in listed.items}
        assert unread["bob"] == 1 and unread["#lobby"] >= 1

        term = Terminal(_cli(server, ca_file, "alice"))
        try:
            term.wait_for("#lobby>")
            term.wait_for("psst alice")  # the login replay printed both
            term.wait_for("hello lobby")
            # Printed on a terminal is read: a moment later the server is told,
            # and the other device hears it.
            moved = {}
            deadline = time.monotonic() + 20
            while set(moved) != {"#lobby", "bob"}:
                assert time.monotonic() < deadline, f"read markers moved only for {moved}"
                ev = wait_for_event(phone, lambda e: isinstance(e, ReadMoved))
                moved[ev.name] = ev.id
            at = len(term.screen)
            term.type("/conversations\r")
            term.wait_for("#lobby: read", since=at)
            term.wait_for("bob (private): read \u00b7 bob: psst alice", since=at)
            term.type("/read\r")
            said = term.wait_for("nothing new to mark read", since=at)
            # The prompt drawn again below the answer: it is reading keys (a key typed
            # mid-redraw may be lost; this Ctrl-D was, once, under load).
            term.wait_for("#lobby>", since=said)
            term.type("\x04")
            term.wait_for("goodbye")
            assert term.close() == EXIT_OK
        finally:
            if term.proc.poll() is None:
                term.proc.kill()
                term.proc.wait(5)
    finally:
        phone.close(timeout=2.0)


class _Recorder:
    """A ChatClient stand-in for the printer's unit tests: records mark_read calls."""

    nick = "alice"

    def __init__(self) -> None:
        self.marked: list[tuple[str, str, int]] = []

    def mark_read(self, kind: str, name: str, message_id: int) -> None:
        self.marked.append((kind, name, message_id))


def test_read_marks_the_newest_line_printed_once_per_conversation_and_never_search_hits():
    from parley_chat.client.cli import _Printer
    from parley_chat.client.events import MessageReceived as Received
    from parley_chat.protocol import Message, format_ts

    def msg(mid: int, **kw: object) -> Message:
        fields = {
            "id": mid,
            "ts": format_ts(datetime.now(UTC)),
            "kind": "public",
            "from_": "bob",
            "text": "t",
        }
        fields.update(kw)
        return Message(**fields)  # type: ignore[arg-type]

    client = _Recorder()
    printer = _Printer(client, io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    printer.show(Received(msg(5, room="#lobby")))
    printer.show(Received(msg(7, room="#lobby")))
    printer.show(Received(msg(6, kind="private", from_="alice", to="bob")))
    printer.show(Received(msg(9, room="#dev"), batch="search", tag="search"))
    assert printer.mark_read() == 2
    assert sorted(client.marked) == [("private", "bob", 6), ("room", "#lobby", 7)]
    assert printer.mark_read() == 0  # nothing new: nothing sent again
    printer.show(Received(msg(8, kind="private", from_="bob", to="alice")))
    assert printer.mark_read() == 1 and client.marked[-1] == ("private", "bob", 8)


def test_the_printer_marks_read_by_itself_only_when_told_to_and_only_when_due():
    from parley_chat.client.cli import _Printer
    from parley_chat.client.events import MessageReceived as Received
    from parley_chat.protocol import Message, format_ts

    client = _Recorder()
    printer = _Printer(client, io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    m = Message(
        id=3, ts=format_ts(datetime.now(UTC)), kind="public", room="#lobby", from_="bob", text="t"
    )
    printer.show(Received(m))
    assert printer.mark_read(only_due=True) == 0  # a script: never by itself
    printer.auto_read = True
    printer.show(Received(dataclasses.replace(m, id=4)))
    assert printer._read_due is not None
    assert printer.mark_read(only_due=True) == 0  # not yet due
    printer._read_due = time.monotonic() - 1
    assert printer.mark_read(only_due=True) == 1 and client.marked[-1][:2] == ("room", "#lobby")


def test_pacer_try_take_never_waits_and_shares_the_budget():
    clock = _Clock()
    pacer = Pacer(5.0, 3, clock=clock, sleep=clock.sleep)
    taken = 0
    while pacer.try_take():
        taken += 1
    assert taken == 1 and clock.slept == []  # burst 3: one spare for pings, one taken at login
    clock.now += 0.2  # one frame's worth at 5/s
    assert pacer.try_take() and not pacer.try_take()


def test_conversations_text_lines():
    from parley_chat.client.cli import conversations_text
    from parley_chat.client.events import ConversationSummary
    from parley_chat.protocol import UNREAD_CAP, Message, format_ts

    last = Message(
        id=4,
        ts=format_ts(datetime.now(UTC)),
        kind="public",
        room="#dev",
        from_="alice",
        text="line one\nline two",
    )
    pm = Message(
        id=5,
        ts=format_ts(datetime.now(UTC)),
        kind="private",
        from_="bob",
        to="alice",
        text="שלום " * 30,
    )
    text = conversations_text(
        (
            ConversationSummary("room", "#dev", last, 0, 4),
            ConversationSummary("private", "bob", pm, 2, 0),
            ConversationSummary("room", "#empty", None, 0, 0),
            ConversationSummary("room", "#busy", None, UNREAD_CAP, 0),
        ),
        me="alice",
    )
    dev, bob_line, empty, busy = text.split("\n")
    assert busy == f"#busy: {UNREAD_CAP}+ unread"  # the server stops counting there
    assert dev == "#dev: read \u00b7 you: line one line two"
    assert bob_line.startswith("bob (private): 2 unread \u00b7 bob: \u2068")  # an isolated run
    assert bob_line.endswith("\u2026\u2069")
    assert empty == "#empty: read"
    assert conversations_text(()) == "no conversations"
