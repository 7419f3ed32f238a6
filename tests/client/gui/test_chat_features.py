# The desktop client's conversation features against a real server, in real
# windows on Xvfb: links, emoji images, right-to-left text, the composer
# (Shift+Enter, paste, Tab completion, recall, command hints, scrolling to your
# message), notifications through a fake backend, badges, mute, join/leave
# bursts, search (highlighted hits, jump to the message), font zoom, banners.

from __future__ import annotations

import pytest

from parley_chat.client import MessageReceived, RoomJoined
from parley_chat.client.gui import theme
from parley_chat.client.gui.model import SEARCH_KEY, dm_key, room_key
from parley_chat.client.gui.notify import Notification
from tests.client.gui.helpers import idle, press, pump, send_and_wait, type_into, wait_event

pytestmark = pytest.mark.gui

HEBREW = "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"


def shows(app, text: str) -> bool:
    return text in app.chat_view.content()


class FakeBackend:
    """Records the notifications the app would show; click() is the user
    clicking one (from another thread, as the real backend's loop does)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.on_click = None  # set by Notifier

    def send(self, note: Notification) -> None:
        self.sent.append(note)

    def click(self, note: Notification) -> None:
        import threading

        clicker = threading.Thread(target=self.on_click, args=(note.key,))
        clicker.start()
        clicker.join(5)


# --- rendering -------------------------------------------------------------------------


def test_a_link_is_underlined_and_a_click_opens_it_in_the_browser(
    open_app, chat_client, monkeypatch
):
    alice = open_app("alice")
    opened: list[str] = []
    monkeypatch.setattr(alice.chat_view, "_on_open_link", opened.append)
    bob = chat_client("bob")
    send_and_wait(bob, "the docs: https://example.com/docs/gui, read them.")
    pump(alice, lambda: shows(alice, "https://example.com/docs/gui"))
    assert alice.chat_view.links() == {
        "https://example.com/docs/gui": "https://example.com/docs/gui"
    }
    assert alice.chat_view.colour_at_text("https://example.com") == theme.LIGHT.link
    assert alice.chat_view.open_link_at_text("https://example.com/docs")
    pump(alice, lambda: opened, what="the link opened")
    assert opened == ["https://example.com/docs/gui"]


def test_the_default_link_handler_is_the_system_browser(monkeypatch):
    import threading
    import webbrowser

    from parley_chat.client.gui import chat_view

    seen: list[str] = []
    opened = threading.Event()

    def fake_open(url, *a, **k):
        seen.append(url)
        opened.set()
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    chat_view.open_in_browser("https://example.com/")
    assert opened.wait(5), "the browser was never asked"
    assert seen == ["https://example.com/"]


def test_colour_emoji_are_drawn_as_images(open_app, chat_client):
    from parley_chat.client.gui import emoji

    if not emoji.available():
        pytest.skip("no colour emoji font (apt-get install fonts-noto-color-emoji)")
    alice = open_app("alice")
    bob = chat_client("bob")
    before = alice.chat_view.image_count()
    send_and_wait(
        bob,
        "party \U0001f389 thumbs \U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467 end",
    )
    pump(alice, lambda: shows(alice, "party"))
    assert alice.chat_view.image_count() == before + 3
    # The emoji are not in the text as characters (they would show as boxes).
    assert "\U0001f389" not in alice.chat_view.content()
    assert shows(alice, "thumbs ") and shows(alice, " end")
    # Copying gives the emoji back as characters.
    alice.chat_view._select_all()
    assert "party \U0001f389 thumbs \U0001f44d\U0001f3fd family" in alice.chat_view.selected_text()


def test_without_a_colour_emoji_font_emoji_stay_text(open_app, chat_client, monkeypatch):
    from parley_chat.client.gui import emoji

    monkeypatch.setenv(emoji.FONT_ENV, "/nonexistent/emoji.ttf")
    emoji._font.cache_clear()
    emoji.bitmap.cache_clear()
    try:
        alice = open_app("alice")
        bob = chat_client("bob")
        send_and_wait(bob, "plain \U0001f600 fallback")
        pump(alice, lambda: shows(alice, "fallback"))
        assert shows(alice, "plain \U0001f600 fallback") or "fallback" in alice.chat_view.content()
        assert alice.chat_view.image_count() == 0
    finally:
        monkeypatch.delenv(emoji.FONT_ENV)
        emoji._font.cache_clear()
        emoji.bitmap.cache_clear()


def test_right_to_left_text_is_shown_in_reading_order_and_right_aligned(open_app, chat_client):
    from parley_chat.client.gui.richtext import visual

    alice = open_app("alice")
    bob = chat_client("bob")
    send_and_wait(bob, HEBREW)
    shown = visual(HEBREW)
    pump(alice, lambda: shows(alice, shown))
    assert shown != HEBREW and "\u05dd\u05d5\u05dc\u05e9" in shown  # drawn reversed: reads right
    assert "rtl" in alice.chat_view.tags_at_text(shown)
    # The nick and the time are untouched, before the text.
    assert alice.chat_view.nick_colour("bob") == theme.LIGHT.public


def _display_lines(text, start: str, end: str) -> int:
    """How many display lines (wrapped lines) lie between *start* and *end*."""
    counted = text.count(start, end, "displaylines")
    return int(counted[0]) if counted else 0  # tkinter gives None for 0


def _display_rows(text, needle_words):
    """For each word, the y pixel of the display line showing it (scrolled into view)."""
    rows = {}
    for word in needle_words:
        index = text.search(word, "1.0")
        assert index, f"{word!r} not shown"
        text.see(index)
        text.update_idletasks()
        rows[word] = (_display_lines(text, "1.0", index), index)
    return rows


def test_a_long_right_to_left_paragraph_wraps_from_the_top_down(open_app, chat_client):
    alice = open_app("alice", geometry="1280x600")
    bob = chat_client("bob")
    # Forty distinct Hebrew words (one letter thrice each): far more than a line.
    words = [chr(0x05D0 + i % 22) * 3 + chr(0x05D0 + i // 22) for i in range(40)]
    send_and_wait(bob, " ".join(words))
    pump(alice, lambda: shows(alice, words[-1][::-1]))
    text = alice.chat_view._tk_text
    first, last = words[0][::-1], words[-1][::-1]  # each word drawn reversed
    rows = _display_rows(text, [first, last])
    assert rows[first][0] < rows[last][0], "the paragraph's first words must be on top"
    # The top line starts (at its right end) with the first word.
    line_of_first = rows[first][1].split(".")[0]
    assert text.get(f"{line_of_first}.0", f"{line_of_first}.end").rstrip().endswith(first)
    # Every line we cut fits: Tk wraps none of them again.
    ranges = text.tag_ranges("rtl")
    start_line = int(str(ranges[0]).split(".")[0])
    end_line = int(str(ranges[-1]).split(".")[0])
    assert end_line > start_line  # it was cut into lines
    for n in range(start_line, end_line + 1):
        assert _display_lines(text, f"{n}.0", f"{n}.end") == 0, n
    assert "rtl" in text.tag_names(f"{start_line}.0")
    # A narrower window cuts it again, still from the top down.
    lines_before = end_line - start_line
    alice.geometry("900x600")  # the user list folds away too: a much narrower text
    pump(
        alice,
        lambda: len(alice.chat_view._tk_text.tag_ranges("rtl")) > 0
        and int(str(text.tag_ranges("rtl")[-1]).split(".")[0])
        - int(str(text.tag_ranges("rtl")[0]).split(".")[0])
        > lines_before,
        what="re-wrapped for the narrower window",
    )
    rows = _display_rows(text, [first, last])
    assert rows[first][0] < rows[last][0]


def test_an_english_paragraph_with_a_long_hebrew_quote_keeps_the_quote_in_order(
    open_app, chat_client
):
    alice = open_app("alice", geometry="1280x600")
    bob = chat_client("bob")
    words = [chr(0x05D0 + i % 22) * 3 + chr(0x05D0 + i // 22) for i in range(40)]
    send_and_wait(bob, "He wrote: " + " ".join(words) + " and left.")
    pump(alice, lambda: shows(alice, "He wrote:"))
    text = alice.chat_view._tk_text
    first, last = words[0][::-1], words[-1][::-1]
    rows = _display_rows(text, [first, last, "He wrote:", "left."])
    # Left-to-right paragraph: its English start is on top, the quote reads
    # from the top down in between, and its English end is at the bottom.
    assert rows["He wrote:"][0] <= rows[first][0] < rows[last][0] <= rows["left."][0]
    assert text.tag_ranges("bidi") and not text.tag_ranges("rtl")
    wide = alice.chat_view._wrap_width
    alice.geometry("900x600")
    pump(
        alice,
        lambda: 0 < alice.chat_view._wrap_width < wide - 100,
        what="cut again for the narrower window",
    )
    ranges = text.tag_ranges("bidi")
    for n in range(int(str(ranges[0]).split(".")[0]), int(str(ranges[-1]).split(".")[0]) + 1):
        assert _display_lines(text, f"{n}.0", f"{n}.end") == 0, n  # Tk wraps none again
    rows = _display_rows(text, [first, last])
    assert rows[first][0] < rows[last][0]


def test_wrapped_lines_are_indented_by_a_margin_not_spaces(open_app, chat_client):
    from parley_chat.client.gui.chat_view import MARGIN

    alice = open_app("alice", geometry="900x600")
    bob = chat_client("bob")
    long = (
        "word " * 80
        + "unbrokenwordthatgoesonandonandonandonandonandonandonandonandonandonandonandon"
    )
    send_and_wait(bob, long)
    pump(alice, lambda: shows(alice, "unbrokenword"))
    text = alice.chat_view._tk_text
    start = text.search("word word", "1.0")
    assert text.get(f"{start} linestart", start) == ""  # no typed indent
    tags = text.tag_names(start)
    assert "msg" in tags
    assert int(text.tag_cget("msg", "lmargin1")) == MARGIN
    assert int(text.tag_cget("msg", "lmargin2")) == MARGIN


def test_own_messages_are_set_apart(open_app):
    alice = open_app("alice")
    type_into(alice, "my own words")
    pump(alice, lambda: shows(alice, "my own words"))
    assert "own" in alice.chat_view.tags_at_text("my own words")
    assert alice.chat_view._tk_text.tag_cget("own", "background") == theme.LIGHT.own_bg


def test_a_burst_of_joins_is_one_line(open_app, chat_client):
    alice = open_app("alice")
    type_into(alice, "/join #burst")
    pump(alice, lambda: alice.model.current == room_key("#burst"))
    for nick in ("bob", "carol", "dave", "erin"):
        chat_client(nick).join("#burst")
    pump(alice, lambda: "erin" in alice.userlist.nicks())
    pump(alice, lambda: shows(alice, "others joined #burst") or shows(alice, "erin joined #burst"))
    content = alice.chat_view.content()
    assert content.count("joined #burst") == 1, content
    assert "bob joined #burst" not in content


# --- the composer ----------------------------------------------------------------------


def test_shift_enter_adds_a_line_and_enter_sends_both(open_app, chat_client):
    alice = open_app("alice")
    bob = chat_client("bob")
    alice.composer.set_text("first line")
    press(alice, "Return", state=0x1)  # Shift+Enter
    assert alice.composer.get() == "first line\n"
    alice.composer.input.insert("end-1c", "second line")
    press(alice, "Return")
    event = wait_event(bob, lambda e: isinstance(e, MessageReceived) and e.message.from_ == "alice")
    assert event.message.text == "first line\nsecond line"
    assert alice.composer.get() == ""


def test_a_multi_line_paste_shows_as_lines(open_app):
    alice = open_app("alice")
    alice.clipboard_clear()
    alice.clipboard_append("one\r\ntwo\nthree")
    alice.composer.input.focus_force()
    pump(alice)
    alice.composer.input.event_generate("<<Paste>>")
    pump(alice)
    assert alice.composer.get() == "one\ntwo\nthree"
    assert int(alice.composer.input.index("end-1c").split(".")[0]) == 3


def test_tab_and_at_complete_nicks_of_the_room(open_app, chat_client):
    alice = open_app("alice")
    chat_client("bob")
    chat_client("carol")
    chat_client("carla")
    pump(alice, lambda: {"bob", "carol", "carla"} <= set(alice.userlist.nicks()))
    alice.composer.set_text("bo")
    press(alice, "Tab")
    assert alice.composer.get() == "bob: "
    assert alice.focus_get() is alice.composer.input  # Tab did not move the focus
    alice.composer.set_text("thanks @car")
    press(alice, "Tab")
    first = alice.composer.get()
    assert first in ("thanks @carla ", "thanks @carol ")
    press(alice, "Tab")  # again: the next match
    assert alice.composer.get() != first and alice.composer.get() in (
        "thanks @carla ",
        "thanks @carol ",
    )
    # "@" shows who matches while typing.
    alice.composer.set_text("hey @b")
    alice.composer.changed()
    assert "bob" in alice.composer.hint


def test_up_and_down_recall_and_slash_shows_command_hints(open_app):
    alice = open_app("alice")
    type_into(alice, "first message")
    type_into(alice, "second message")
    press(alice, "Up")
    assert alice.composer.get() == "second message"
    press(alice, "Up")
    assert alice.composer.get() == "first message"
    press(alice, "Down")
    assert alice.composer.get() == "second message"
    alice.composer.set_text("/jo")
    assert "/join #room" in alice.composer.hint and "/msg" not in alice.composer.hint
    alice.composer.set_text("/")
    assert "/msg" in alice.composer.hint and "/search" in alice.composer.hint
    alice.composer.set_text("plain")
    assert alice.composer.hint == ""


def test_sending_while_scrolled_up_scrolls_to_your_message(open_app, chat_client):
    alice = open_app("alice", geometry="900x560")
    bob = chat_client("bob")
    for i in range(60):
        bob.send_text(f"filler {i}")
    pump(alice, lambda: shows(alice, "filler 59"))
    alice.chat_view._tk_text.yview_moveto(0.0)
    pump(alice, lambda: not alice.chat_view.at_bottom())
    type_into(alice, "my reply at the bottom")
    pump(alice, lambda: shows(alice, "my reply at the bottom"))
    idle(alice)
    assert alice.chat_view.at_bottom()


def test_a_key_typed_outside_the_input_lands_in_it(open_app):
    alice = open_app("alice")
    alice.chat_view._tk_text.focus_force()
    pump(alice)
    alice.chat_view._tk_text.event_generate("<KeyPress>", keysym="h")
    pump(alice)
    assert alice.composer.get() == "h"
    assert alice.focus_get() is alice.composer.input


# --- notifications and badges -----------------------------------------------------------


def test_notifications_for_private_messages_and_mentions_while_unfocused(
    ctk, gui_server, ca_file, tmp_path, chat_client, monkeypatch
):
    from parley_chat.client.gui.app import App
    from parley_chat.client.settings import Settings, SettingsStore

    backend = FakeBackend()
    host, port = gui_server.address
    store = SettingsStore(tmp_path / "cfg")
    settings = Settings(host=host, port=port, ca_file=str(ca_file), nick="alice", register=True)
    alice = App(store, settings=settings, title="parley-n", password="secret-pw", notifier=backend)
    try:
        pump(
            alice, lambda: alice.statusbar.state == "connected" and alice.model.current_conversation
        )
        focused = [True]
        monkeypatch.setattr(alice, "window_has_focus", lambda: focused[0])
        monkeypatch.setattr(alice, "bell", lambda *a, **k: None)
        bob = chat_client("bob")
        send_and_wait(bob, "hello @alice while you look")
        pump(alice, lambda: shows(alice, "while you look"))
        assert backend.sent == []  # focused: no notification
        focused[0] = False
        send_and_wait(bob, "just chatting, nobody named")
        send_and_wait(bob, "psst alice, a secret", to="alice")
        send_and_wait(bob, "@alice look at this")
        pump(alice, lambda: len(backend.sent) == 2, what="two notifications")
        pm, mention = backend.sent
        assert pm.title == "bob (private message)" and pm.body == "psst alice, a secret"
        assert pm.key == dm_key("bob")
        assert mention.title == "bob in #lobby" and mention.body == "@alice look at this"
        # Red badge for the private conversation; a quiet one for an unread room.
        pump(alice, lambda: alice.sidebar.badge_text(dm_key("bob")) == "1")
        assert alice.sidebar.badge_is_loud(dm_key("bob"))
        # Mute the lobby: mentions there notify no more.
        alice.toggle_mute()
        assert room_key("#lobby") in alice.store.load().muted
        send_and_wait(bob, "@alice again, muted")
        send_and_wait(bob, "marker after the muted mention", to="alice")
        pump(alice, lambda: len(backend.sent) == 3)
        idle(alice)
        assert [n.body for n in backend.sent][-1] == "marker after the muted mention"
        # A click on the private message's notification opens that conversation.
        assert alice.model.current == room_key("#lobby")
        backend.click(pm)
        pump(alice, lambda: alice.model.current == dm_key("bob"), what="the clicked conversation")
        assert "psst alice, a secret" in alice.shown_conversation_text()
        assert alice.sidebar.badge_text(dm_key("bob")) == ""
    finally:
        alice.shutdown(timeout=0.5)
        alice.wait_closed(10)


def test_badges_are_red_only_for_mentions_and_private_messages(open_app, chat_client):
    alice = open_app("alice")
    type_into(alice, "/join #quiet")
    pump(alice, lambda: alice.model.current == room_key("#quiet"))
    bob = chat_client("bob")
    bob.join("#quiet")
    wait_event(bob, lambda e: isinstance(e, RoomJoined) and e.room == "#quiet")
    alice.select(room_key("#lobby"))
    send_and_wait(bob, "ordinary chatter", room="#quiet")
    pump(alice, lambda: alice.sidebar.badge_text(room_key("#quiet")) == "1")
    assert not alice.sidebar.badge_is_loud(room_key("#quiet"))
    assert alice.sidebar._rows[room_key("#quiet")].badge.cget("fg_color") == theme.pair("quiet_bg")
    send_and_wait(bob, "alice, a word?", room="#quiet")
    pump(alice, lambda: alice.sidebar.badge_text(room_key("#quiet")) == "2")
    assert alice.sidebar.badge_is_loud(room_key("#quiet"))


# --- search ---------------------------------------------------------------------------------


def search_for(app, words: str) -> None:
    app.chat_view.focus_search()
    pump(app)
    entry = app.chat_view.search_entry
    entry.delete(0, "end")
    entry.insert(0, words)
    entry._entry.event_generate("<Return>")
    pump(app, lambda: app.model.current == SEARCH_KEY and words in app.chat_view.content())


def test_search_highlights_hits_and_a_click_opens_the_message_in_context(open_app, chat_client):
    bob = chat_client("bob")
    for i in range(1, 121):
        text = "the rare needle is here" if i == 30 else f"hay number {i:03d}"
        bob.send_text(text)
    wait_event(bob, lambda e: isinstance(e, MessageReceived) and e.message.text == "hay number 120")
    alice = open_app("alice")
    pump(alice, lambda: shows(alice, "hay number 120"))
    assert not shows(alice, "rare needle")  # far older than what a login shows
    search_for(alice, "needle")
    text = alice.chat_view._tk_text
    ranges = text.tag_ranges("hit")
    assert [text.get(ranges[i], ranges[i + 1]) for i in range(0, len(ranges), 2)] == ["needle"]
    assert text.tag_cget("hit", "background") == theme.LIGHT.hit_bg
    found = next(iter(alice.model.found))
    assert alice.chat_view.click_result(found)
    pump(alice, lambda: alice.model.current == room_key("#lobby"), what="back in the room")
    pump(alice, lambda: "rare needle" in alice.chat_view.target_text(), what="the message marked")
    # The messages around it are there too.
    assert shows(alice, "hay number 029") and shows(alice, "hay number 031")


def test_a_new_search_replaces_the_old_and_sign_out_clears_it(open_app, chat_client):
    bob = chat_client("bob")
    send_and_wait(bob, "apples are red")
    send_and_wait(bob, "bananas are yellow")
    alice = open_app("alice")
    search_for(alice, "apples")
    search_for(alice, "bananas")
    assert not shows(alice, "apples are red")
    assert alice.chat_view.content().count("Search results for") == 1
    # Ctrl+F selects the old words, so typing replaces them instead of appending.
    alice.composer.input.focus_force()
    pump(alice)
    alice.composer.input.event_generate("<Control-KeyPress-f>")
    pump(alice, lambda: alice.focus_get() is alice.chat_view.search_entry._entry)
    entry = alice.chat_view.search_entry._entry
    assert entry.selection_present() and entry.selection_get() == "bananas"
    entry.event_generate("<KeyPress>", keysym="k")
    pump(alice)
    assert alice.chat_view.search_entry.get() == "k"
    alice.sign_out()
    pump(alice)
    assert alice.chat_view.search_entry.get() in ("", "Search messages")
    assert SEARCH_KEY not in alice.model.conversations


# --- status, zoom, layout -------------------------------------------------------------------


def test_ctrl_plus_and_minus_zoom_the_text_and_the_size_is_remembered(open_app):
    alice = open_app("alice")
    type_into(alice, "zoom me")
    size = alice.chat_view.font_size
    alice.composer.input.event_generate("<Control-KeyPress-plus>")
    pump(alice)
    alice.composer.input.event_generate("<Control-KeyPress-equal>")
    pump(alice)
    assert alice.chat_view.font_size == size + 2
    assert alice.store.load().font_size == size + 2
    assert alice.chat_view._tk_text.tag_cget("nick", "font")  # tag fonts follow
    alice.composer.input.event_generate("<Control-KeyPress-minus>")
    pump(alice)
    assert alice.store.load().font_size == size + 1
    alice.composer.input.event_generate("<Control-KeyPress-0>")
    pump(alice)
    assert alice.store.load().font_size == theme.SIZE_BODY


def test_the_banner_wraps_at_words_and_keeps_the_last_line_in_view(open_app, chat_client):
    alice = open_app("alice", geometry="860x540")
    bob = chat_client("bob")
    for i in range(40):
        bob.send_text(f"line {i}")
    pump(alice, lambda: shows(alice, "line 39"))
    type_into(alice, "/exit")
    pump(alice, lambda: alice.composer.banner_visible)
    idle(alice)
    label = alice.composer.banner_label
    assert 0 < int(label.cget("wraplength")) <= alice.composer.banner.winfo_width()
    assert alice.chat_view.at_bottom()
    assert alice.chat_view.winfo_width() >= 560  # the user list folded away at this width
