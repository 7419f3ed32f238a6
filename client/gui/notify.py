"""Desktop notifications for private messages and
mentions, behind a small backend interface: the app calls Notifier, Notifier
calls a Backend. The real backend is desktop-notifier (D-Bus on Linux,
Windows toasts, macOS Notification Center); tests hand in a fake.

Rules this module keeps:
1. Sending never blocks the Tk thread and never raises into it: the real
   backend sends on a worker thread that touches no Tk object, and a failure
   (no notification service, no D-Bus session) turns the backend off quietly,
   logged once. The app still marks the title and rings the bell.
2. A click on a notification reaches the Tk thread only through a queue
   (take_clicks), which the app's pump drains: it opens that conversation.
3. Bodies are short plain text: at most PREVIEW characters of the message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("parley.gui.notify")

#: Characters of the message shown in a notification.
PREVIEW = 140
#: desktop-notifier's loggers that report a failed send.
_LIBRARY_LOGGERS = (
    "desktop_notifier",
    "desktop_notifier.main",
    "desktop_notifier.backends.base",
    "desktop_notifier.backends.dbus",
    "desktop_notifier.backends.winrt",
    "desktop_notifier.backends.macos",
)


@dataclass(frozen=True, slots=True)
class Notification:
    """What one notification says."""

    title: str
    body: str
    key: str  # the conversation it is about


class Backend(Protocol):
    """Shows notifications. send() must return quickly and never raise.

    A backend that can tell when the user clicks a notification has an
    `on_click` attribute: Notifier sets it to a callable taking the
    notification's key, which the backend may call from any thread."""

    def send(self, note: Notification) -> None: ...


class NullBackend:
    """Shows nothing (no notification library or service)."""

    def send(self, note: Notification) -> None:
        """Drop *note*."""


class DesktopBackend:
    """desktop-notifier's asyncio API on a small event loop of its own thread.

    The loop keeps running between notifications: on Linux the click arrives
    as a D-Bus signal (ActionInvoked) that only a running loop receives. The
    click then calls `on_click(key)` on that loop's thread; the Notifier hands
    it to the Tk thread through a queue (rule 1)."""

    #: Notifications waiting to go out, at most (more are dropped).
    MAX_PENDING = 20

    def __init__(self, app_name: str = "parley") -> None:
        self._app_name = app_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notifier: Any = None
        self._pending = 0
        self._lock = threading.Lock()
        # Notified whenever a send finishes (shown or failed): wait_idle() waits on it.
        self._settled = threading.Condition(self._lock)
        self.failed = False
        self.on_click: Callable[[str], None] | None = None

    def send(self, note: Notification) -> None:
        """Hand *note* to the loop (dropped when the backend failed or is busy)."""
        if self.failed:
            return
        with self._lock:
            if self._pending >= self.MAX_PENDING:
                return
            self._pending += 1
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._run, args=(self._loop,), name="parley-notify", daemon=True
                )
                self._thread.start()
            loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._send(note), loop)
        except RuntimeError:  # the loop was closed
            with self._lock:
                self._pending -= 1
                self._settled.notify_all()

    @property
    def busy(self) -> bool:
        """True while a notification is on its way to the service."""
        return self._pending > 0

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no notification is on its way (shown, or the backend failed);
        False if *timeout* passed first."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the loop (notifications already shown stay; their clicks are ignored)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _send(self, note: Notification) -> None:
        try:
            if self.failed:
                return
            if self._notifier is None:
                problem = _no_service()
                if problem:
                    self._fail(problem)
                    return
                _watch_library_log()
                try:
                    from desktop_notifier import DesktopNotifier

                    self._notifier = DesktopNotifier(app_name=self._app_name)
                except Exception as exc:  # no library, or no backend for this platform
                    self._fail(exc)
                    return
            key = note.key
            _sending.add(self)
            await self._notifier.send(
                title=note.title, message=note.body, on_clicked=lambda: self._clicked(key)
            )
        except Exception as exc:  # no D-Bus session, service refused, ...
            self._fail(exc)
        finally:
            with self._lock:
                self._pending -= 1
                if not self._pending:
                    _sending.discard(self)
                self._settled.notify_all()

    def _clicked(self, key: str) -> None:
        on_click = self.on_click
        if on_click is not None:
            on_click(key)

    def _fail(self, exc: BaseException | str) -> None:
        self.failed = True
        log.info("desktop notifications are off: %s", exc)


#: The backends with a notification on its way (the library's failure records
#: do not say whose send failed: every one sending then is off).
_sending: weakref.WeakSet[DesktopBackend] = weakref.WeakSet()
_watching = False


def _watch_library_log() -> None:
    """desktop-notifier logs a failed send (with a traceback) instead of raising:
    take such a record as "the service is not there" for the backends sending.
    Installed once; a logger's filter sees only its own records, not its
    children's, hence one per module that reports a failed send."""
    global _watching
    if _watching:
        return
    _watching = True
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).addFilter(_on_library_log)


def _on_library_log(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
        for backend in list(_sending):
            if not backend.failed:
                backend._fail(record.getMessage())
    return record.levelno < logging.WARNING  # keep tracebacks out of the user's terminal


def _no_service() -> str:
    """Why there can be no desktop notifications here ("" when there may be)."""
    if not sys.platform.startswith("linux"):
        return ""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if runtime and os.path.exists(os.path.join(runtime, "bus")):
            return ""
        return "no D-Bus session bus"
    for part in address.split(";"):
        if part.startswith("unix:path="):
            path = part[len("unix:path=") :].split(",")[0]
            if not os.path.exists(path):
                return f"no D-Bus session bus at {path}"
    return ""


def preview(text: str) -> str:
    """*text* on one line, cut at a word to PREVIEW characters."""
    flat = " ".join(text.split())
    if len(flat) <= PREVIEW:
        return flat
    cut = flat[:PREVIEW].rsplit(" ", 1)[0] or flat[:PREVIEW]
    return cut + "\u2026"


class Notifier:
    """Decides the words of a notification and hands it to *backend*; collects
    the clicks on them for the Tk thread (take_clicks)."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = backend if backend is not None else DesktopBackend()
        self._clicks: queue.SimpleQueue[str] = queue.SimpleQueue()
        if hasattr(self.backend, "on_click"):
            self.backend.on_click = self._clicks.put

    def take_clicks(self) -> list[str]:
        """The keys of the notifications clicked since the last call (Tk thread)."""
        out = []
        while True:
            try:
                out.append(self._clicks.get_nowait())
            except queue.Empty:
                return out

    def wait_click(self, timeout: float) -> str | None:
        """The key of the next notification clicked, or None after *timeout* (for scripts
        and tests; the app polls take_clicks() from Tk instead)."""
        try:
            return self._clicks.get(timeout=timeout)
        except queue.Empty:
            return None

    def message(self, key: str, sender: str, where: str | None, text: str) -> Notification:
        """Notify about a message from *sender*, in room *where* (None: private)."""
        title = f"{sender} in {where}" if where else f"{sender} (private message)"
        note = Notification(title=title, body=preview(text), key=key)
        try:
            self.backend.send(note)
        except Exception as exc:  # a backend must not raise; never let one break the app
            log.info("notification not shown: %s", exc)
        return note

    def close(self) -> None:
        """Stop the backend's worker, if it has one."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
