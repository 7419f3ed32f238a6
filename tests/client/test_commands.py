"""Tests of client/commands.py: the one slash-command table and parser of both clients."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_chat.client import commands as c
from parley_chat.client.commands import Client
from parley_chat.protocol import MAX_PAGE
from parley_chat.protocol.limits import MAX_SANCTION_MINUTES
from tests.budget import examples

T, G = Client.TERMINAL, Client.GUI


@pytest.mark.parametrize("client", [T, G])
@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", c.Say("hello")),
        ("  spaced  ", c.Say("  spaced  ")),
        ("with newline\n", c.Say("with newline")),
        ("//not a command", c.Say("/not a command")),
        ("/msg bob hi there", c.PrivateMessage("bob", "hi there")),
        ("/MSG bob  hi", c.PrivateMessage("bob", "hi")),
        ("/m bob x", c.PrivateMessage("bob", "x")),
        ("/query bob x", c.PrivateMessage("bob", "x")),
        ("/join #dev", c.JoinRoom("#dev")),
        ("/j dev", c.JoinRoom("#dev")),
        ("/leave", c.LeaveRoom(None)),
        ("/part #dev", c.LeaveRoom("#dev")),
        ("/who", c.Who(None)),
        ("/who dev", c.Who("#dev")),
        ("/search brown fox", c.SearchMessages("brown fox")),
        ("/help", c.Help()),
        ("/exit", c.Exit()),
        ("/quit", c.Exit()),
        ("/rejoin", c.Rejoin()),
        ("/topic Quiet please", c.Moderate("topic", text="Quiet please")),
        ("/topic #ops", c.Moderate("topic", room="#ops", text="")),
        ("/private #ops", c.Moderate("private", room="#ops")),
        ("/public", c.Moderate("public")),
        ("/invite bob", c.Moderate("invite", nick="bob")),
        ("/kick #ops bob too loud", c.Moderate("kick", room="#ops", nick="bob", reason="too loud")),
        ("/ban bob 2h spam", c.Moderate("ban", nick="bob", minutes=120, reason="spam")),
        ("/ban bob spam", c.Moderate("ban", nick="bob", reason="spam")),
        ("/mute bob 30", c.Moderate("mute", nick="bob", minutes=30)),
        ("/unmute #ops bob", c.Moderate("unmute", room="#ops", nick="bob")),
        ("/op bob", c.Moderate("op", nick="bob")),
        ("/deop bob", c.Moderate("deop", nick="bob")),
        ("/delete 12 typo", c.Moderate("delete", message_id=12, reason="typo", needs_room=False)),
        (
            "/edit 12 better text",
            c.Moderate("edit", message_id=12, text="better text", needs_room=False),
        ),
        ("/announce Back at 3", c.Moderate("announce", text="Back at 3", needs_room=False)),
        ("/me waves", c.Say("/me waves")),  # an emote: the text carries it
        (
            "/disconnect bob bye",
            c.Moderate("disconnect", nick="bob", reason="bye", needs_room=False),
        ),
        ("/lock bob", c.Moderate("lock", nick="bob", needs_room=False)),
        ("/unlock bob", c.Moderate("unlock", nick="bob", needs_room=False)),
    ],
)
def test_lines_become_the_same_commands_in_both_clients(client, line, command):
    assert c.parse(line, client) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/rooms", c.ListRooms()),
        ("/conversations", c.ListConversations()),
        ("/list", c.ListConversations()),
        ("/read", c.MarkRead()),
        ("/history", c.ShowHistory(None)),
        ("/history 5", c.ShowHistory(5)),
        ("/history 999999", c.ShowHistory(MAX_PAGE)),
        ("/ids", c.ToggleIds()),
    ],
)
def test_terminal_only_commands(line, command):
    assert c.parse(line, T) == command
    # The desktop client has its own ways (sidebar, room browser, scrolling back).
    unknown = c.parse(line, G)
    assert isinstance(unknown, c.UnknownCommand) and "unknown command" in unknown.message


@pytest.mark.parametrize("line", ["", "   ", "\t", "\n"])
def test_blank_lines_do_nothing(line):
    assert c.parse(line, T) is None and c.parse(line, G) is None


@pytest.mark.parametrize(
    ("line", "terminal", "gui"),
    [
        ("/msg", "usage: /msg NICK TEXT", "usage: /msg nick text"),
        ("/msg bob   ", "usage: /msg NICK TEXT", "usage: /msg nick text"),
        ("/msg b@d hi", "'b@d' is not a nick", "'b@d' is not a nick"),
        ("/join", "usage: /join #ROOM", "usage: /join #room"),
        ("/join #a b", "usage: /join #ROOM", "usage: /join #room"),
        ("/join #bad!", "is not a room name", "is not a room name"),
        ("/leave #a #b", "usage: /leave [#ROOM]", "usage: /leave [#room]"),
        ("/who #bad!", "is not a room name", "is not a room name"),
        ("/search", "usage: /search WORDS", "usage: /search words"),
        ("/exit now", "/exit takes no arguments", "/exit takes no arguments"),
        ("/kick", "usage: /kick NICK [REASON]", "usage: /kick nick [reason]"),
        ("/ban", "usage: /ban NICK [DURATION] [REASON]", "usage: /ban nick [duration] [reason]"),
        ("/kick #bad! bob", "is not a room name", "is not a room name"),
        ("/delete x", "usage: /delete ID [REASON]", "usage: /delete id [reason]"),
        ("/edit 3", "usage: /edit ID TEXT", "usage: /edit id text"),
        ("/announce", "usage: /announce TEXT", "usage: /announce text"),
        ("/private now", "/private takes no arguments", "/private takes no arguments"),
        ("/frobnicate x", "unknown command /frobnicate", "unknown command /frobnicate"),
    ],
)
def test_mistakes_say_how_to_use_the_command_in_each_clients_spelling(line, terminal, gui):
    for client, says in ((T, terminal), (G, gui)):
        command = c.parse(line, client)
        assert isinstance(command, c.Invalid), command
        assert says in command.message, (client, command.message)


def test_a_mistake_keeps_a_quoted_name_as_typed():
    command = c.parse("/msg BAD!NAME hi", Client.GUI)
    assert isinstance(command, c.Invalid) and "'BAD!NAME'" in command.message


def test_terminal_history_refuses_what_is_not_a_count():
    for line in ("/history x", "/history 0", "/history -3", "/history \u00b2"):
        command = c.parse(line, T)
        assert isinstance(command, c.Invalid) and "usage: /history [N]" in command.message
    # "\u00b2" is a digit to str.isdigit() but not to int(): it once raised out of parse.
    for line in ("/delete \u00b2", "/delete 99999999999999999999"):  # past 2**63 - 1 too
        deleting = c.parse(line, T)
        assert isinstance(deleting, c.Invalid) and "usage: /delete ID" in deleting.message
    banning = c.parse("/ban bob 9999999d spam", T)
    assert isinstance(banning, c.Invalid) and "at most a year" in banning.message
    searching = c.parse("/search " + "w " * 150, T)
    assert isinstance(searching, c.Invalid) and "at most 200 characters" in searching.message


def test_an_unknown_command_carries_its_name_and_arguments_for_extensions():
    command = c.parse("/Keys export /tmp/k.bin", T)
    assert isinstance(command, c.UnknownCommand)
    assert (command.name, command.args) == ("keys", "export /tmp/k.bin")


def test_durations():
    assert [c.parse_duration(w) for w in ("30", "30m", "2h", "7d", "x", "2w")] == [
        30, 30, 120, 10080, None, None,
    ]  # fmt: skip


def test_help_lists_every_command_of_each_client_once():
    for client in (T, G):
        lines = c.help_lines(client)
        for spec in c.COMMANDS:
            shown = [line for line in lines if line.startswith(spec.usage_for(client) + " ")]
            assert len(shown) == (1 if client in spec.clients else 0), (client, spec.names)
    gui = "\n".join(c.help_lines(G))
    assert "/msg nick text" in gui and "/rooms" not in gui and "right-click" in gui
    terminal = c.help_text(T, "chat") + c.help_text(T, "moderation")
    assert "/msg NICK TEXT" in terminal and "/history [N]" in terminal and "/ids" in terminal


def test_terminal_help_wraps_long_lines_under_their_text():
    block = c.help_text(T, "chat", columns=60)
    lines = block.splitlines()
    assert all(len(line) <= 60 for line in lines)
    start = lines[0].index("private message")
    continuation = [line for line in lines if not line.lstrip().startswith("/")]
    assert continuation and all(line[:start].strip() == "" for line in continuation)


def test_the_table_can_be_extended_with_a_new_command():
    spec = c.Spec(
        ("wave",), "/wave NICK", "wave at someone", lambda name, rest: c.Say(f"*waves at {rest}*")
    )
    c.add(spec)
    try:
        assert c.parse("/wave bob", G) == c.Say("*waves at bob*")
        assert any(line.startswith("/wave nick") for line in c.help_lines(G))
        with pytest.raises(ValueError, match="already in the table"):
            c.add(c.Spec(("m",), "/m", "clash", lambda name, rest: c.Help()))
    finally:
        c.COMMANDS.remove(spec)
    assert isinstance(c.parse("/wave bob", G), c.UnknownCommand)


def test_every_name_is_unique_across_the_table():
    names = [name for spec in c.COMMANDS for name in spec.names]
    assert len(names) == len(set(names))


# Any line at all: a command, a usage mistake or text, never an exception (a
# "\u00b2" once passed isdigit() and raised out of int()).
_ODD = ["\u00b2", "\u0661\u0662", "99999999999999999999", "9999999d", "-1", "0", "", "#", "x y"]
_NAMES = sorted({n for spec in c.COMMANDS for n in spec.names} | {"frob"})


def _parsed_or_refused(line: str, client: Client) -> None:
    command = c.parse(line, client)
    assert isinstance(command, c.Command | c.Invalid | c.UnknownCommand), command
    if isinstance(command, c.Moderate) and command.minutes is not None:
        assert 1 <= command.minutes <= MAX_SANCTION_MINUTES  # a frame can carry it


@pytest.mark.parametrize("client", list(Client))
def test_every_command_with_odd_arguments_is_parsed_or_refused(client):
    # Every command, each odd word first, second and third: about 2,000 lines.
    for name in _NAMES:
        for odd in _ODD:
            for args in ([odd], ["bob", odd], ["#a", "bob", odd], [odd, "text"]):
                _parsed_or_refused(" ".join([f"/{name}", *args]), client)


@settings(max_examples=examples(300), deadline=None)
@given(
    name=st.sampled_from(_NAMES),
    args=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(_ODD)), max_size=4),
    client=st.sampled_from(list(Client)),
)
def test_no_line_makes_the_parser_raise(name, args, client):
    _parsed_or_refused(" ".join([f"/{name}", *args]), client)
