# Screenshots for review: the connect dialog and the main window with a
# conversation in it, light and dark, saved as PNGs under --screenshots=DIR
# (`make screenshots` writes them to artifacts/). Without the option they are
# taken into a temp dir, so every test run still checks they render.

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from parley_chat.certs import fingerprint_sha256, generate
from parley_chat.client import Acked, RoomJoined
from parley_chat.client.gui import theme
from parley_chat.client.gui.model import SEARCH_KEY, dm_key, room_key
from parley_chat.client.settings import Pin, SettingsStore
from tests.client.gui.helpers import idle, pump, type_into, wait_event

pytestmark = pytest.mark.gui


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    where = request.config.getoption("--screenshots", default=None)
    path = Path(where) if where else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def grab(app: Any, path: Path) -> Any:
    """Save the window's pixels as *path* and check the image is not blank."""
    from PIL import ImageGrab

    app.lift()
    idle(app)  # customtkinter has drawn everything
    x, y = app.winfo_rootx(), app.winfo_rooty()
    w, h = app.winfo_width(), app.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ["DISPLAY"])
    image.save(path)
    assert path.stat().st_size > 10_000, path
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"
    return image


def rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def has_colour(image: Any, colour: str) -> bool:
    return any(c[1][:3] == rgb(colour) for c in image.getcolors(maxcolors=1 << 20))


def post(client: Any, text: str, **where: str) -> None:
    cid = client.send_text(text, **where)
    wait_event(client, lambda e: isinstance(e, Acked) and e.client_id == cid)


def test_screenshot_connect_dialog_light_dark_and_trust_prompts(
    shots, open_app, gui_server, ctk, tmp_path
):
    app = open_app("alice", password=None, connected=False, geometry="1180x740")
    app.geometry("+0+0")
    try:
        grab(app, shots / "connect-light.png")
        app.set_appearance("dark")
        grab(app, shots / "connect-dark.png")
    finally:
        ctk.set_appearance_mode("light")
        app.shutdown(timeout=0.5)
        assert app.wait_closed(10)
    prompt = open_app("alice", ca="", connected=False, geometry="1180x740")
    prompt.geometry("+0+0")
    pump(prompt, lambda: prompt.connect_page.panel_kind == "warn")
    grab(prompt, shots / "connect-trust-prompt-light.png")
    prompt.shutdown(timeout=0.5)
    assert prompt.wait_closed(10)

    # A CA that did not sign the server's certificate.
    other = generate(tmp_path / "other")
    untrusted = open_app("alice", ca=str(other.ca_cert), connected=False, geometry="1180x740")
    untrusted.geometry("+0+0")
    pump(untrusted, lambda: untrusted.connect_page.panel_kind == "error")
    grab(untrusted, shots / "connect-untrusted-light.png")
    untrusted.shutdown(timeout=0.5)
    assert untrusted.wait_closed(10)

    # A pinned certificate that is not the one the server now presents.
    config = tmp_path / "config-pinned"
    host, port = gui_server.address
    pem = other.server_cert.read_text()
    SettingsStore(config).set_pin(host, port, Pin(pem=pem, fingerprint=fingerprint_sha256(pem)))
    changed = open_app(
        "alice", ca="", config=config, connected=False, geometry="1180x740", appearance="dark"
    )
    changed.geometry("+0+0")
    try:
        pump(changed, lambda: changed.connect_page.panel_kind == "danger")
        grab(changed, shots / "connect-changed-certificate-dark.png")
    finally:
        ctk.set_appearance_mode("light")
    for name in (
        "connect-light.png",
        "connect-dark.png",
        "connect-trust-prompt-light.png",
        "connect-untrusted-light.png",
        "connect-changed-certificate-dark.png",
    ):
        assert (shots / name).exists()


def test_screenshot_main_window_with_a_conversation_light_and_dark(
    shots, open_app, chat_client, ctk
):
    bob = chat_client("bob")
    carol = chat_client("carol")
    post(bob, "Morning all! The 2.4 build is green.")
    post(carol, "Nice. I'll start on the release notes.")
    alice = open_app("alice", geometry="1180x740")
    alice.geometry("+0+0")
    type_into(alice, "/join #release")
    pump(alice, lambda: alice.model.current == room_key("#release"))
    alice.select(room_key("#lobby"))
    type_into(alice, "Great work, both of you. Ship it after lunch?")
    post(bob, "@alice yes, 13:30 works for me")
    post(carol, "Can you review my changelog PR before then?", to="alice")
    pump(alice, lambda: dm_key("carol") in alice.model.conversations)
    type_into(alice, "/exit")
    pump(alice, lambda: alice.composer.banner_visible)
    grab(alice, shots / "main-left-light.png")
    post(bob, "Release notes draft is in the wiki.")
    post(carol, "Tagging v2.4.0 now. Fingers crossed!")
    type_into(alice, "/rejoin")
    pump(alice, lambda: "Fingers crossed" in alice.chat_view.content())
    pump(alice, lambda: alice.statusbar.state == "connected")
    pump(alice, lambda: alice.sidebar.badge_text(dm_key("carol")) == "1")
    try:
        light = grab(alice, shots / "main-light.png")
        p = theme.palette("light")
        assert has_colour(light, p.public)
        alice.set_appearance("dark")
        dark = grab(alice, shots / "main-dark.png")
        p = theme.palette("dark")
        assert has_colour(dark, p.public)
    finally:
        ctk.set_appearance_mode("light")


