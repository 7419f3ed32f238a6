"""First contact with the IRC listener: SASL registration and a channel message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from parley_chat.server.chat_server import ChatServer
from tests.irc.ircclient import IrcClient
from tests.support import RawClient


def _account(server: ChatServer, ca_file: Path, nick: str, password: str = "secret-pw") -> None:
    c = RawClient(server.address, ca_file)
    try:
        c.login(nick, password)
    finally:
        c.close()


def test_sasl_login_and_lobby(
    irc_server: ChatServer, irc_connect: Callable[[], IrcClient], ca_file: Path
) -> None:
    _account(irc_server, ca_file, "alice")
    c = irc_connect()
    burst = c.login("alice", "secret-pw")
    assert burst[0].command == "001" and burst[0].params[0] == "alice"
    more = c.sync()
    joins = [m for m in more if m.command == "JOIN"]
    assert [m.params[0] for m in joins] == ["#lobby"]
