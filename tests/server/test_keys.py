# The server's side of end-to-end encryption (server/keys.py): the key
# directory, the link relay between one account's connections, and encrypted
# messages stored with an empty body, out of search and out of previews.
# Raw frames over real TLS against a real server and SQLite file.

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from parley_chat.protocol import (
    Ack,
    Batch,
    Conversations,
    Error,
    ErrorCode,
    Keys,
    KeysGet,
    KeysPut,
    Link,
    ListConversations,
    Message,
    Search,
    Send,
)
from parley_chat.server.store import utcnow, writes
from tests.support import RawClient, online


def _key(n: int, size: int = 32) -> str:
    return base64.b64encode(bytes([n]) * size).decode()


ENVELOPE = '{"v":1,"c":"' + "Q" * 400 + '"}'


@pytest.fixture
def connect(server, ca_file):
    made: list[RawClient] = []

    def make(nick: str) -> RawClient:
        made.append(online(server, ca_file, nick))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_published_keys_are_handed_out_and_other_keys_need_replace(connect, server):
    alice, bob = connect("alice"), connect("bob")
    bob.send(KeysGet(nick="alice", tag="t1"))
    assert bob.expect(Keys, tag="t1") == Keys(nick="alice", tag="t1")  # none yet, an account
    alice.send(KeysPut(sign=_key(1), box=_key(2), sig=_key(3, 64)))
    assert alice.expect(Keys).sign == _key(1)
    bob.send(KeysGet(nick="ALICE", tag="t2"))
    got = bob.expect(Keys, tag="t2")
    assert (got.nick, got.sign, got.box, got.sig) == ("alice", _key(1), _key(2), _key(3, 64))

    alice.send(KeysPut(sign=_key(1), box=_key(2), sig=_key(3, 64)))  # the same again: fine
    assert alice.expect(Keys).box == _key(2)
    alice.send(KeysPut(sign=_key(4), box=_key(5), sig=_key(6, 64)))
    refused = alice.expect(Error)
    assert refused.code == ErrorCode.KEYS_EXIST and "link this device" in refused.message
    alice.send(KeysPut(sign=_key(4), box=_key(5), sig=_key(6, 64), replace=True))
    assert alice.expect(Keys).sign == _key(4)
    bob.send(KeysGet(nick="alice", tag="t3"))
    assert bob.expect(Keys, tag="t3").sign == _key(4)
    bob.send(KeysGet(nick="nobody", tag="t4"))  # no account at all: said so
    assert bob.expect(Keys, tag="t4") == Keys(nick="nobody", tag="t4", no_account=True)
    server.store.submit(lambda s: writes.delete_user(s, "alice", utcnow())).result(10)
    bob.send(KeysGet(nick="alice", tag="t5"))  # a deleted account: its keys went with it
    assert bob.expect(Keys, tag="t5") == Keys(nick="alice", tag="t5", no_account=True)


def test_link_frames_are_relayed_only_within_one_account(connect):
    new, old, mallory = connect("alice"), connect("alice"), connect("mallory")
    offer = Link(op="offer", code="ABCD", pub=_key(7), mac=_key(8))
    new.send(offer)
    mallory.send(Link(op="fetch", code="ABCD"))
    assert mallory.expect(Error).code == ErrorCode.NO_SUCH_LINK
    old.send(Link(op="fetch", code="ABCE"))
    assert old.expect(Error).code == ErrorCode.NO_SUCH_LINK
    old.send(Link(op="fetch", code="ABCD"))
    assert old.expect(Link) == offer
    answer = Link(op="answer", code="ABCD", pub=_key(9), mac=_key(10), box=_key(11, 80))
    old.send(answer)
    assert new.expect(Link) == answer
    old.send(answer)  # an offer is answered once
    assert old.expect(Error).code == ErrorCode.NO_SUCH_LINK


def test_an_encrypted_message_is_stored_without_a_body_and_found_by_nobody(connect, db_url):
    alice, bob = connect("alice"), connect("bob")
    alice.send(Send(id="c1", text="", to="bob", e2e=ENVELOPE))
    ack = alice.expect(Ack)
    got = bob.expect(Message)
    assert (got.id, got.text, got.e2e, got.from_) == (ack.id, "", ENVELOPE, "alice")
    alice.send(Send(id="c1", text="", to="bob", e2e=ENVELOPE))  # a resend: the same message
    assert alice.expect(Ack).duplicate
    alice.send(Send(id="c1", text="", to="bob", e2e=ENVELOPE.replace("Q", "R")))
    assert alice.expect(Error).code == ErrorCode.ID_REUSED

    bob.send(Search(words="QQQQ", tag="s"))
    found = bob.recv_until(lambda f: isinstance(f, Batch) and f.state == "close")
    assert not any(isinstance(f, Message) for f in found)
    bob.send(ListConversations(tag="c"))
    listed = bob.expect(Conversations)
    last = next(i["last"] for i in listed.items if i["kind"] == "private")
    assert last["id"] == ack.id and last["text"] == "" and "e2e" not in last

    path = Path(db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        body, envelope = db.execute(
            "SELECT body, envelope FROM messages WHERE id = ?", (ack.id,)
        ).fetchone()
        shown = db.execute("SELECT text FROM chat_log WHERE id = ?", (ack.id,)).fetchone()[0]
    assert (body, envelope, shown) == ("", ENVELOPE, "[end-to-end encrypted]")


def test_an_envelope_to_a_room_is_refused(connect):
    alice = connect("alice")
    alice.send(b'{"type":"send","id":"c2","text":"","room":"#lobby","e2e":"{}"}\n')
    assert alice.expect(Error).code == ErrorCode.BAD_FRAME
