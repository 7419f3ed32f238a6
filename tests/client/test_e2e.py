# End-to-end encrypted private messages over a real TLS server and a real
# SQLite file: the plaintext never reaches the database, the server's log or
# the logs tool; every device of both accounts decrypts, live and in replay; a
# swapped key blocks sending; linking a device works and a wrong code fails;
# search finds encrypted messages only on the client.

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley_chat.client import BatchEnded, ChatClient, ConversationsListed, MessageReceived
from parley_chat.client.e2e.crypto import AccountKeys, E2EError
from parley_chat.client.e2e.localstore import LocalStore
from parley_chat.client.e2e.pins import KeyChanged, PinStore
from parley_chat.client.e2e.session import E2ENotice, E2ESession, NoPeerKeys, NoSuchUser
from parley_chat.client.events import Acked
from parley_chat.server.logs import main as logs_main
from tests.support import collect_until, wait_for_event

PASSWORD = "secret-pw"
SECRET = "ultraviolet pangolin 7431"


class Device:
    """One connected client of an account, its E2E session and its login's replay."""

    def __init__(self, client: ChatClient, session: E2ESession, replay: list) -> None:
        self.client = client
        self.e2e = session
        self.replay = [e for e in replay if isinstance(e, MessageReceived)]

    def wait_private(self, text: str) -> MessageReceived:
        return wait_for_event(
            self.client,
            lambda e: isinstance(e, MessageReceived) and e.message.text == text and e.secure,
        )

    def barrier(self) -> list:
        """Every event up to the echo of a fresh room message (so nothing is still on its way)."""
        cid = self.client.send_text("barrier")
        return collect_until(self.client, lambda e: isinstance(e, Acked) and e.client_id == cid)


@pytest.fixture
def devices(make_server, ca_file) -> Iterator:
    server = make_server()
    made: list[ChatClient] = []

    def make(nick: str, keys: AccountKeys | None, *, last_seen: int | None = None) -> Device:
        host, port = server.address
        client = ChatClient(
            host,
            port,
            nick=nick,
            password=PASSWORD,
            register=True,
            ca_file=ca_file,
            last_seen=last_seen,
        )
        session = E2ESession(
            client,
            keys,
            PinStore(None),
            local_factory=lambda k: LocalStore(":memory:", k.local_key(), nick),
        )
        made.append(client)
        client.connect()
        replay = collect_until(client, lambda e: isinstance(e, BatchEnded) and e.kind == "replay")
        return Device(client, session, replay)

    yield make
    for client in made:
        client.close(timeout=2.0)


def _acked(device: Device, client_id: str) -> int:
    return wait_for_event(
        device.client, lambda e: isinstance(e, Acked) and e.client_id == client_id
    ).id


def _database_bytes(db_url: str) -> bytes:
    path = Path(db_url.removeprefix("sqlite:///"))
    files = list(path.parent.glob(path.name + "*"))  # the file, its -wal and -shm
    assert path in files
    return b"".join(p.read_bytes() for p in files)


