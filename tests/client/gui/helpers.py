# Helpers for the GUI tests: drive Tk with deadlines, wait for client events,
# type like a user. Imported by the tests and their conftest.

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from parley_chat.client import Acked, ChatClient, ClientEvent
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


def idle(app: Any, timeout: float = DEFAULT_WAIT) -> None:
    """A draw barrier: pump until the window has handled every event its client
    queued and every background job it started, then let Tk finish its idle
    work (geometry, redraws). What the window shows after this is what it will
    show until something new arrives, so a test may assert an absence."""

    def caught_up() -> bool:
        client = getattr(app, "_client", None)
        return (client is None or client.events.empty()) and app.jobs.pending == 0

    pump(app, caught_up, timeout, what="the window handled what it had")
    app.update_idletasks()


def wait_event(
    client: ChatClient, predicate: Callable[[ClientEvent], bool], timeout: float = DEFAULT_WAIT
) -> ClientEvent:
    """The first event from *client* satisfying *predicate* (others are dropped)."""
    return wait_for_event(client, predicate, timeout)


def send_and_wait(client: ChatClient, text: str, **where: Any) -> int:
    """Post with a ChatClient and wait for the server's ack; returns the message id."""
    client_id = client.send_text(text, **where)
    ack = wait_event(client, lambda e: isinstance(e, Acked) and e.client_id == client_id)
    assert isinstance(ack, Acked)
    return ack.id


def type_into(app: Any, text: str) -> None:
    """Put *text* in the window's input and press Enter (as a user would)."""
    box = app.composer.input
    box.focus_force()
    pump(app)
    app.composer.set_text(text)
    box.event_generate("<Return>")
    pump(app)


def press(app: Any, keysym: str, **options: Any) -> None:
    """Press one key (a Tk keysym, e.g. "Tab", "Return") in the message input."""
    box = app.composer.input
    box.focus_force()
    pump(app)
    box.event_generate(f"<KeyPress-{keysym}>", **options)
    pump(app)


def type_keys(app: Any, text: str) -> None:
    """Type *text* into the message input one key event per character."""
    box = app.composer.input
    box.focus_force()
    pump(app)
    names = {" ": "space", "@": "at", "/": "slash", "#": "numbersign", ".": "period"}
    for ch in text:
        box.event_generate("<KeyPress>", keysym=names.get(ch, ch))
    pump(app)
