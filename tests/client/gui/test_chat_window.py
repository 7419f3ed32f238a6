# The chat window against a real server: messages and their colours, private
# conversations, notices, commands, /exit and /rejoin with replay, history
# paging, search, notifications, scrolling and appearance.

from __future__ import annotations

import json
import re
import threading
import tkinter

import pytest

from parley_chat.client import MessageReceived, PresenceChanged
from parley_chat.client.gui import theme
from parley_chat.client.gui.model import DIVIDER_TEXT, SEARCH_KEY, dm_key, room_key
from tests.client.gui.helpers import idle, pump, send_and_wait, type_into, wait_event

pytestmark = pytest.mark.gui

LIGHT, DARK = theme.palette("light"), theme.palette("dark")


def shows(app, text: str) -> bool:
    return text in app.chat_view.content()


def test_public_message_typed_in_one_window_appears_blue_in_another(open_app):
    alice = open_app("alice")
    bob = open_app("bob")
    type_into(bob, "hello from bob's window")
    pump(alice, lambda: shows(alice, "hello from bob's window"), what="alice sees it")
    # The text in the theme's text colour; the kind's colour on the nick.
    assert alice.chat_view.colour_at_text("hello from bob's window") == LIGHT.text
    assert alice.chat_view.nick_colour("bob") == LIGHT.public
    assert "public-body" in alice.chat_view.tags_at_text("hello from bob's window")
    assert "own" not in alice.chat_view.tags_at_text("hello from bob's window")
    # The sender sees it too, set apart as its own.
    pump(bob, lambda: shows(bob, "hello from bob's window"))
    assert "own" in bob.chat_view.tags_at_text("hello from bob's window")
    assert bob.composer.get() == ""


def test_send_button_sends(open_app, chat_client):
    alice = open_app("alice")
    carol = chat_client("carol")
    alice.composer.set_text("sent with the button")
    alice.composer.send_button.invoke()
    event = wait_event(
        carol,
        lambda e: isinstance(e, MessageReceived) and e.batch is None and e.message.kind == "public",
    )
    assert event.message.text == "sent with the button" and event.message.from_ == "alice"


def test_what_is_refused_goes_back_into_the_input_to_be_fixed(open_app):
    # A message over the cap and a usage mistake were gone from the input with
    # the refusal: the user had to know Up recalls them, or type them again.
    alice = open_app("alice")
    long = "x" * (alice._client.max_text + 1)
    type_into(alice, long)
    pump(alice, lambda: shows(alice, "Not sent: message text is over"))
    assert alice.composer.get() == long
    alice.composer.set_text("")
    type_into(alice, "/msg bob")
    pump(alice, lambda: shows(alice, "usage: /msg nick text"))
    assert alice.composer.get() == "/msg bob"
    type_into(alice, "a new line")  # sent: nothing is given back over it
    pump(alice, lambda: shows(alice, "a new line"))
    assert alice.composer.get() == ""


def test_private_message_is_purple_and_reaches_its_recipient_only(open_app):
    alice = open_app("alice")
    bob = open_app("bob")
    carol = open_app("carol")
    type_into(alice, "/msg bob the secret is 42")
    # The sender's window opens the conversation with bob and shows it there.
    pump(alice, lambda: alice.model.current == dm_key("bob") and shows(alice, "the secret is 42"))
    # bob gets a private conversation with alice, with an unread mark.
    pump(bob, lambda: dm_key("alice") in bob.model.conversations, what="bob's DM appears")
    pump(bob, lambda: bob.sidebar.badge_text(dm_key("alice")) == "1")
    bob.sidebar.row_button(dm_key("alice")).invoke()
    pump(bob, lambda: shows(bob, "the secret is 42"))
    assert bob.chat_view.colour_at_text("the secret is 42") == LIGHT.text
    assert bob.chat_view.nick_colour("alice") == LIGHT.private
    pump(bob, lambda: bob.sidebar.badge_text(dm_key("alice")) == "", what="badge cleared")
    # carol: a public message sent after the private one reaches her, the private one never.
    type_into(alice, "/join #lobby")
    type_into(alice, "public marker after the secret")
    pump(carol, lambda: shows(carol, "public marker after the secret"))
    idle(carol)
    assert dm_key("alice") not in carol.model.conversations
    everything = "".join(ln.text for c in carol.model.conversations.values() for ln in c.lines)
    assert "the secret is 42" not in everything
    assert "the secret is 42" not in carol.chat_view.content()


