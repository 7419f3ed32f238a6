# client/gui/notify.py: desktop notifications for private messages and
# mentions, behind a small backend interface: the app calls Notifier, Notifier
# calls a Backend. The real backend is desktop-notifier (D-Bus on Linux,
# Windows toasts, macOS Notification Center); tests hand in a fake.
#
# Rules this module keeps:
# 1. Sending never blocks the Tk thread and never raises into it: the real
#    backend sends on a worker thread that touches no Tk object, and a failure
#    (no notification service, no D-Bus session) turns the backend off quietly,
#    logged once. The app still marks the title and rings the bell.
# 2. Bodies are short plain text: at most PREVIEW characters of the message.

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("parley.gui.notify")

#: Characters of the message shown in a notification.
PREVIEW = 140


@dataclass(frozen=True, slots=True)
class Notification:
    """What one notification says."""

    title: str
    body: str
    key: str  # the conversation it is about


class Backend(Protocol):
    """Shows notifications. send() must return quickly and never raise."""

    def send(self, note: Notification) -> None: ...


class NullBackend:
    """Shows nothing (no notification library or service)."""

    def send(self, note: Notification) -> None:
        """Drop *note*."""


class DesktopBackend:
    """desktop-notifier on a worker thread of its own."""

    def __init__(self, app_name: str = "parley") -> None:
        self._app_name = app_name
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=20)
        self._thread: threading.Thread | None = None
        self.failed = False

    def send(self, note: Notification) -> None:
        """Queue *note* for the worker (dropped when the backend failed or is busy)."""
        if self.failed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="parley-notify", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(note)
        except queue.Full:
            pass

    def close(self) -> None:
        """Stop the worker."""
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass

    def _run(self) -> None:
        problem = _no_service()
        if problem:
            self._fail(problem)
            return
        # desktop-notifier logs a failed send (with a traceback) instead of
        # raising: take that record as "the service is not there", once.
        logging.getLogger("desktop_notifier").addFilter(self._on_library_log)
        try:
            from desktop_notifier import DesktopNotifierSync

            notifier = DesktopNotifierSync(app_name=self._app_name)
        except Exception as exc:  # no library, or no backend for this platform
            self._fail(exc)
            return
        while True:
            note = self._queue.get()
            if note is None:
                return
            try:
                notifier.send(title=note.title, message=note.body)
            except Exception as exc:  # no D-Bus session, service refused, ...
                self._fail(exc)
            if self.failed:
                return

    def _fail(self, exc: BaseException | str) -> None:
        self.failed = True
        log.info("desktop notifications are off: %s", exc)

    def _on_library_log(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and not self.failed:
            self._fail(record.getMessage())
        return False  # keep the library's traceback out of the user's terminal


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
    """Decides the words of a notification and hands it to *backend*."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = backend if backend is not None else DesktopBackend()

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
