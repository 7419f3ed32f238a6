# The client library's side of conversations: the list at login and on request,
# read markers across two devices, history around an id, and the flood limits
# from welcome. Real ChatClients over real TLS against a real server.

from __future__ import annotations

import pytest

from parley_chat.client import (
    Acked,
    BatchEnded,
    ChatClient,
    Connected,
    ConversationsListed,
    MessageReceived,
    ReadMoved,
)
from parley_chat.protocol import LocalProtocolError
from tests.client.test_connection import kill_socket
from tests.support import collect_until, wait_for_event

PASSWORD = "secret-pw"


@pytest.fixture
def clients(make_server, ca_file):
    """A factory of connected ChatClients (default flood limits on the server)."""
    server = make_server(flood_rate=5.0, flood_burst=10)
    made: list[ChatClient] = []

    def make(nick: str) -> tuple[ChatClient, list]:
        host, port = server.address
        client = ChatClient(
            host, port, nick=nick, password=PASSWORD, register=True, ca_file=ca_file
        )
        made.append(client)
        client.connect()
        events = collect_until(client, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
        return client, events

    yield make
    for client in made:
        client.close(timeout=2.0)


def send_acked(client: ChatClient, text: str, **target: str) -> int:
    cid = client.send_text(text, **target)
    return wait_for_event(client, lambda e: isinstance(e, Acked) and e.client_id == cid).id


def test_the_list_arrives_after_connected_before_the_replay(clients):
    alice, events = clients("alice")
    kinds = [type(e).__name__ for e in events]
    assert (
        kinds.index("Connected") < kinds.index("ConversationsListed") < kinds.index("BatchStarted")
    )
    listed = next(e for e in events if isinstance(e, ConversationsListed))
    assert [(c.kind, c.name, c.last, c.unread) for c in listed.items] == [
        ("room", "#lobby", None, 0)
    ]
    assert listed.tag is None
    assert alice.flood_rate == 5.0 and alice.flood_burst == 10
    assert isinstance(events[0], Connected)


def test_mark_read_moves_the_marker_on_the_other_device(clients):
    alice, _ = clients("alice")
    phone, _ = clients("alice")
    bob, _ = clients("bob")
    first = send_acked(bob, "one", to="alice")
    second = send_acked(bob, "two", to="alice")
    alice.conversations(tag="before")
    listed = wait_for_event(alice, lambda e: isinstance(e, ConversationsListed))
    private = next(c for c in listed.items if c.kind == "private")
    assert (private.name, private.unread, private.read) == ("bob", 2, 0)
    assert isinstance(private.last, type(wait_for_event(phone, _message("two")).message))
    assert private.last.id == second and private.last.text == "two"
    alice.mark_read("private", "bob", first)
    moved = wait_for_event(phone, lambda e: isinstance(e, ReadMoved))
    assert moved == ReadMoved("private", "bob", first)
    phone.conversations(tag="after")
    listed = wait_for_event(
        phone, lambda e: isinstance(e, ConversationsListed) and e.tag == "after"
    )
    private = next(c for c in listed.items if c.kind == "private")
    assert (private.unread, private.read) == (1, first)
    with pytest.raises(ValueError):
        alice.mark_read("channel", "bob", first)


def _message(text: str):
    return lambda e: isinstance(e, MessageReceived) and e.message.text == text


def test_history_around_an_id(clients):
    alice, _ = clients("alice")
    ids = [send_acked(alice, f"line {i}", room="#lobby") for i in range(9)]
    alice.history(room="#lobby", around=ids[4], limit=3, tag="jump")
    events = collect_until(alice, lambda e: isinstance(e, BatchEnded) and e.tag == "jump")
    got = [e.message.id for e in events if isinstance(e, MessageReceived) and e.tag == "jump"]
    assert got == ids[3:6]


def test_every_login_lists_the_conversations_again(clients):
    alice, _ = clients("alice")
    bob, _ = clients("bob")
    send_acked(bob, "while you blinked", to="alice")
    kill_socket(alice)  # a network failure: the library reconnects by itself
    events = collect_until(alice, lambda e: isinstance(e, ConversationsListed), timeout=30)
    assert any(isinstance(e, Connected) for e in events)  # a new login, then the list
    private = [c for c in events[-1].items if c.kind == "private"]
    assert [(c.name, c.unread, c.last.text if c.last else None) for c in private] == [
        ("bob", 1, "while you blinked")
    ]


def test_history_with_both_before_and_around_is_refused_locally(clients):
    alice, _ = clients("alice")
    with pytest.raises(LocalProtocolError):
        alice.history(room="#lobby", before=5, around=3)
