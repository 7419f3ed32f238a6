"""The terminal client's moderation (client/cli_moderation.py, parsed by client/commands.py)
and the client library's moderation events, against a real server over TLS."""

from __future__ import annotations

import io
import re

from parley_chat.client import Acked
from parley_chat.client.cli_moderation import ModerationCommands, describe, parse_duration
from parley_chat.client.commands import Client, Invalid, Moderate, ToggleIds, parse
from parley_chat.client.connection import ChatClient
from parley_chat.client.events import (
    ErrorReply,
    MessageDeleted,
    MessageEdited,
    ModerationDone,
    NoticeReceived,
    RoomInfoChanged,
)
from tests.support import wait_for_event


class _Printer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.show_ids = False

    def err(self, text: str) -> None:
        self.lines.append(text)


def connect(server, ca_file, nick: str) -> ChatClient:
    host, port = server.address
    client = ChatClient(host, port, nick=nick, password="secret-pw", ca_file=ca_file, register=True)
    client.connect()
    return client


def test_durations():
    assert [parse_duration(w) for w in ("30", "30m", "2h", "7d", "x", "2w")] == [
        30, 30, 120, 10080, None, None,
    ]  # fmt: skip


def test_the_commands_reach_the_server_and_the_events_say_what_happened(server, ca_file):
    alice, bob = connect(server, ca_file, "alice"), connect(server, ca_file, "bob")
    try:
        printer = _Printer()
        moderation = ModerationCommands(alice, lambda: "#lobby", printer)

        def run(line: str) -> None:
            command = parse(line, Client.TERMINAL)
            if isinstance(command, Invalid):
                printer.err(command.message)
            else:
                assert isinstance(command, Moderate | ToggleIds), command
                moderation.run(command)

        alice.join("#ops")
        wait_for_event(alice, lambda e: isinstance(e, RoomInfoChanged) and e.room == "#ops")
        bob.join("#ops")
        wait_for_event(bob, lambda e: isinstance(e, RoomInfoChanged) and e.room == "#ops")
        run("/topic #ops Rota for December")
        info = wait_for_event(bob, lambda e: isinstance(e, RoomInfoChanged) and e.topic)
        assert describe(info) == "#ops topic: Rota for December; owner alice"
        run("/mute #ops bob 2h too loud")
        notice = wait_for_event(bob, lambda e: isinstance(e, NoticeReceived))
        assert "too loud" in notice.text and notice.kind == "mute"
        bob.send_text("hello?", room="#ops")
        refused = wait_for_event(bob, lambda e: isinstance(e, ErrorReply))
        assert refused.code == "muted"
        client_id = bob.send_text("a line of mine", room="#lobby")
        ack = wait_for_event(bob, lambda e: isinstance(e, Acked) and e.client_id == client_id)
        bob.edit_message(ack.id, "a better line")
        edited = wait_for_event(alice, lambda e: isinstance(e, MessageEdited))
        assert describe(edited) == f"#lobby message {ack.id} edited: a better line"
        run(f"/delete {ack.id}")  # not hers: alice is not a moderator of #lobby
        denied = wait_for_event(alice, lambda e: isinstance(e, ErrorReply))
        assert denied.code == "not-permitted" and "moderator" in denied.message
        bob.delete_message(ack.id)
        gone = wait_for_event(alice, lambda e: isinstance(e, MessageDeleted))
        assert describe(gone) == f"(message {ack.id} was deleted by bob)"
        run("/ids")
        assert printer.show_ids
        run("/ban")
        assert printer.lines[-1].startswith("usage: /ban")
        run("/unmute #ops bob")
        done = wait_for_event(
            alice, lambda e: isinstance(e, ModerationDone) and "unmuted" in e.message
        )
        assert describe(done).startswith("ok: bob was unmuted")
    finally:
        alice.close(timeout=1)
        bob.close(timeout=1)


def test_help_lists_the_moderation_commands():
    from parley_chat.client.cli import HELP_TEXT

    out = io.StringIO(HELP_TEXT)
    text = out.getvalue()
    for command in ("/topic", "/kick", "/ban", "/mute", "/op", "/delete ID", "/edit ID TEXT"):
        assert command in text


def test_the_terminal_client_runs_moderation_commands_from_a_script(server, ca_file):
    from tests.client.test_cli import cli_args, run_cli

    result = run_cli(
        cli_args(server, ca_file, "alice", "--register"),
        [
            "/join #den",
            "/topic Quiet hours after 22:00",
            "/ids",
            "first line",
            "/kick nobody-here",
            "last line",
        ],
    )
    assert result.returncode == 0, result.stderr
    # The answers arrive in order with the messages' acks, so all are printed before the end.
    assert "ok: alice set the topic of #den: Quiet hours after 22:00" in result.stderr
    assert "error no-such-nick: no user named nobody-here" in result.stderr
    assert re.search(r"^\[\d+\] .*<alice> last line$", result.stdout, re.MULTILINE), result.stdout