HEBREW = "\u05e9\u05dc\u05d5\u05dd \u05dc\u05db\u05d5\u05dc\u05dd, \u05de\u05d4 \u05e0\u05e9\u05de\u05e2?"
ARABIC = "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u062c\u0645\u064a\u0639"
#: Long enough to wrap: its lines must read from the top down.
LONG_HEBREW = (
    "זוהי פסקה ארוכה בעברית כדי לבדוק שהשורות נשברות מלמעלה למטה, "
    "כפי שקורא עברית מצפה לראות אותן; השורה הראשונה מתחילה בצד ימין "
    "והמשפט האחרון נגמר בשורה התחתונה."
)


def busy_room(open_app, chat_client, geometry: str = "1180x740") -> Any:
    """alice's window on a busy #release: a burst of joins, links, emoji, RTL text,
    a mention, her own messages, and a long wrapped message."""
    alice = open_app("alice", geometry=geometry)
    alice.geometry("+0+0")
    type_into(alice, "/join #release")
    pump(alice, lambda: alice.model.current == room_key("#release"))
    people = {nick: chat_client(nick) for nick in ("bob", "carol", "dave", "erin", "frank")}
    for client in people.values():
        client.join("#release")
    pump(alice, lambda: "frank" in alice.userlist.nicks(), what="the burst of joins")
    bob, carol = people["bob"], people["carol"]
    room = {"room": "#release"}
    post(bob, "Morning all! The 2.4 build is green \u2705 \U0001f389", **room)
    post(carol, "Release notes: https://wiki.example.com/release/2.4 (draft)", **room)
    post(bob, "Great \U0001f44d\U0001f3fd I'll read it after coffee \u2615", **room)
    type_into(alice, "Thanks both. Ship it after lunch? \U0001f680")
    post(bob, "@alice yes, 13:30 works for me", **room)
    post(carol, HEBREW, **room)
    post(carol, ARABIC + " \U0001f60a", **room)
    post(carol, LONG_HEBREW, **room)
    post(
        bob,
        "A long one to show wrapping: the installer now checks the free disk space before "
        "it unpacks anything, and the upgrade path from 2.2 keeps every setting the user "
        "changed; see https://example.com/changes#disk-space for the whole list.",
        **room,
    )
    type_into(
        alice,
        "Family photo from the offsite \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1eb\U0001f1f7",
    )
    pump(alice, lambda: "Family photo" in alice.chat_view.content())
    return alice


def test_screenshot_busy_room_light_and_dark(shots, open_app, chat_client, ctk):
    alice = busy_room(open_app, chat_client)
    try:
        light = grab(alice, shots / "busy-room-light.png")
        assert has_colour(light, theme.palette("light").link)
        assert alice.chat_view.image_count() >= 5  # the emoji are images
        alice.set_appearance("dark")
        dark = grab(alice, shots / "busy-room-dark.png")
        assert has_colour(dark, theme.palette("dark").link)
    finally:
        ctk.set_appearance_mode("light")


def test_screenshot_minimum_window_size(shots, open_app, chat_client, ctk):
    from parley_chat.client.gui.app import MIN_SIZE

    alice = busy_room(open_app, chat_client, geometry=f"{MIN_SIZE[0]}x{MIN_SIZE[1]}")
    type_into(alice, "/exit")
    pump(alice, lambda: alice.composer.banner_visible)
    grab(alice, shots / "minimum-size-light.png")
    # The conversation keeps most of the width, and nothing overlaps in the header.
    assert alice.chat_view.winfo_width() >= 560
    view = alice.chat_view
    right_of_subtitle = view.subtitle_label.winfo_x() + view.subtitle_label.winfo_width()
    assert right_of_subtitle <= view.mute_button.winfo_x()
    try:
        alice.set_appearance("dark")
        grab(alice, shots / "minimum-size-dark.png")
    finally:
        ctk.set_appearance_mode("light")