def test_join_notice_is_green(open_app, chat_client):
    alice = open_app("alice")
    type_into(alice, "/join #dev")
    pump(alice, lambda: shows(alice, "alice joined #dev"), what="own join notice")
    dave = chat_client("dave")
    dave.join("#dev")
    pump(alice, lambda: shows(alice, "dave joined #dev"), what="join notice")
    assert alice.chat_view.colour_at_text("dave joined #dev") == LIGHT.system
    pump(alice, lambda: "dave" in alice.userlist.nicks(), what="dave in the user list")


def test_exit_then_rejoin_replays_what_was_missed_once_in_order_under_the_divider(
    open_app, chat_client
):
    alice = open_app("alice")
    bob = chat_client("bob")
    send_and_wait(bob, "before alice left")
    pump(alice, lambda: shows(alice, "before alice left"))
    type_into(alice, "/exit")
    pump(alice, lambda: alice.composer.banner_visible, what="the Rejoin banner")
    assert "You left the chat" in alice.chat_view.content()
    assert alice.statusbar.state == "offline"
    missed = [f"missed number {i}" for i in range(1, 6)]
    for text in missed:
        send_and_wait(bob, text)
    idle(alice)
    assert not shows(alice, "missed number 1")
    type_into(alice, "/rejoin")
    pump(alice, lambda: shows(alice, missed[-1]), what="the replay")
    pump(alice, lambda: alice.statusbar.state == "connected")
    send_and_wait(bob, "live after the rejoin")
    pump(alice, lambda: shows(alice, "live after the rejoin"))
    text = alice.chat_view.content()
    for item in [*missed, "before alice left", "live after the rejoin"]:
        assert text.count(item) == 1, item
    assert text.count(DIVIDER_TEXT) == 1
    positions = [
        text.index(t) for t in ["before alice left", DIVIDER_TEXT, *missed, "live after the rejoin"]
    ]
    assert positions == sorted(positions)
    assert not alice.composer.banner_visible


def test_rejoin_button_brings_the_user_back(open_app, chat_client):
    alice = open_app("alice")
    bob = chat_client("bob")
    alice.exit_chat()
    pump(alice, lambda: alice.composer.banner_visible)
    send_and_wait(bob, "while you were away")
    alice.composer.banner_button.invoke()
    pump(
        alice, lambda: shows(alice, "while you were away") and alice.statusbar.state == "connected"
    )
    assert alice.chat_view.content().index(DIVIDER_TEXT) < alice.chat_view.content().index(
        "while you were away"
    )


def test_load_older_pages_back_through_history(open_app, chat_client, make_server):
    bob = chat_client("bob")
    for i in range(1, 81):
        bob.send_text(f"history line {i:03d}")
    wait_event(
        bob, lambda e: isinstance(e, MessageReceived) and e.message.text == "history line 080"
    )
    alice = open_app("alice")
    # A fresh login shows the latest 50 of the room.
    pump(alice, lambda: shows(alice, "history line 080"))
    assert not shows(alice, "history line 030")
    assert alice.chat_view.older_button.cget("state") == "normal"
    alice.chat_view.older_button.invoke()
    pump(alice, lambda: shows(alice, "history line 001"), what="the older page")
    text = alice.chat_view.content()
    numbers = [int(n) for n in re.findall(r"history line (\d{3})", text)]
    assert numbers == list(range(1, 81))  # all of them, once each, in order
    pump(alice, lambda: alice.chat_view.older_button.cget("text").startswith("Beginning"))


def test_search_shows_results(open_app, chat_client):
    bob = chat_client("bob")
    send_and_wait(bob, "the quick brown fox jumps")
    send_and_wait(bob, "nothing to see here")
    alice = open_app("alice")
    alice.chat_view.search_entry.insert(0, "brown fox")
    alice.chat_view.search_entry._entry.focus_force()
    pump(alice)
    alice.chat_view.search_entry._entry.event_generate("<Return>")
    pump(alice, lambda: alice.model.current == SEARCH_KEY, what="search results open")
    text = alice.chat_view.content()
    assert "the quick brown fox jumps" in text
    assert "nothing to see here" not in text
    assert "Search results for" in text and "#lobby" in text
    # Back to the room from the sidebar.
    alice.sidebar.row_button(room_key("#lobby")).invoke()
    pump(alice, lambda: alice.model.current == room_key("#lobby"))


def test_private_message_or_mention_while_unfocused_marks_title_and_rings(
    open_app, chat_client, monkeypatch
):
    alice = open_app("alice", title="parley-notify")
    bells: list[int] = []
    monkeypatch.setattr(alice, "window_has_focus", lambda: False)
    monkeypatch.setattr(alice, "bell", lambda *a, **k: bells.append(1))
    bob = chat_client("bob")
    send_and_wait(bob, "just chatting, no mention")
    send_and_wait(bob, "psst, alice", to="alice")
    pump(alice, lambda: alice.title().startswith("(1) "), what="title mark")
    send_and_wait(bob, "hey @alice look at this")
    pump(alice, lambda: alice.title().startswith("(2) "))
    assert len(bells) == 2
    assert "parley-notify" in alice.title()
    # Coming back to the window reads the open room (its mention); the private
    # conversation waits until it is opened. The count is the conversations'
    # own unread counts (one counter): conversations with something for alice.
    alice.event_generate("<FocusIn>")
    pump(alice, lambda: alice.title().startswith("(1) "), what="the room read")
    alice.sidebar.row_button(dm_key("bob")).invoke()
    pump(alice, lambda: not alice.title().startswith("("), what="the mark cleared")


