# The desktop client's end-to-end encryption in real windows against a real
# server: a private message typed in one window is shown decrypted in the
# other, stored unreadable, found by search only through the local store, and
# the safety number is the same in both windows.

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley_chat.client.e2e.files import PASSPHRASE_ENV
from parley_chat.client.gui.model import SEARCH_KEY, dm_key
from tests.client.gui.helpers import pump, type_into

pytestmark = pytest.mark.gui

SETTLED = "Private messages are end-to-end encrypted"


def shows(app, text: str) -> bool:
    return text in app.chat_view.content()


def test_a_private_message_between_two_windows_is_end_to_end_encrypted(
    open_app, monkeypatch, db_url
):
    monkeypatch.setenv(PASSPHRASE_ENV, "window passphrase")
    alice = open_app("alice")
    pump(alice, lambda: shows(alice, SETTLED), what="alice's keys settled")
    bob = open_app("bob")
    pump(bob, lambda: shows(bob, SETTLED), what="bob's keys settled")

    type_into(alice, "/msg bob the pangolin is 42")
    pump(alice, lambda: alice.model.current == dm_key("bob") and shows(alice, "pangolin is 42"))
    pump(bob, lambda: dm_key("alice") in bob.model.conversations, what="bob's DM appears")
    bob.sidebar.row_button(dm_key("alice")).invoke()
    pump(bob, lambda: shows(bob, "the pangolin is 42"), what="bob reads it decrypted")

    path = Path(db_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"pangolin" not in stored

    type_into(bob, "/search pangolin")
    pump(bob, lambda: bob.model.current == SEARCH_KEY and shows(bob, "pangolin is 42"))

    type_into(alice, "/safety bob")
    pump(alice, lambda: shows(alice, "Safety number with bob:"))
    bob.select(dm_key("alice"))
    type_into(bob, "/safety alice")
    pump(bob, lambda: shows(bob, "Safety number with alice:"))
    number = re.compile(r"Safety number with \w+: ((?:\d{5} ){11}\d{5})")
    found_a = number.search(alice.chat_view.content())
    found_b = number.search(bob.chat_view.content())
    assert found_a and found_b and found_a.group(1) == found_b.group(1)
