"""Several nodes on one PostgreSQL database: live delivery across nodes, failover with
an exact replay, catching up after the listener connection is cut, and order under load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from parley_chat.protocol import Message, Ping, Pong, Send
from parley_chat.server.app import ChatServer
from tests.support import RawClient


def _client(node: ChatServer, ca_file: Path) -> RawClient:
    return RawClient(node.address, ca_file)


def _barrier(c: RawClient, token: str = "b") -> list[object]:
    """Frames up to the pong of a ping: everything the server queued before it."""
    c.send(Ping(token=token))
    return c.recv_until(lambda f: isinstance(f, Pong) and f.token == token)[:-1]


def test_a_message_sent_on_node_a_arrives_live_on_node_b(
    make_node: Callable[..., ChatServer], ca_file: Path
) -> None:
    a = make_node("a")
    b = make_node("b")
    alice = _client(a, ca_file)
    bob = _client(b, ca_file)
    alice.login("alice")
    bob.login("bob")
    _barrier(bob)
    alice.send(Send(id="m1", room="#lobby", text="hello from a"))
    got = bob.expect(Message, timeout=20, text="hello from a")
    assert got.from_ == "alice" and got.room == "#lobby"
    # And back: B's sender, A's reader.
    bob.send(Send(id="m2", room="#lobby", text="hello from b"))
    back = alice.expect(Message, timeout=20, text="hello from b")
    assert back.id > got.id
    alice.close()
    bob.close()
