# Helpers for the GUI tests: drive Tk with deadlines, wait for client events,
# type like a user. Imported by the tests and their conftest.

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from parley_chat.client import ChatClient, ClientEvent
from tests.support import wait_for_event

#: Default deadline of every wait, in seconds.
DEFAULT_WAIT = 10.0


def pump(
    app: Any,
    until: Callable[[], object] | None = None,
    timeout: float = DEFAULT_WAIT,
    what: str = "",
) -> None:
    """Drive Tk (all windows of this thread) until *until()* is true or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while True:
        app.update()
        if until is None or until():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"GUI condition not met within {timeout} s: {what or until}")
        time.sleep(0.005)


def settle(app: Any, seconds: float = 0.2) -> None:
    """Pump for a short while (lets queued events arrive), with no condition."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.update()
        time.sleep(0.005)


def wait_event(
    client: ChatClient, predicate: Callable[[ClientEvent], bool], timeout: float = DEFAULT_WAIT
) -> ClientEvent:
    """The first event from *client* satisfying *predicate* (others are dropped)."""
    return wait_for_event(client, predicate, timeout)


def type_into(app: Any, text: str) -> None:
    """Type *text* in the window's input and press Enter (as a user would)."""
    entry = app.composer.entry
    entry._entry.focus_force()
    pump(app)
    entry.delete(0, "end")
    entry.insert(0, text)
    entry._entry.event_generate("<Return>")
    pump(app)