def test_double_click_on_a_user_opens_a_private_conversation(open_app, chat_client):
    alice = open_app("alice")
    chat_client("bob")
    pump(alice, lambda: "bob" in alice.userlist.rows)
    label = alice.userlist.rows["bob"].label
    # Two clicks in quick succession, as the X server would deliver a double-click.
    for _ in range(2):
        label._label.event_generate("<ButtonPress-1>", x=5, y=5)
        label._label.event_generate("<ButtonRelease-1>", x=5, y=5)
    pump(alice, lambda: alice.model.current == dm_key("bob"), what="the DM opens")
    type_into(alice, "direct line")
    pump(alice, lambda: shows(alice, "direct line"))
    assert alice.chat_view.nick_colour("alice") == LIGHT.private


def test_room_commands_join_who_leave_help(open_app):
    alice = open_app("alice")
    type_into(alice, "/join #dev")
    pump(alice, lambda: alice.model.current == room_key("#dev"), what="joined #dev")
    type_into(alice, "/who")
    pump(alice, lambda: shows(alice, "Online in #dev (1): alice"))
    type_into(alice, "hello dev room")
    pump(alice, lambda: shows(alice, "hello dev room"))
    type_into(alice, "/leave")
    pump(alice, lambda: room_key("#dev") not in alice.model.conversations)
    assert alice.model.current == room_key("#lobby")
    type_into(alice, "/help")
    pump(alice, lambda: shows(alice, "/msg nick text"))
    type_into(alice, "/frobnicate")
    pump(alice, lambda: shows(alice, "unknown command /frobnicate"))
    assert alice.chat_view.colour_at_text("unknown command") == LIGHT.error


def test_view_follows_new_messages_only_when_at_the_bottom(open_app, chat_client):
    alice = open_app("alice", geometry="900x560")
    bob = chat_client("bob")
    for i in range(60):
        bob.send_text(f"filler {i}")
    pump(alice, lambda: shows(alice, "filler 59"))
    pump(alice, lambda: alice.chat_view.at_bottom(), what="followed to the bottom")
    # The reader scrolls up: new messages must not pull the view down.
    alice.chat_view.text.yview_moveto(0.0)
    pump(alice, lambda: not alice.chat_view.at_bottom())
    send_and_wait(bob, "arrives while reading history")
    pump(alice, lambda: shows(alice, "arrives while reading history"))
    idle(alice)
    assert not alice.chat_view.at_bottom()
    assert alice.chat_view.jump_button.winfo_ismapped()
    alice.chat_view.jump_button.invoke()
    pump(alice, lambda: alice.chat_view.at_bottom())
    send_and_wait(bob, "followed again")
    pump(alice, lambda: shows(alice, "followed again"))
    idle(alice)
    assert alice.chat_view.at_bottom()


def test_dark_mode_switch_recolours_messages_and_is_remembered(open_app, chat_client, ctk):
    alice = open_app("alice")
    bob = chat_client("bob")
    send_and_wait(bob, "colour check")
    pump(alice, lambda: shows(alice, "colour check"))
    try:
        alice.sidebar.theme_button.invoke()
        pump(alice)
        assert ctk.get_appearance_mode() == "Dark"
        assert alice.chat_view.colour_at_text("colour check") == DARK.text
        assert alice.chat_view.nick_colour("bob") == DARK.public
        assert alice.store.load().appearance == "dark"
        alice.toggle_appearance()
        assert alice.chat_view.nick_colour("bob") == LIGHT.public
    finally:
        ctk.set_appearance_mode("light")


