# Moderation in the desktop client (client/gui/moderation.py), real windows on
# Xvfb against a real server: the topic under the room's name, roles in the
# user list, the moderation commands, and a message's context menu (Edit,
# Delete) with the message gone from (or changed in) every open window.

from __future__ import annotations

import pytest

from parley_chat.client.events import MessageDeleted, MessageEdited, ModerationDone
from parley_chat.client.gui import moderation
from parley_chat.client.gui.model import room_key
from tests.client.gui.helpers import pump, send_and_wait, type_into, wait_event

pytestmark = pytest.mark.gui


def shows(app, text: str) -> bool:
    return text in app.chat_view.content()


def test_topic_and_roles_show_and_the_commands_work(open_app, chat_client):
    alice = open_app("alice")
    type_into(alice, "/join #team")
    pump(alice, lambda: alice.model.current == room_key("#team"), what="alice in #team")
    bob = chat_client("bob")
    bob.join("#team")
    pump(alice, lambda: "bob" in alice.userlist.nicks(), what="bob listed")
    type_into(alice, "/topic Ship it on Friday")
    pump(alice, lambda: "Ship it on Friday" in alice.chat_view.subtitle_label.cget("text"))
    assert alice.userlist.role_of("alice") == "owner"
    type_into(alice, "/op bob")
    pump(alice, lambda: alice.userlist.role_of("bob") == "mod", what="bob marked a moderator")
    type_into(alice, "/kick")  # a usage mistake is said locally
    pump(alice, lambda: shows(alice, "usage: /kick nick"))


def test_the_context_menu_edits_and_deletes_and_every_window_follows(open_app, chat_client):
    alice = open_app("alice")
    bob_app = open_app("bob")
    carol = chat_client("carol")
    mine = send_and_wait(carol, "carol's own line")  # not alice's: no menu entry for her
    pump(alice, lambda: shows(alice, "carol's own line"))
    # Alice holds no role in #lobby and it is not her message: nothing to offer.
    assert moderation.message_menu(alice, mine, False, "#lobby", 10, 10) is None
    type_into(alice, "my first draft")
    pump(bob_app, lambda: shows(bob_app, "my first draft"))

    def stored_line():
        lines = alice.model.current_conversation.lines
        return next((ln for ln in lines if ln.text == "my first draft" and ln.id), None)

    pump(alice, stored_line, what="alice's message stored (its id known)")
    line = stored_line()
    assert line.id in alice.chat_view.message_ids()
    menu = moderation.message_menu(
        alice, line.id, True, "#lobby", 10, 10, ask_text=lambda old: "my final text"
    )
    assert menu is not None and menu.entrycget(0, "label").startswith("Edit")
    menu.invoke(0)
    menu.unpost()
    wait_event(carol, lambda e: isinstance(e, MessageEdited) and e.id == line.id)
    for app in (alice, bob_app):
        pump(app, lambda app=app: shows(app, "my final text") and shows(app, "(edited)"))
    menu = moderation.message_menu(alice, line.id, True, "#lobby", 10, 10)
    menu.invoke(menu.index("end"))  # Delete message
    menu.unpost()
    wait_event(carol, lambda e: isinstance(e, MessageDeleted) and e.id == line.id)
    for app in (alice, bob_app):
        pump(app, lambda app=app: not shows(app, "my final text"), what="the message gone")
    # Someone else's message cannot be deleted by a plain member: the server says why.
    type_into(bob_app, f"/delete {mine}")
    pump(bob_app, lambda: shows(bob_app, "only a moderator"), what="the refusal shown")
    assert shows(alice, "carol's own line")
    carol.delete_message(mine)
    wait_event(carol, lambda e: isinstance(e, ModerationDone))
    pump(alice, lambda: not shows(alice, "carol's own line"))


def _not_clipped(label) -> bool:
    inner = label._label  # the tkinter label CTkLabel draws its text in
    inner.update_idletasks()
    return inner.winfo_reqwidth() <= inner.winfo_width()


def test_a_long_nick_is_cut_with_an_ellipsis_and_keeps_its_you_and_role(open_app, chat_client):
    # Tk clips a label silently: a 24-character nick lost "(you)" and its role.
    nick, other = "Maximiliana-Wolkenstein1", "Bartholomew_Featherstone"
    alice = open_app(nick)
    type_into(alice, "/join #team")
    pump(alice, lambda: alice.model.current == room_key("#team"), what="alice in #team")
    bob = chat_client(other)
    bob.join("#team")
    pump(alice, lambda: other in alice.userlist.nicks(), what="the long-named member listed")
    pump(alice, lambda: alice.userlist.role_of(nick) == "owner", what="the owner marked")
    mine = alice.userlist.rows[nick].label
    shown = mine.cget("text")
    assert "\u2026" in shown and "(you)" in shown and "\u2605" in shown, shown
    assert _not_clipped(mine), shown
    theirs = alice.userlist.rows[other].label
    assert theirs.cget("text").startswith(other[:6]) and _not_clipped(theirs)
    card = alice.sidebar.nick_label
    assert card.cget("text").endswith("\u2026") and _not_clipped(card)