def _logs_tool(db_url: str, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = logs_main(["--db", db_url, *argv], stdout=out, stderr=err, environ={})
    assert code == 0, err.getvalue()
    return out.getvalue() + err.getvalue()


def _pair(make, alice_keys: AccountKeys | None = None, bob_keys: AccountKeys | None = None):
    alice = make("alice", alice_keys or AccountKeys.generate())
    assert alice.e2e.start() == "published"
    bob = make("bob", bob_keys or AccountKeys.generate())
    assert bob.e2e.start() == "published"
    return alice, bob


def test_every_device_of_both_parties_decrypts_it_live_and_in_replay(devices):
    alice_keys, bob_keys = AccountKeys.generate(), AccountKeys.generate()
    alice, bob_desktop = _pair(devices, alice_keys, bob_keys)
    alice_laptop = devices("alice", alice_keys)
    assert alice_laptop.e2e.start() == "ready"
    bob_phone = devices("bob", bob_keys)
    assert bob_phone.e2e.start() == "ready"
    carol = devices("carol", AccountKeys.generate())
    carol.e2e.start()

    message_id = _acked(alice, alice.e2e.send_private("bob", SECRET))

    for device in (bob_desktop, bob_phone, alice_laptop):
        got = device.wait_private(SECRET)
        assert got.message.id == message_id and got.e2e_error is None
        assert (got.message.from_, got.message.to, got.message.e2e) == ("alice", "bob", None)
        assert device.e2e.local is not None and device.e2e.local.get(message_id).text == SECRET
    for nick, keys in (("bob", bob_keys), ("alice", alice_keys)):
        again = devices(nick, keys, last_seen=0)
        replayed = [e for e in again.replay if e.message.id == message_id]
        assert len(replayed) == 1 and replayed[0].batch == "replay"
        assert replayed[0].secure and replayed[0].message.text == SECRET
    # carol is no party: nothing of it reaches her.
    assert not any(
        isinstance(e, MessageReceived) and e.message.kind == "private" for e in carol.barrier()
    )
    # A device of bob's account without the keys shows that it cannot read it.
    keyless = devices("bob", None, last_seen=0)
    unread = next(e for e in keyless.replay if e.message.id == message_id)
    assert unread.secure and unread.e2e_error and "link" in unread.e2e_error
    assert SECRET not in unread.message.text


def test_the_plaintext_never_reaches_the_database_the_log_or_the_logs_tool(devices, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    alice, bob = _pair(devices)
    _acked(alice, alice.e2e.send_private("bob", SECRET))
    bob.wait_private(SECRET)
    bob.barrier()

    assert SECRET.encode() not in _database_bytes(db_url)
    assert b"pangolin" not in _database_bytes(db_url)
    assert all("pangolin" not in r.getMessage() for r in caplog.records)
    shown = _logs_tool(db_url, "query", "SELECT * FROM chat_log WHERE kind = 'private'")
    assert "[end-to-end encrypted]" in shown and "pangolin" not in shown
    exported = _logs_tool(db_url, "export", "--format", "jsonl")
    assert "[end-to-end encrypted]" in exported and "pangolin" not in exported
    assert "pangolin" not in _logs_tool(db_url, "search", "pangolin")
    assert "pangolin" not in _logs_tool(db_url, "query", "SELECT * FROM messages")


def test_a_swapped_public_key_raises_the_warning_and_nothing_is_sent(devices):
    alice, bob = _pair(devices)
    _acked(alice, alice.e2e.send_private("bob", "first, under the pinned key"))
    bob.wait_private("first, under the pinned key")
    # bob's key in the directory changes (a reset, or a server handing out its own).
    impostor = devices("bob", AccountKeys.generate())
    impostor.e2e.publish(replace=True)

    with pytest.raises(KeyChanged, match="CHANGED") as caught:
        alice.e2e.send_private("bob", SECRET)
    assert caught.value.nick == "bob"
    assert alice.client.pending == {}
    for device in (bob, impostor):
        assert not any(
            isinstance(e, MessageReceived) and e.message.kind == "private" for e in device.barrier()
        )
    # After accepting the new key (the safety number compared), sending works again.
    before = alice.e2e.safety_number("bob")
    alice.e2e.accept("bob")
    assert alice.e2e.safety_number("bob") != before
    _acked(alice, alice.e2e.send_private("bob", "to the new key"))
    impostor.wait_private("to the new key")


def test_a_message_signed_with_another_key_than_the_pin_is_not_shown(devices):
    _, bob = _pair(devices)
    bob.e2e.peer_keys("alice")  # bob pins alice's key
    other_alice = devices("alice", AccountKeys.generate())
    other_alice.e2e.publish(replace=True)
    _acked(other_alice, other_alice.e2e.send_private("bob", SECRET))
    got = wait_for_event(
        bob.client, lambda e: isinstance(e, MessageReceived) and e.message.kind == "private"
    )
    assert got.e2e_error and "pinned" in got.e2e_error and SECRET not in got.message.text


def test_a_peer_without_keys_is_said_plainly_and_nothing_is_sent(devices):
    alice = devices("alice", AccountKeys.generate())
    alice.e2e.start()
    devices("dave", None)  # dave's client has no end-to-end encryption
    with pytest.raises(NoPeerKeys, match="NOT end-to-end encrypted"):
        alice.e2e.send_private("dave", SECRET)
    assert alice.client.pending == {}


def test_no_such_account_is_said_as_that_and_nothing_is_sent(devices):
    # Not "nobody has no keys, the server can read it": there is nobody to read it.
    alice = devices("alice", AccountKeys.generate())
    alice.e2e.start()
    with pytest.raises(NoSuchUser, match="no user named nobody"):
        alice.e2e.send_private("nobody", SECRET)
    assert alice.client.pending == {}


def test_device_linking_completes_and_a_wrong_code_fails(devices):
    keys = AccountKeys.generate()
    phone = devices("alice", keys)
    assert phone.e2e.start() == "published"
    laptop = devices("alice", None)
    assert laptop.e2e.start() == "unlinked"

    start = laptop.e2e.start_link()
    # A round trip on the laptop's connection: its offer (handled inline, in order)
    # is on the server before the phone asks for it.
    laptop.e2e.lookup("alice")
    # A mistyped secret part: the offer is found, but its MAC does not match.
    wrong = start.code[:-1] + ("A" if start.code[-1] != "A" else "B")
    with pytest.raises(E2EError, match="does not match"):
        phone.e2e.fetch_link(wrong)
    with pytest.raises(E2EError, match="fetch the link code first"):
        phone.e2e.confirm_link(wrong)
    # A code no device offered.
    unknown = ("ZZZZ" if start.code[:4] != "ZZZZ" else "YYYY") + start.code[4:]
    with pytest.raises(E2EError, match="no device of yours"):
        phone.e2e.fetch_link(unknown)
    assert laptop.e2e.keys is None

    assert phone.e2e.fetch_link(start.code) == start.comparison
    phone.e2e.confirm_link(start.code)
    notice = wait_for_event(laptop.client, lambda e: isinstance(e, E2ENotice))
    assert notice.kind == "linked"
    assert laptop.e2e.keys is not None and laptop.e2e.keys.public.same_as(keys.public)
    assert laptop.e2e.start() == "ready"
    bob = devices("bob", AccountKeys.generate())
    bob.e2e.start()
    _acked(bob, bob.e2e.send_private("alice", SECRET))
    laptop.wait_private(SECRET)


def test_another_account_cannot_fetch_a_link_offer(devices):
    alice_new = devices("alice", None)
    start = alice_new.e2e.start_link()
    alice_new.e2e.lookup("alice")  # the offer is on the server (see above)
    mallory = devices("mallory", AccountKeys.generate())
    mallory.e2e.start()
    with pytest.raises(E2EError, match="no device of yours"):
        mallory.e2e.fetch_link(start.code)


def test_search_finds_an_encrypted_message_only_on_the_client(devices):
    alice, bob = _pair(devices)
    message_id = _acked(alice, alice.e2e.send_private("bob", SECRET))
    bob.wait_private(SECRET)
    bob.client.search("pangolin", tag="s1")
    events = collect_until(
        bob.client, lambda e: isinstance(e, BatchEnded) and e.kind == "search" and e.tag == "s1"
    )
    assert events[-1].count == 0
    assert not any(isinstance(e, MessageReceived) and e.batch == "search" for e in events)
    hits = bob.e2e.search_local("PANGOLIN ultraviolet")
    assert [(m.id, m.text, m.from_) for m in hits] == [(message_id, SECRET, "alice")]
    assert [m.id for m in alice.e2e.search_local("pangolin")] == [message_id]


def test_a_conversation_preview_shows_this_devices_copy(devices):
    alice, bob = _pair(devices)
    _acked(alice, alice.e2e.send_private("bob", SECRET))
    bob.wait_private(SECRET)
    bob.client.conversations(tag="c1")
    listed = wait_for_event(bob.client, lambda e: isinstance(e, ConversationsListed))
    last = next(c.last for c in listed.items if c.kind == "private")
    assert last is not None and last.text == SECRET  # from bob's local store
    # A device of bob's without keys: the placeholder, never an empty preview.
    keyless = devices("bob", None)
    keyless.client.conversations(tag="c2")
    listed = wait_for_event(keyless.client, lambda e: isinstance(e, ConversationsListed))
    last = next(c.last for c in listed.items if c.kind == "private")
    assert last is not None and last.text == "[end-to-end encrypted]"


def test_the_servers_text_limit_is_kept_for_encrypted_messages(devices):
    alice, _ = _pair(devices)
    with pytest.raises(E2EError, match=f"over {alice.client.max_text} characters"):
        alice.e2e.send_private("bob", "x" * (alice.client.max_text + 1))
    assert alice.client.pending == {}


def test_an_encrypted_text_keeps_the_rule_of_a_plain_one(devices):
    # The server cannot read an envelope, so the sender checks the text as the
    # server checks a plain one: nothing blank, no controls, valid Unicode.
    alice, _ = _pair(devices)
    for text, why in (
        ("   ", "empty"),
        ("bell\x07", "control"),
        ("caf\udce9", "not valid Unicode"),
    ):
        with pytest.raises(E2EError, match=why):
            alice.e2e.send_private("bob", text)
    assert alice.client.pending == {}
