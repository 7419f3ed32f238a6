# client/gui/commands.py: what the input line means (no display needed).

from __future__ import annotations

import pytest

from parley_chat.client.gui import commands as c


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("hello", c.Say("hello")),
        ("  spaced  ", c.Say("  spaced  ")),
        ("//not a command", c.Say("/not a command")),
        ("/msg bob hi there", c.PrivateMessage("bob", "hi there")),
        ("/MSG bob  hi", c.PrivateMessage("bob", "hi")),
        ("/m bob x", c.PrivateMessage("bob", "x")),
        ("/join #dev", c.JoinRoom("#dev")),
        ("/join dev", c.JoinRoom("#dev")),
        ("/leave", c.LeaveRoom(None)),
        ("/leave #dev", c.LeaveRoom("#dev")),
        ("/who", c.Who(None)),
        ("/who #dev", c.Who("#dev")),
        ("/search brown fox", c.SearchMessages("brown fox")),
        ("/help", c.Help()),
        ("/exit", c.Exit()),
        ("/quit", c.Exit()),
        ("/rejoin", c.Rejoin()),
    ],
)
def test_lines_become_actions(line, action):
    assert c.parse(line) == action


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_blank_lines_do_nothing(line):
    assert c.parse(line) is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/msg", "usage: /msg nick text"),
        ("/msg bob", "usage: /msg nick text"),
        ("/msg bob   ", "usage: /msg nick text"),
        ("/msg b@d hi", "is not a nick"),
        ("/join", "usage: /join #room"),
        ("/join #a b", "usage: /join #room"),
        ("/join #no way!", "usage"),
        ("/join #bad!", "is not a room name"),
        ("/leave #a #b", "usage: /leave"),
        ("/search", "usage: /search words"),
        ("/exit now", "takes no arguments"),
        ("/frobnicate", "unknown command /frobnicate"),
    ],
)
def test_mistakes_say_how_to_use_the_command(line, says):
    action = c.parse(line)
    assert isinstance(action, c.Invalid)
    assert says in action.message


def test_help_lists_every_command():
    text = "\n".join(c.help_lines())
    for name in ("/msg", "/join", "/leave", "/who", "/help", "/exit", "/rejoin", "/search"):
        assert name in text