def test_screenshot_search_with_highlighted_hits_and_the_jump(shots, open_app, chat_client, ctk):
    bob = chat_client("bob")
    carol = chat_client("carol")
    post(bob, "Has anyone seen the deploy checklist?")
    post(carol, "The deploy checklist is pinned in #ops, step 4 is the database backup.")
    for i in range(30):
        post(bob if i % 2 else carol, f"unrelated chatter {i}")
    post(bob, "Updated the deploy script: it now runs the checklist itself.")
    alice = open_app("alice", geometry="1180x740")
    alice.geometry("+0+0")
    entry = alice.chat_view.search_entry
    alice.chat_view.focus_search()
    entry.insert(0, "deploy checklist")
    entry._entry.event_generate("<Return>")
    pump(alice, lambda: alice.model.current == SEARCH_KEY)
    assert alice.chat_view._tk_text.tag_ranges("hit")
    image = grab(alice, shots / "search-hits-light.png")
    assert has_colour(image, theme.palette("light").hit_bg)
    try:
        alice.set_appearance("dark")
        dark = grab(alice, shots / "search-hits-dark.png")
        assert has_colour(dark, theme.palette("dark").hit_bg)
    finally:
        alice.set_appearance("light")
    first = min(alice.model.found)
    assert alice.chat_view.click_result(first)
    pump(alice, lambda: "deploy checklist?" in alice.chat_view.target_text())
    grab(alice, shots / "search-jump-light.png")


class ToastBackend:
    """Draws each notification as a toast in the screen's corner, as a desktop's
    notification service would (Xvfb has none), so the screenshot shows what
    the app sent."""

    def __init__(self, root_getter: Any) -> None:
        self.root = root_getter
        self.sent: list[Any] = []
        self.toasts: list[Any] = []

    def send(self, note: Any) -> None:
        import customtkinter as ctk

        self.sent.append(note)
        top = ctk.CTkToplevel(self.root(), fg_color="#2b2d31")
        top.overrideredirect(True)
        top.geometry(f"340x92+{1280 - 355}+{15 + 102 * (len(self.toasts))}")
        ctk.CTkLabel(
            top, text=note.title, anchor="w", text_color="#ffffff", font=("Roboto", 14, "bold")
        ).pack(fill="x", padx=14, pady=(10, 0))
        ctk.CTkLabel(
            top,
            text=note.body,
            anchor="w",
            justify="left",
            wraplength=310,
            text_color="#d1d5db",
            font=("Roboto", 13),
        ).pack(fill="x", padx=14, pady=(0, 10))
        self.toasts.append(top)


def test_screenshot_a_notification(shots, ctk, gui_server, ca_file, tmp_path, chat_client):
    from PIL import ImageGrab

    from parley_chat.client.gui.app import App
    from parley_chat.client.settings import Settings

    host, port = gui_server.address
    holder: list[Any] = []
    backend = ToastBackend(lambda: holder[0])
    settings = Settings(
        host=host, port=port, ca_file=str(ca_file), nick="alice", register=True, geometry="900x600"
    )
    alice = App(
        SettingsStore(tmp_path / "cfg"), settings=settings, password="secret-pw", notifier=backend
    )
    holder.append(alice)
    alice.geometry("+0+0")
    try:
        pump(
            alice, lambda: alice.statusbar.state == "connected" and alice.model.current_conversation
        )
        type_into(alice, "/join #ops")
        pump(alice, lambda: alice.model.current == room_key("#ops"))
        alice.window_has_focus = lambda: False  # type: ignore[method-assign]
        bob = chat_client("bob")
        post(bob, "lunch at noon, anyone?")
        post(bob, "@alice can you review the deploy PR?")
        post(bob, "and the staging keys are rotated, tell me when you are back", to="alice")
        pump(alice, lambda: len(backend.sent) == 2, what="two notifications")
        pump(alice, lambda: alice.sidebar.badge_text(dm_key("bob")) == "1")
        idle(alice)
        image = ImageGrab.grab(bbox=(0, 0, 1280, 800), xdisplay=os.environ["DISPLAY"])
        image.save(shots / "notification-light.png")
        assert alice.sidebar.badge_is_loud(dm_key("bob"))
        assert alice.sidebar.badge_is_loud(room_key("#lobby"))
        assert alice.title().startswith("(2) ")
    finally:
        for toast in backend.toasts:
            toast.destroy()
        alice.shutdown(timeout=0.5)
        assert alice.wait_closed(10)


