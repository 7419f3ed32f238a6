"""The desktop client's end-to-end encryption in real windows against a real server.

A private message typed in one window is shown decrypted (with a padlock) in
the other, stored unreadable, found by search only through the local store;
the safety number is the same in both windows. Without an OS keyring the
window asks for a passphrase (chosen twice on first use, typed to unlock
afterwards, a wrong one said plainly); cancelling leaves the keys locked and
then a private message to someone who has keys is not sent at all. Keys
exported in one window are imported on a second device (another folder),
which then reads the history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest
from keyring.backends import fail

from parley_chat.client import MessageReceived
from parley_chat.client.e2e.files import account_dir
from parley_chat.client.gui.chat_view import PLAIN_PRIVATE
from parley_chat.client.gui.e2e import SETTLED_TEXT
from parley_chat.client.gui.model import SEARCH_KEY, dm_key, room_key
from tests.client.gui.helpers import pump, type_into, wait_event

pytestmark = pytest.mark.gui

UNLINKED = "This device has no end-to-end keys yet"
LOCKED = "End-to-end encryption is OFF on this device"
PASSPHRASE = "correct horse battery"


def shows(app: Any, text: str) -> bool:
    return text in app.chat_view.content()


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """This machine as one without an OS keyring (keyring's own "fail" backend)."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(before)


def dialog_of(app: Any, mode: str) -> Any:
    """The key dialog the window shows, once it is open in *mode*."""
    pump(
        app,
        lambda: app.e2e.dialog is not None and app.e2e.dialog.mode == mode,
        what=f"the {mode} key dialog",
    )
    return app.e2e.dialog


def answer(dialog: Any, phrase: str, confirm: str | None = None, path: str | None = None) -> None:
    """Fill in the dialog as a user would and press its submit button."""
    if path is not None and dialog.path is not None:
        dialog.path.delete(0, "end")
        dialog.path.insert(0, path)
    dialog.passphrase.delete(0, "end")
    dialog.passphrase.insert(0, phrase)
    if dialog.confirm is not None:
        dialog.confirm.delete(0, "end")
        dialog.confirm.insert(0, phrase if confirm is None else confirm)
    dialog.submit_button.invoke()


def sign_in_again(app: Any) -> None:
    """Sign out, then press Connect on the connect page with the same form."""
    app.sign_out()
    pump(app, lambda: app.connect_page.winfo_ismapped(), what="the connect page")
    app.connect_page.password.insert(0, "secret-pw")
    app.connect_page.submit()


def connected(app: Any) -> bool:
    return app.statusbar.state == "connected" and app.model.current_conversation is not None


def public_barrier(sender: Any, reader: Any, text: str) -> None:
    """*sender* posts *text* in the lobby and *reader* waits to see it: the server
    handles one connection's frames in order, so whatever *sender* sent before
    has reached *reader* by then (the sign before asserting an absence)."""
    sender.select(room_key("#lobby"))
    type_into(sender, text)
    lobby = reader.model.conversations[room_key("#lobby")]
    pump(reader, lambda: any(ln.text == text for ln in lobby.lines), what=f"{text} arrived")


def test_a_private_message_between_two_windows_is_end_to_end_encrypted(
    open_app, chat_client, db_url
):
    alice = open_app("alice")
    pump(alice, lambda: shows(alice, SETTLED_TEXT), what="alice's keys settled")
    bob = open_app("bob")
    pump(bob, lambda: shows(bob, SETTLED_TEXT), what="bob's keys settled")

    type_into(alice, "/msg bob the pangolin is 42")
    pump(alice, lambda: alice.model.current == dm_key("bob") and shows(alice, "pangolin is 42"))
    pump(bob, lambda: dm_key("alice") in bob.model.conversations, what="bob's DM appears")
    bob.sidebar.row_button(dm_key("alice")).invoke()
    pump(bob, lambda: shows(bob, "the pangolin is 42"), what="bob reads it decrypted")
    # The padlock: on the encrypted line, in both windows; no "not encrypted" words.
    for app in (alice, bob):
        pump(app, lambda a=app: a.chat_view.tagged_count("lock") >= 1, what="a padlock")
        assert "secure" in app.chat_view.tags_at_text("the pangolin is 42")
        assert PLAIN_PRIVATE not in app.chat_view.content()

    # The header says so; messages typed in a row arrive in that order.
    pump(bob, lambda: bob.chat_view.header_text().endswith("\u00b7 end-to-end encrypted"))
    for i in range(4):
        type_into(alice, f"in order {i}")
    pump(bob, lambda: shows(bob, "in order 3"), what="the four arrive")
    shown = bob.chat_view.content()
    assert [shown.index(f"in order {i}") for i in range(4)] == sorted(
        shown.index(f"in order {i}") for i in range(4)
    )

    path = Path(db_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"pangolin" not in stored

    # A public line has no padlock.
    bob.select(room_key("#lobby"))
    type_into(bob, "the lobby is public")
    pump(bob, lambda: shows(bob, "the lobby is public"))
    assert "secure" not in bob.chat_view.tags_at_text("the lobby is public")
    assert bob.chat_view.tagged_count("lock") == 0

    # A private message to someone without keys goes plainly, marked and said so.
    chat_client("carol")  # a client that never publishes keys
    type_into(alice, "/msg carol no keys over here")
    pump(alice, lambda: shows(alice, "carol has no end-to-end encryption keys"))
    pump(alice, lambda: "NOT end-to-end encrypted" in alice.chat_view.header_text())
    pump(alice, lambda: shows(alice, f"no keys over here ({PLAIN_PRIVATE})"), what="plain mark")
    assert "insecure" in alice.chat_view.tags_at_text("no keys over here")
    assert alice.chat_view.tagged_count("lock") == 0

    # To a nick with no account: said as that, and nothing is sent (no "no keys" warning).
    type_into(alice, "/msg nobody are you there")
    pump(alice, lambda: shows(alice, "Not sent: no user named nobody"))
    assert alice.composer.get() == "/msg nobody are you there"  # given back to fix
    alice.composer.set_text("")
    assert "nobody has no end-to-end" not in alice.chat_view.content()

    bob.select(dm_key("alice"))
    type_into(bob, "/search pangolin")
    pump(bob, lambda: bob.model.current == SEARCH_KEY and shows(bob, "pangolin is 42"))
    assert "secure" in bob.chat_view.tags_at_text("pangolin is 42")

    alice.select(dm_key("bob"))
    type_into(alice, "/safety bob")
    pump(alice, lambda: shows(alice, "Safety number with bob:"))
    bob.select(dm_key("alice"))
    type_into(bob, "/safety alice")
    pump(bob, lambda: shows(bob, "Safety number with alice:"))
    number = re.compile(r"Safety number with \w+: ((?:\d{5} ){11}\d{5})")
    found_a = number.search(alice.chat_view.content())
    found_b = number.search(bob.chat_view.content())
    assert found_a and found_b and found_a.group(1) == found_b.group(1)


def test_without_a_keyring_the_window_asks_for_a_passphrase(
    open_app, no_keyring, tmp_path, gui_server
):
    bob = open_app("bob")
    pump(bob, lambda: shows(bob, SETTLED_TEXT), what="bob's keys settled")
    alice = open_app("alice", key_passphrase=None, connected=False)

    # First use: choose a passphrase, typed twice; the checks are said plainly.
    create = dialog_of(alice, "create")
    answer(create, PASSPHRASE, confirm="something else")
    assert "differ" in create.error_text()
    answer(create, "short")
    assert "at least 8" in create.error_text()
    answer(create, PASSPHRASE)
    pump(alice, lambda: connected(alice) and shows(alice, SETTLED_TEXT), what="alice settled")
    host, port = gui_server.address
    keys_file = account_dir(tmp_path / "config-alice", host, port, "alice") / "keys.json"
    assert json.loads(keys_file.read_text())["kdf"] == "argon2id"
    for f in (tmp_path / "config-alice").rglob("*"):
        if f.is_file():
            assert PASSPHRASE.encode() not in f.read_bytes(), f

    # The next sign-in unlocks: a wrong passphrase is said, and another try works.
    sign_in_again(alice)
    unlock = dialog_of(alice, "unlock")
    answer(unlock, "not the passphrase")
    pump(alice, lambda: "Wrong passphrase" in unlock.error_text(), what="wrong passphrase said")
    assert not unlock.closed and not connected(alice)
    answer(unlock, PASSPHRASE)
    pump(alice, lambda: connected(alice) and shows(alice, SETTLED_TEXT), what="unlocked")
    assert unlock.closed

    # Cancel: encryption is off, said plainly, and a private message to bob (who
    # has keys) is not sent at all rather than sent in the clear.
    sign_in_again(alice)
    dialog_of(alice, "unlock").cancel_button.invoke()
    pump(alice, lambda: connected(alice) and shows(alice, LOCKED), what="locked said")
    assert "NOT sent" in alice.chat_view.content()
    type_into(alice, "/msg bob a secret for bob")
    pump(alice, lambda: shows(alice, "Not sent: bob has end-to-end encryption keys"))
    public_barrier(alice, bob, "after the refused message")
    assert dm_key("alice") not in bob.model.conversations
    assert all(
        "a secret for bob" not in ln.text
        for c in bob.model.conversations.values()
        for ln in c.lines
    )

    # Unlocked from the key menu, the same message goes, encrypted.
    entries = dict(alice.key_menu_entries())
    assert "Unlock keys\u2026" in entries
    entries["Unlock keys\u2026"]()
    answer(dialog_of(alice, "unlock"), PASSPHRASE)
    pump(alice, lambda: shows(alice, "Your end-to-end keys are unlocked"), what="menu unlock")
    pump(alice, lambda: alice.e2e.locked is None and shows(alice, SETTLED_TEXT))
    alice.select(room_key("#lobby"))
    type_into(alice, "/msg bob a secret for bob, encrypted")
    pump(bob, lambda: dm_key("alice") in bob.model.conversations, what="bob's DM appears")
    bob.select(dm_key("alice"))
    pump(bob, lambda: shows(bob, "a secret for bob, encrypted"), what="bob reads it")
    assert "secure" in bob.chat_view.tags_at_text("a secret for bob, encrypted")


def test_keys_exported_in_one_window_are_imported_on_a_second_device(open_app, tmp_path):
    alice = open_app("alice")
    pump(alice, lambda: shows(alice, SETTLED_TEXT), what="alice's keys settled")
    bob = open_app("bob")
    pump(bob, lambda: shows(bob, SETTLED_TEXT), what="bob's keys settled")
    type_into(bob, "/msg alice the otter sleeps at nine")
    pump(alice, lambda: dm_key("bob") in alice.model.conversations, what="alice's DM appears")

    export = tmp_path / "alice-keys.json"
    alice.composer.set_text("/keys")  # hinted while typed, as every command is
    pump(
        alice,
        lambda: "/keys export" in alice.composer.hint and "/keys import" in alice.composer.hint,
    )
    alice.composer.set_text("")
    type_into(alice, f"/keys export {export}")
    dialog = dialog_of(alice, "export")
    answer(dialog, "export passphrase", confirm="another one")
    assert "differ" in dialog.error_text()
    answer(dialog, "export passphrase")
    pump(alice, lambda: shows(alice, f"Keys written to {export}"), what="export done")
    assert dialog.closed
    assert json.loads(export.read_text())["kdf"] == "argon2id"
    assert export.stat().st_mode & 0o077 == 0

    # A second device: its own folder, the same account, no keys yet.
    device2 = open_app("alice", config=tmp_path / "device2", title="parley-alice-2")
    pump(device2, lambda: shows(device2, UNLINKED), what="the new device has no keys")
    pump(device2, lambda: dm_key("bob") in device2.model.conversations)
    device2.select(dm_key("bob"))
    pump(device2, lambda: shows(device2, "[end-to-end encrypted]"), what="unreadable here")
    assert not shows(device2, "the otter sleeps at nine")

    type_into(device2, f"/keys import {export}")
    dialog = dialog_of(device2, "import")
    answer(dialog, "not the export passphrase")
    pump(device2, lambda: "Wrong passphrase" in dialog.error_text(), what="wrong passphrase")
    assert device2.e2e.locked is None and not dialog.closed
    answer(dialog, "export passphrase")
    pump(device2, lambda: shows(device2, f"Keys imported from {export}"), what="imported")
    pump(
        device2,
        lambda: shows(device2, "the otter sleeps at nine"),
        what="the history decrypted on the second device",
    )
    assert "secure" in device2.chat_view.tags_at_text("the otter sleeps at nine")
    pump(device2, lambda: shows(device2, SETTLED_TEXT), what="the new device settled")
    assert not shows(device2, "[end-to-end encrypted]")


def test_cancelling_the_first_passphrase_makes_no_keys_and_sends_nothing_to_peers_with_keys(
    open_app, no_keyring, chat_client, tmp_path, gui_server
):
    bob = open_app("bob")
    pump(bob, lambda: shows(bob, SETTLED_TEXT), what="bob's keys settled")
    dave = chat_client("dave")  # a client without end-to-end keys
    carol = open_app("carol", key_passphrase=None, connected=False)
    dialog_of(carol, "create").cancel_button.invoke()
    pump(carol, lambda: connected(carol) and shows(carol, LOCKED), what="locked said")
    host, port = gui_server.address
    assert not (account_dir(tmp_path / "config-carol", host, port, "carol") / "keys.json").exists()

    type_into(carol, "/msg bob for bob only")
    pump(carol, lambda: shows(carol, "Not sent: bob has end-to-end encryption keys"))
    # To someone without keys it goes, plainly, and says so.
    type_into(carol, "/msg dave for dave, in the clear")
    pump(carol, lambda: shows(carol, "dave has no end-to-end encryption keys"))
    pump(carol, lambda: shows(carol, f"for dave, in the clear ({PLAIN_PRIVATE})"))
    got = wait_event(dave, lambda e: isinstance(e, MessageReceived) and e.message.to == "dave")
    assert got.message.text == "for dave, in the clear" and not got.secure
    public_barrier(carol, bob, "carol's barrier")
    assert dm_key("carol") not in bob.model.conversations


def test_a_mistyped_account_password_does_not_ask_for_the_key_passphrase_again(
    open_app, no_keyring, chat_client
):
    chat_client("alice")  # the account exists, with the password "secret-pw"
    alice = open_app("alice", key_passphrase=None, password="not-the-password", connected=False)
    answer(dialog_of(alice, "create"), PASSPHRASE)
    pump(alice, lambda: alice.connect_page.panel.winfo_ismapped(), what="the login refused")
    alice.connect_page.password.delete(0, "end")
    alice.connect_page.password.insert(0, "secret-pw")
    alice.connect_page.submit()
    # No second dialog: it would stop the login until answered.
    pump(alice, lambda: connected(alice) and shows(alice, SETTLED_TEXT), what="logged in")
    assert alice.e2e.dialog is None


class _MemoryKeyring(keyring.backend.KeyringBackend):
    """An OS keyring held in memory (keyring's own backend interface)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[_MemoryKeyring]:
    before = keyring.get_keyring()
    store = _MemoryKeyring()
    keyring.set_keyring(store)
    try:
        yield store
    finally:
        keyring.set_keyring(before)


def test_with_a_keyring_nothing_is_asked_unless_a_passphrase_is_preferred(
    open_app, memory_keyring, tmp_path, gui_server
):
    host, port = gui_server.address
    alice = open_app("alice", key_passphrase=None)
    pump(alice, lambda: shows(alice, SETTLED_TEXT), what="alice's keys settled")
    assert alice.e2e.dialog is None
    keys_file = account_dir(tmp_path / "config-alice", host, port, "alice") / "keys.json"
    assert json.loads(keys_file.read_text())["kdf"] == "keyring"
    assert [name for _service, name in memory_keyring.items] == [f"alice@{host}:{port}"]
    # "key_passphrase": true in settings.json: the dialog, though a keyring is there.
    bob = open_app("bob", key_passphrase=None, prefer_passphrase=True, connected=False)
    answer(dialog_of(bob, "create"), PASSPHRASE)
    pump(bob, lambda: connected(bob) and shows(bob, SETTLED_TEXT), what="bob's keys settled")
    keys_file = account_dir(tmp_path / "config-bob", host, port, "bob") / "keys.json"
    assert json.loads(keys_file.read_text())["kdf"] == "argon2id"
    assert len(memory_keyring.items) == 1
