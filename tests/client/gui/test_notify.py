# client/gui/notify.py: the words of a notification, and that no backend can
# break the app (no display needed).

from __future__ import annotations

import os

from parley_chat.client.gui.notify import PREVIEW, DesktopBackend, Notification, Notifier, preview


class Recording:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, note: Notification) -> None:
        self.sent.append(note)


class Broken:
    def send(self, note: Notification) -> None:
        raise RuntimeError("no notification service")


def test_titles_say_who_and_where_and_bodies_are_short_plain_lines():
    backend = Recording()
    notifier = Notifier(backend)
    notifier.message("@bob", "bob", None, "psst\nsecond line")
    notifier.message("#dev", "carol", "#dev", "word " * 100)
    private, mention = backend.sent
    assert (private.title, private.body, private.key) == (
        "bob (private message)",
        "psst second line",
        "@bob",
    )
    assert mention.title == "carol in #dev"
    assert len(mention.body) <= PREVIEW + 1 and mention.body.endswith("\u2026")
    assert preview("a  b\tc") == "a b c"


def test_a_failing_backend_never_raises_into_the_app():
    note = Notifier(Broken()).message("@bob", "bob", None, "hi")
    assert note.title == "bob (private message)"


def test_the_desktop_backend_turns_itself_off_quietly_without_a_service(monkeypatch):
    # No D-Bus session here (CI): the worker fails, marks the backend off, and
    # later sends are dropped at once.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    backend = DesktopBackend()
    backend.send(Notification("t", "b", "k"))
    assert backend.wait_idle(15), "the send never finished"
    assert backend.failed or os.environ.get("PARLEY_HAS_NOTIFICATIONS")
    backend.send(Notification("t", "b", "k"))  # dropped, no error
    backend.close()
