# client/gui/notify.py's real backend (desktop-notifier) against a real D-Bus
# session bus (dbus-daemon) with a small org.freedesktop.Notifications service
# standing in for the desktop's: the notification goes out, and a click on it
# (the service's ActionInvoked signal) comes back as the conversation's key.
#
# No `from __future__ import annotations` here: dbus-fast reads the D-Bus
# signatures from the annotations ("s", "as", ...) as written.

# ruff: noqa: F722, F821

import asyncio
import os
import shutil
import subprocess
import threading

import pytest

from parley_chat.client.gui.notify import DesktopBackend, Notifier

dbus_fast = pytest.importorskip("dbus_fast")
pytest.importorskip("desktop_notifier")

from dbus_fast.aio import MessageBus  # noqa: E402
from dbus_fast.service import ServiceInterface, method, signal  # noqa: E402

DEADLINE = 15.0


class FakeNotifications(ServiceInterface):
    """The desktop's notification service, as the freedesktop spec describes it."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: list[tuple[int, str, str, list[str]]] = []
        self.arrived = threading.Event()

    @method()
    def GetCapabilities(self) -> "as":
        return ["actions", "body"]

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["parley-test", "parley", "1", "1.2"]

    @method()
    def Notify(
        self,
        app_name: "s",
        replaces_id: "u",
        app_icon: "s",
        summary: "s",
        body: "s",
        actions: "as",
        hints: "a{sv}",
        expire_timeout: "i",
    ) -> "u":
        nid = len(self.shown) + 1
        self.shown.append((nid, summary, body, list(actions)))
        self.arrived.set()
        return nid

    @method()
    def CloseNotification(self, nid: "u") -> None:
        pass

    @signal()
    def ActionInvoked(self, nid, key) -> "us":
        return [nid, key]

    @signal()
    def NotificationClosed(self, nid, reason) -> "uu":
        return [nid, reason]


@pytest.fixture
def session_bus(tmp_path, monkeypatch):
    """A private D-Bus session bus (dbus-daemon), its address in the environment."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is not installed")
    proc = subprocess.Popen(
        [daemon, "--session", "--nofork", "--print-address=1", f"--address=unix:tmpdir={tmp_path}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = proc.stdout.readline().strip()  # printed once the bus listens
        assert address, "dbus-daemon gave no address"
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def notification_service(session_bus):
    """FakeNotifications on the bus, served by its own asyncio loop thread."""
    loop = asyncio.new_event_loop()
    service = FakeNotifications()
    ready = threading.Event()

    async def serve() -> None:
        bus = await MessageBus(bus_address=session_bus).connect()
        bus.export("/org/freedesktop/Notifications", service)
        await bus.request_name("org.freedesktop.Notifications")
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(DEADLINE)
    assert ready.is_set()
    service.loop = loop
    yield service
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_a_click_on_a_real_desktop_notification_comes_back_as_its_conversation(
    notification_service,
):
    backend = DesktopBackend()
    notifier = Notifier(backend)
    try:
        notifier.message("@bob", "bob", None, "psst, a secret")
        assert notification_service.arrived.wait(DEADLINE), "no notification reached D-Bus"
        nid, summary, body, actions = notification_service.shown[0]
        assert (summary, body) == ("bob (private message)", "psst, a secret")
        assert "default" in actions  # the body is clickable
        # The library has the service's id for it once the send returns.
        assert backend.wait_idle(DEADLINE), "the send never finished"
        assert not backend.failed
        # The user clicks it: the service emits ActionInvoked(id, "default").
        notification_service.loop.call_soon_threadsafe(
            notification_service.ActionInvoked, nid, "default"
        )
        assert notifier.wait_click(DEADLINE) == "@bob", "the click never came back"
        assert notifier.take_clicks() == []
    finally:
        notifier.close()


def test_without_a_service_the_backend_turns_off_and_drops_later_notes(session_bus):
    # A bus, but nobody owns org.freedesktop.Notifications (a bare session).
    backend = DesktopBackend()
    notifier = Notifier(backend)
    try:
        notifier.message("@bob", "bob", None, "hi")
        assert backend.wait_idle(DEADLINE), "the send never finished"
        assert backend.failed, "the backend never noticed the missing service"
        notifier.message("@bob", "bob", None, "dropped at once")
        assert notifier.take_clicks() == []
        assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == session_bus
    finally:
        notifier.close()
