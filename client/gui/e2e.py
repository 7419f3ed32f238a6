"""The desktop client's end-to-end encryption (docs/security.md, docs/gui.md).

attach_session() gives a ChatClient its E2ESession before it connects (so the
replay is decrypted); the App then calls settle() once logged in, send_private()
for every private message and command() for the E2E commands (/safety NICK,
/trust NICK, /link, /link CODE, /link yes). Everything that waits for the
server runs as a Jobs job, never on the Tk thread; results come back as notes
in the open conversation. The keys are kept under a key in the OS keyring, or
under PARLEY_KEY_PASSPHRASE when it is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from parley_chat.protocol import fold

from ..connection import ChatClient
from ..e2e.crypto import E2EError, group_digits
from ..e2e.files import PASSPHRASE_ENV, open_session
from ..e2e.pins import KeyChanged
from ..e2e.session import E2ESession, NoPeerKeys
from .jobs import Jobs

#: The end-to-end commands, as /help lists them after the others.
HELP_LINES = (
    "/safety nick    the safety number to compare with nick in person",
    "/trust nick     accept nick's new key after a key-change warning",
    "/link [CODE|yes]  link a new device (type /link on it first)",
)


class _App(Protocol):
    jobs: Jobs

    def _note(self, text: str, kind: str) -> None: ...


def attach_session(
    client: ChatClient, root: Path, env: Mapping[str, str] | None = None
) -> str | None:
    """Attach end-to-end encryption to *client* (its state under *root*, the app's
    data folder); None, or why it is off on this device."""
    env = os.environ if env is None else env
    try:
        open_session(client, env, env.get(PASSPHRASE_ENV) or None, root)
    except E2EError as exc:
        return str(exc)
    return None


def session_of(client: ChatClient | None) -> E2ESession | None:
    """The client's E2ESession, if attached."""
    hooks = client.e2e if client is not None else None
    return hooks if isinstance(hooks, E2ESession) else None


class DesktopE2E:
    """The App's side: notes, jobs and the private-message path."""

    def __init__(self, app: _App) -> None:
        self._app = app
        self._told: set[str] = set()
        self._link_code: str | None = None

    def _job(self, name: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        def finished(result: Any, exc: BaseException | None) -> None:
            if isinstance(exc, KeyChanged):
                self._app._note(f"Not sent: {exc}", "error")
            elif isinstance(exc, E2EError):
                self._app._note(f"End-to-end encryption: {exc}", "error")
            elif exc is not None:
                self._app._note(f"End-to-end encryption failed: {exc}", "error")
            else:
                done(result)

        self._app.jobs.start(name, work, finished)

    def settle(self, client: ChatClient) -> None:
        """After login: settle the keys with the server; a note says where things stand."""
        session = session_of(client)
        if session is None:
            return
        texts = {
            "published": "Private messages are end-to-end encrypted with people who have keys.",
            "ready": "Private messages are end-to-end encrypted with people who have keys.",
            "unlinked": "This device has no end-to-end keys yet; your account has them on "
            "another device. Type /link here and follow it.",
            "conflict": "WARNING: the server holds other end-to-end keys for your account than "
            "this device. Private messages to people with keys are not sent.",
        }

        def started(state: Any, exc: BaseException | None) -> None:
            if exc is not None:
                if session.keys is None:
                    session.detach()  # no keys to use: private messages go as before
                self._app._note(f"End-to-end encryption is off: {exc}", "notice")
                return
            self._app._note(texts[state], "error" if state == "conflict" else "notice")

        self._app.jobs.start("e2e-start", session.start, started)

    def send_private(self, client: ChatClient, text: str, to: str) -> bool:
        """Send *text* to *to* encrypted (a job); True when E2E took it over."""
        session = session_of(client)
        if session is None:
            return False

        def work() -> str | None:
            try:
                session.send_private(to, text)
            except NoPeerKeys as exc:
                client.send_text(text, to=to)  # the user is told (below), then it goes plainly
                return str(exc) if fold(to) not in self._told else None
            return None

        def done(warning: str | None) -> None:
            if warning:
                self._told.add(fold(to))
                self._app._note(warning, "notice")

        self._job("e2e-send", work, done)
        return True

    def command(self, client: ChatClient | None, line: str) -> bool:
        """Run an E2E command typed in the input; False when *line* is none of them."""
        head, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        name = head.lower()
        if name not in ("/safety", "/trust", "/link"):
            return False
        session = session_of(client)
        if session is None:
            self._app._note("End-to-end encryption is off on this device.", "error")
            return True
        note = self._app._note
        if name in ("/safety", "/trust") and not arg:
            note(f"usage: {name} nick", "error")
        elif name == "/safety":
            self._job(
                "e2e-safety",
                lambda: session.safety_number(arg),
                lambda n: note(
                    f"Safety number with {arg}: {group_digits(n)}. Compare it with theirs "
                    "in person or on a call.",
                    "notice",
                ),
            )
        elif name == "/trust":
            self._job(
                "e2e-trust",
                lambda: session.accept(arg),
                lambda keys: note(f"{arg}'s new key {keys.fingerprint()} is trusted.", "notice"),
            )
        elif not arg:
            start = session.start_link()
            note(
                f"On a device that has your keys, type: /link {start.code}  "
                f"It must show the comparison code {start.comparison}.",
                "notice",
            )
        elif arg.lower() == "yes":
            code, self._link_code = self._link_code, None
            if code is None:
                note("Type /link CODE first (the code the new device shows).", "error")
            else:
                self._job(
                    "e2e-link",
                    lambda: session.confirm_link(code),
                    lambda _: note("Keys sent.", "notice"),
                )
        else:

            def fetched(comparison: str) -> None:
                self._link_code = arg
                note(
                    f"Comparison code: {comparison}. If the new device shows the same, type "
                    "/link yes; otherwise do nothing.",
                    "notice",
                )

            self._job("e2e-link", lambda: session.fetch_link(arg), fetched)
        return True