def test_screenshot_room_browser_and_conversations_after_a_restart(
    shots, open_app, chat_client, tmp_path
):
    bob = chat_client("bob")
    carol = chat_client("carol")
    for client, rooms in ((bob, ("#garden", "#ops")), (carol, ("#garden",))):
        for room in rooms:
            client.join(room)
            wait_event(client, lambda e, r=room: isinstance(e, RoomJoined) and e.room == r)
    config = tmp_path / "config-alice"
    alice = open_app("alice", config=config, geometry="1180x740")
    post(bob, "are you coming to the garden meeting?", to="alice")
    post(carol, "I put the slides in the shared folder", to="alice")
    pump(alice, lambda: dm_key("carol") in alice.model.conversations)
    alice.shutdown(timeout=0.5)
    assert alice.wait_closed(10)
    post(carol, "one more thing while you were away", to="alice")
    again = open_app("alice", config=config, geometry="1180x740")
    again.geometry("+0+0")
    # Nobody read carol's messages: both are unread, on a red badge.
    pump(again, lambda: again.sidebar.badge_text(dm_key("carol")) == "2")
    assert dm_key("bob") in again.model.conversations
    grab(again, shots / "conversations-after-restart-light.png")
    again.browse_rooms()
    browser = again.room_browser
    browser.geometry("+380+120")
    pump(again, lambda: "#garden" in browser.buttons)
    idle(again)
    from PIL import ImageGrab

    image = ImageGrab.grab(bbox=(0, 0, 1180, 740), xdisplay=os.environ["DISPLAY"])
    image.save(shots / "room-browser-light.png")
    browser.destroy()


def test_screenshot_composer_with_command_hints_and_a_multi_line_draft(
    shots, open_app, chat_client
):
    chat_client("bob")
    alice = open_app("alice", geometry="1180x740")
    alice.geometry("+0+0")
    alice.composer.input.focus_force()
    alice.composer.set_text("/")
    pump(alice, lambda: "/msg" in alice.composer.hint)
    grab(alice, shots / "composer-command-hints-light.png")
    before = alice.composer.entry.winfo_height()
    alice.composer.set_text("first line of a longer note\nsecond line\nthird line, and @b")
    pump(alice, lambda: "bob" in alice.composer.hint)
    idle(alice)
    assert alice.composer.entry.winfo_height() > before  # the input grew with the lines
    grab(alice, shots / "composer-multi-line-light.png")


def test_screenshot_reconnecting_with_retry_now(shots, open_app, chat_client, gui_server):
    bob = chat_client("bob")
    post(bob, "see you after the restart")
    alice = open_app("alice", geometry="1180x740")
    alice.geometry("+0+0")
    pump(alice, lambda: "see you after the restart" in alice.chat_view.content())
    gui_server.stop()
    pump(alice, lambda: alice.statusbar.state == "reconnecting" and alice.statusbar.retry_visible)
    grab(alice, shots / "reconnecting-light.png")
    errors = [ln.text for ln in alice.model.current_conversation.lines if ln.kind == "error"]
    assert len(errors) == 1 and "shutting down" in errors[0], errors


def test_screenshot_end_to_end_padlocks_and_the_key_dialog(shots, open_app, chat_client, ctk):
    from PIL import ImageGrab

    from parley_chat.client.gui.e2e import SETTLED_TEXT

    alice = open_app("alice")
    bob = open_app("bob")
    pump(bob, lambda: SETTLED_TEXT in bob.chat_view.content(), what="bob's keys settled")
    chat_client("carol")  # no end-to-end keys
    type_into(alice, "/msg bob the deploy key is in the safe")
    type_into(alice, "and the safe's code is on the usual card")
    type_into(alice, "/msg carol lunch at noon?")
    type_into(alice, "/msg bob thanks, see you there")
    pump(alice, lambda: "see you there" in alice.chat_view.content())
    pump(alice, lambda: alice.chat_view.tagged_count("lock") >= 3, what="three padlocks")
    grab(alice, shots / "e2e-padlocks-light.png")
    alice.select(dm_key("carol"))
    pump(alice, lambda: "lunch at noon?" in alice.chat_view.content())
    grab(alice, shots / "e2e-not-encrypted-light.png")
    type_into(alice, "/keys export")
    pump(alice, lambda: alice.e2e.dialog is not None, what="the export dialog")
    dialog = alice.e2e.dialog
    dialog.geometry("+300+160")
    dialog.path.insert(0, str(shots / "alice-keys.json"))
    dialog.passphrase.insert(0, "correct horse")
    dialog.confirm.insert(0, "correct horse battery")
    dialog.submit()
    pump(alice, lambda: "differ" in dialog.error_text())
    idle(alice)
    image = ImageGrab.grab(bbox=(0, 0, 1180, 740), xdisplay=os.environ["DISPLAY"])
    image.save(shots / "e2e-export-dialog-light.png")
    dialog.cancel()