def test_status_bar_counts_down_while_reconnecting_and_retry_now_reconnects(
    open_app, make_server, gui_server, db_url, certs_dir
):
    from parley_chat.client.gui.statusbar import grouped

    alice = open_app("alice")
    text = alice.statusbar.tls_label.cget("text")
    full = alice._client.fingerprint
    # Short and grouped on the bar; the whole fingerprint on hover.
    assert "TLSv1." in text and grouped(full, 16) in text and full not in text
    assert grouped(full[:16]) in text and text.endswith("\u2026")
    assert grouped(full) in alice.statusbar.tooltip.text
    port = gui_server.address[1]
    gui_server.stop()
    pump(alice, lambda: alice.statusbar.state == "reconnecting", what="reconnecting state")
    assert re.match(r"Reconnecting( in \d+ s)? \(attempt \d+\)", alice.statusbar.text())
    # No fingerprint while offline (it would be the old server's), and "Retry now".
    assert alice.statusbar.tls_label.cget("text") == ""
    assert alice.statusbar.retry_visible
    # One plain note for the lost connection: no raw exception text.
    notes = [ln.text for ln in alice.model.current_conversation.lines if ln.kind == "error"]
    assert len(notes) == 1, notes
    assert "_ssl" not in notes[0] and "Errno" not in notes[0] and "EOF" not in notes[0]
    make_server(port=port)
    alice.statusbar.retry_button.invoke()
    # Far sooner than the next scheduled attempt would be.
    pump(alice, lambda: alice.statusbar.state == "connected", timeout=8, what="reconnected")
    assert not alice.statusbar.retry_visible
    assert grouped(full, 16) in alice.statusbar.tls_label.cget("text")


def test_reopening_the_app_replays_exactly_what_was_missed(open_app, chat_client, tmp_path):
    config = tmp_path / "config-alice"
    alice = open_app("alice", config=config)
    bob = chat_client("bob")
    seen = send_and_wait(bob, "seen before closing")
    pump(alice, lambda: shows(alice, "seen before closing"))
    alice.shutdown(timeout=0.5)
    assert alice.wait_closed(10)
    last_seen = json.loads((config / "last_seen.json").read_text())
    assert seen in last_seen.values()
    for text in ("missed while closed 1", "missed while closed 2"):
        send_and_wait(bob, text)
    again = open_app("alice", config=config)
    pump(again, lambda: shows(again, "missed while closed 2"), what="the replay after restart")
    # Context from before appears above the divider once the history page lands.
    pump(again, lambda: shows(again, "seen before closing"), what="context above the divider")
    text = again.chat_view.content()
    assert text.count("missed while closed 1") == 1 and text.count("seen before closing") == 1
    assert (
        text.index("seen before closing")
        < text.index(DIVIDER_TEXT)
        < text.index("missed while closed 1")
        < text.index("missed while closed 2")
    )


def test_keyboard_shortcuts(open_app):
    alice = open_app("alice")
    type_into(alice, "/join #dev")
    pump(alice, lambda: alice.model.current == room_key("#dev"))
    entry = alice.composer.input
    entry.focus_force()
    pump(alice)
    entry.event_generate("<Alt-KeyPress-Up>")
    pump(alice, lambda: alice.model.current == room_key("#lobby"), what="Alt+Up switches")
    entry.focus_force()
    pump(alice)
    entry.event_generate("<KeyPress-Up>")  # plain Up recalls the last line
    pump(alice)
    assert alice.composer.get() == "/join #dev"
    entry.event_generate("<KeyPress-Escape>")
    pump(alice)
    assert alice.composer.get() == ""
    entry.event_generate("<Control-KeyPress-f>")
    pump(alice, lambda: alice.focus_get() is alice.chat_view.search_entry._entry)


def test_closing_the_window_is_at_once_and_the_goodbye_goes_off_the_tk_thread(
    open_app, chat_client
):
    alice = open_app("alice")
    bob = chat_client("bob")
    pump(alice, lambda: "bob" in alice.userlist.rows, what="bob online")
    alice.on_close()  # the window's close box
    # The window is gone when on_close returns; the connection is being closed
    # by a thread of its own, not by this (the Tk) thread.
    with pytest.raises(tkinter.TclError):
        alice.winfo_exists()
    assert alice.closing is not None and alice.closing is not threading.current_thread()
    assert alice.closing.name == "parley-gui-close"
    # It says goodbye: bob sees alice leave (a graceful close, not a timeout).
    wait_event(bob, lambda e: isinstance(e, PresenceChanged) and e.left == "alice")
    assert alice.wait_closed(10)


def test_a_bug_in_a_window_callback_is_said_in_the_window_which_goes_on(open_app):
    # Tk's default printed the traceback to a console a desktop user has not got,
    # and the click or key seemed to do nothing.
    alice = open_app("alice")

    def broken() -> None:
        raise RuntimeError("injected")

    alice.after(0, broken)  # a Tk callback, as a click, a key or a timer runs one
    pump(alice, lambda: shows(alice, "Something went wrong (RuntimeError: injected)"))
    assert alice.callback_errors == ["RuntimeError: injected"]
    type_into(alice, "still typing")
    pump(alice, lambda: shows(alice, "still typing"))
    alice.callback_errors.clear()  # expected here; the fixture fails any other
