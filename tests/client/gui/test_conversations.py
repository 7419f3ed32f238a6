# Conversations that last, against a real server: the sidebar lists private
# conversations after a restart of the app (the server's conversations list),
# read markers travel to a second device, and the room browser lists rooms
# with member counts and joins them; a reconnect within the presence grace
# changes nothing alice sees.

from __future__ import annotations

import pytest

from parley_chat.client import MessageReceived, RoomJoined
from parley_chat.client.gui.model import dm_key, room_key
from tests.client.gui.helpers import pump, send_and_wait, type_into, wait_event

pytestmark = pytest.mark.gui


def test_private_conversations_are_listed_after_a_restart(open_app, chat_client, tmp_path):
    config = tmp_path / "config-alice"
    alice = open_app("alice", config=config)
    bob = chat_client("bob")
    send_and_wait(bob, "remember me after the restart", to="alice")
    pump(alice, lambda: dm_key("bob") in alice.model.conversations)
    alice.shutdown(timeout=0.5)
    assert alice.wait_closed(10)
    bob.close(timeout=0.5)  # bob is offline: he must still be listed
    send_and_wait(chat_client("carol"), "from carol, while alice was away", to="alice")

    again = open_app("alice", config=config)
    pump(again, lambda: dm_key("carol") in again.model.conversations, what="carol listed")
    assert dm_key("bob") in again.model.conversations  # no double-click needed
    pump(again, lambda: again.sidebar.badge_text(dm_key("carol")) == "1")
    assert again.sidebar.badge_is_loud(dm_key("carol"))
    # Each row previews its latest message (from the server's list), on one
    # line cut to the sidebar's width.
    pump(again, lambda: again.sidebar.preview_of(dm_key("bob")) != "")
    assert again.sidebar.preview_of(dm_key("bob")).startswith("bob: remember me")
    carol_line = again.sidebar.preview_of(dm_key("carol"))
    assert carol_line.startswith("carol: from carol") and carol_line.endswith("\u2026")
    # Opening bob's conversation loads its history.
    again.sidebar.row_button(dm_key("bob")).invoke()
    pump(again, lambda: "remember me after the restart" in again.chat_view.content())
    # A new message replaces the preview, in the open conversation too.
    type_into(again, "back again")
    pump(again, lambda: again.sidebar.preview_of(dm_key("bob")) == "you: back again")


def test_reading_on_one_device_marks_it_read_on_the_other(open_app, chat_client, tmp_path):
    first = open_app("alice", config=tmp_path / "dev1")
    second = open_app("alice", config=tmp_path / "dev2", register=False)
    bob = chat_client("bob")
    send_and_wait(bob, "read me on one device", to="alice")
    for app in (first, second):
        pump(app, lambda app=app: app.sidebar.badge_text(dm_key("bob")) == "1")
    first.sidebar.row_button(dm_key("bob")).invoke()
    pump(first, lambda: "read me on one device" in first.chat_view.content())
    # The other device hears of it (ReadMoved) and drops the badge.
    pump(second, lambda: second.sidebar.badge_text(dm_key("bob")) == "", what="badge cleared")
    assert second.model.conversations[dm_key("bob")].read >= 1


def test_the_read_marker_survives_a_restart(open_app, chat_client, tmp_path):
    config = tmp_path / "config-alice"
    alice = open_app("alice", config=config)
    bob = chat_client("bob")
    type_into(alice, "/join #later")
    pump(alice, lambda: alice.model.current == room_key("#later"))
    bob.join("#later")
    wait_event(bob, lambda e: isinstance(e, RoomJoined))
    alice.select(room_key("#lobby"))
    for i in range(3):
        send_and_wait(bob, f"unread in later {i}", room="#later")
    pump(alice, lambda: alice.sidebar.badge_text(room_key("#later")) == "3")
    alice.shutdown(timeout=0.5)
    assert alice.wait_closed(10)
    again = open_app("alice", config=config)
    pump(again, lambda: again.sidebar.badge_text(room_key("#later")) == "3", what="3 unread")
    again.select(room_key("#later"))
    pump(again, lambda: "unread in later 2" in again.chat_view.content())
    again.shutdown(timeout=0.5)
    assert again.wait_closed(10)
    third = open_app("alice", config=config)

    pump(third, lambda: room_key("#later") in third.model.conversations)
    pump(third, lambda: third.model.conversations[room_key("#later")].read > 0)
    assert third.sidebar.badge_text(room_key("#later")) == ""


