"""Fixtures for the IRC listener's tests: a real server with its IRC port on,
accounts made through the real parley protocol."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parley_chat.server.chat_server import ChatServer
from tests.irc.ircclient import IrcClient


def free_port() -> int:
    """A TCP port free on loopback now (the IRC port takes no 0 = any port: 0 is off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def irc_server(make_server: Callable[..., ChatServer]) -> ChatServer:
    """A server with its IRC listener on."""
    return make_server(irc_port=free_port())


@pytest.fixture
def irc_connect(irc_server: ChatServer, ca_file: Path) -> Iterator[Callable[[], IrcClient]]:
    """Open IRC connections to irc_server (closed at teardown)."""
    opened: list[IrcClient] = []

    def _connect() -> IrcClient:
        address = irc_server.irc_address
        assert address is not None
        client = IrcClient(address, ca_file)
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        client.close()