def test_the_room_browser_lists_rooms_with_member_counts_and_joins(open_app, chat_client):
    bob = chat_client("bob")
    carol = chat_client("carol")
    for client in (bob, carol):
        client.join("#garden")
        wait_event(client, lambda e: isinstance(e, RoomJoined) and e.room == "#garden")
    alice = open_app("alice")
    alice.browse_rooms()
    browser = alice.room_browser
    pump(alice, lambda: "#garden" in browser.buttons, what="the list")
    rooms = {name: (members, joined) for name, members, joined in browser.rooms}
    assert rooms["#garden"] == (2, False)
    assert rooms["#lobby"][1] is True
    assert browser.buttons["#garden"].cget("text") == "Join"
    browser.buttons["#garden"].invoke()
    pump(alice, lambda: alice.model.current == room_key("#garden"), what="joined and opened")
    wait_event(bob, lambda e: isinstance(e, MessageReceived) and "alice joined" in e.message.text)


def test_a_reconnect_within_the_grace_shows_no_leave_or_join(
    make_server, ca_file, open_app, tmp_path
):
    import sqlite3
    import time

    from parley_chat.protocol import Join
    from tests.support import RawClient

    # A server of its own (the GUI tests' one has no grace), on its own database.
    server = make_server(presence_grace=30.0, db_url=f"sqlite:///{tmp_path / 'grace.db'}")
    alice = open_app("alice", server=server)
    type_into(alice, "/join #dev")  # the lobby shows no joins and leaves at all
    pump(alice, lambda: alice.model.current == room_key("#dev"))
    carol = chat_client_for(server, ca_file, "carol")
    carol.join("#dev")
    wait_event(carol, lambda e: isinstance(e, RoomJoined) and e.room == "#dev")
    bob = RawClient(server.address, ca_file)
    bob.login("bob")
    bob.send(Join(room="#dev"))
    pump(alice, lambda: "bob joined #dev" in alice.chat_view.content())
    pump(alice, lambda: "bob" in alice.userlist.nicks(), what="bob online in #dev")
    try:
        bob.close()  # dropped, no bye: a flaky network
        # Wait (with a deadline) for the server to have ended that session.
        deadline = time.monotonic() + 15
        while True:
            con = sqlite3.connect(str(server.store.database_path))
            try:
                ended = con.execute(
                    "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id "
                    "WHERE u.nick = 'bob' AND s.ended_at IS NOT NULL"
                ).fetchone()[0]
            finally:
                con.close()
            if ended:
                break
            assert time.monotonic() < deadline, "bob's session did not end"
            server.store.submit(lambda s: None).result(15)  # let the store's writer have a turn
        # A barrier: carol's message, sent after bob's session ended, has reached
        # alice; without the grace bob would have left her user list before it.
        send_and_wait(carol, "while bob is away", room="#dev")
        pump(alice, lambda: "while bob is away" in alice.chat_view.content())
        assert "bob" in alice.userlist.nicks()
        again = RawClient(server.address, ca_file)
        again.login("bob", register=False)
        send_and_wait(carol, "after bob came back", room="#dev")
        pump(alice, lambda: "after bob came back" in alice.chat_view.content())
        again.close()
    finally:
        carol.close(timeout=0.5)
    dev = alice.model.conversations[room_key("#dev")]
    presence = [ln.text for ln in dev.lines if ln.kind == "system" and "bob" in ln.text]
    assert presence == ["bob joined #dev"]  # the first join only: no left, no second join
    assert "bob left" not in alice.chat_view.content()
    assert "bob" in alice.userlist.nicks()


def chat_client_for(server, ca_file, nick: str):
    from parley_chat.client import ChatClient

    host, port = server.address
    client = ChatClient(host, port, nick=nick, password="secret-pw", ca_file=ca_file, register=True)
    client.connect()
    return client
