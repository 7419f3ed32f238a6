"""The desktop client's end-to-end encryption (docs/security.md, docs/gui.md).

Before each login the connect flow calls DesktopE2E.prepare(): it opens this
device's keys for the account (with PARLEY_KEY_PASSPHRASE, the OS keyring, or
a passphrase asked in a KeyDialog: chosen on first use, typed to unlock
afterwards) and attaches the E2ESession to the ChatClient before it connects,
so the replay is decrypted. Once logged in the App calls settle(), then
send_private() for every private message and command() for the E2E commands
(/safety, /trust, /link, /keys; the same names as the terminal client's).

When the keys are locked (the user cancelled the passphrase, or the key file
cannot be opened), the session stays attached without keys: a private message
to someone who has keys is NOT sent (it would have been encrypted), one to
someone without keys goes as before, said plainly. Nothing falls back to
plain text because this device's keys are not at hand.

Everything that waits for the server or runs Argon2id runs as a Jobs job,
never on the Tk thread; results come back as notes in the open conversation.
"""

from __future__ import annotations

import os
import threading
import tkinter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from parley_chat.protocol import fold

from ..connection import ChatClient
from ..e2e.crypto import AccountKeys, E2EError, group_digits
from ..e2e.files import (
    PASSPHRASE_ENV,
    DeviceKeys,
    device_keys,
    keyring_usable,
    session_for,
)
from ..e2e.keystore import decrypt_keys, encrypt_keys, write_private
from ..e2e.pins import KeyChanged
from ..e2e.session import E2ESession, NoPeerKeys
from .jobs import Jobs
from .key_dialog import KeyDialog
from .model import dm_key

#: The end-to-end commands, as /help lists them after the others.
HELP_LINES = (
    "/safety nick    the safety number to compare with nick in person",
    "/trust nick     accept nick's new key after a key-change warning",
    "/link [CODE|yes]  link a new device (type /link on it first)",
    "/keys export [FILE]  write your keys to a file protected by a passphrase",
    "/keys import [FILE]  use the keys of an exported file on this device",
    "/keys unlock    type the passphrase of your keys (when they are locked)",
)

#: What a locked device says about private messages, after why it is locked.
LOCKED_EFFECT = (
    "Private messages to people who have keys are NOT sent from this device until you "
    "unlock your keys (the key button in the sidebar, or /keys unlock); messages to "
    "people without keys go unencrypted, as before."
)

SETTLED_TEXT = "Private messages are end-to-end encrypted with people who have keys."


class _App(Protocol):
    jobs: Jobs

    def _note(self, text: str, kind: str, key: str | None = None) -> None: ...

    def e2e_keys_changed(self) -> None: ...

    def e2e_peer_known(self, nick: str) -> None: ...

    def prefers_key_passphrase(self) -> bool: ...

    def give_back(self, text: str) -> None: ...


class KeysLocked(E2EError):
    """The peer has keys but this device's are locked: the message is not sent."""

    def __init__(self, nick: str, why: str) -> None:
        super().__init__(
            f"{nick} has end-to-end encryption keys, and yours are locked on this device "
            f"({why}), so the message is not sent rather than sent unencrypted. Unlock your "
            "keys (the key button in the sidebar, or /keys unlock) and send it again."
        )
        self.nick = nick


class _Turns:
    """Lets jobs run their part in the order they were started: private messages
    go out in the order they were typed, though each waits for a key lookup on a
    thread of its own. take() on the Tk thread, then `with turn(ticket)` in the job."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next = 0
        self._serving = 0

    def take(self) -> int:
        """The next ticket (Tk thread, when the job is started)."""
        ticket = self._next
        self._next += 1
        return ticket

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        """Wait until the jobs started before this one are done, then run."""
        with self._changed:
            self._changed.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._changed:
                self._serving += 1
                self._changed.notify_all()


def session_of(client: ChatClient | None) -> E2ESession | None:
    """The client's E2ESession, if attached."""
    hooks = client.e2e if client is not None else None
    return hooks if isinstance(hooks, E2ESession) else None


class DesktopE2E:
    """The App's side: the key dialogs, notes, jobs and the private-message path.

    *app* is the window (dialogs open over it); *environ* is where
    PARLEY_KEY_PASSPHRASE is looked up (default os.environ).
    """

    def __init__(self, app: _App, environ: Mapping[str, str] | None = None) -> None:
        self._app = app
        self._env: Mapping[str, str] = os.environ if environ is None else environ
        self._told: set[str] = set()  # peers already told they have no keys
        self._link_code: str | None = None
        self._turns = _Turns()
        #: What this device knows of each peer (folded nick): True has keys, False none.
        self.peers: dict[str, bool] = {}
        self._checked: set[str] = set()  # peers looked up when their conversation opened
        self.device: DeviceKeys | None = None
        #: Why this device's keys are locked (None: unlocked, or none yet).
        self.locked: str | None = None
        #: The open key dialog, if any.
        self.dialog: KeyDialog | None = None
        # The passphrase typed for the last account folder, so a second Connect
        # (after a mistyped account password) does not ask again; until sign-out.
        self._remembered: tuple[Path, str] | None = None

    # --- before login ------------------------------------------------------------------------

    def prepare(self, client: ChatClient, root: Path, proceed: Callable[[], None]) -> None:
        """Open this device's keys for *client* (its state under *root*), asking for
        the passphrase when it is needed; attach the session; then proceed()."""
        self.close_dialog()
        self._told = set()
        self._checked = set()
        self.peers = {}
        self._link_code = None
        phrase = self._env.get(PASSPHRASE_ENV) or None
        device = self.device = device_keys(client, root, phrase)
        remembered = self._remembered
        if phrase is None and remembered is not None and remembered[0] == device.folder:
            phrase = device.passphrase = remembered[1]
        try:
            protection = device.protection
        except E2EError as exc:
            self._attach(client, None, f"the key file cannot be used: {exc}")
            proceed()
            return
        if phrase is not None or protection == "keyring":

            def opened(keys: AccountKeys | None, exc: BaseException | None) -> None:
                if exc is not None:
                    self._attach(client, None, _why(exc))
                else:
                    self._attach(client, keys, None)
                proceed()

            self._app.jobs.start("e2e-open", device.load, opened)
            return
        if protection is None:
            # Probing the keyring talks to D-Bus (Secret Service): off the Tk thread.
            def probed(usable: bool, exc: BaseException | None) -> None:
                if usable and exc is None and not self._app.prefers_key_passphrase():
                    self._attach(client, None, None)  # keys made after login, in the keyring
                    proceed()
                else:
                    self._ask_new_passphrase(client, proceed)

            self._app.jobs.start("e2e-keyring", keyring_usable, probed)
            return
        self._ask_unlock(client, proceed)

    def _ask_new_passphrase(self, client: ChatClient, proceed: Callable[[], None]) -> None:
        device = self.device
        assert device is not None

        def chosen(phrase: str, _path: str) -> None:
            device.passphrase = phrase
            self.close_dialog()
            self._attach(client, None, None)
            proceed()

        def cancelled() -> None:
            self.dialog = None
            self._attach(client, None, "you set no passphrase to protect them")
            proceed()

        self._open_dialog("create", client.nick, chosen, cancelled)

    def _ask_unlock(self, client: ChatClient, proceed: Callable[[], None]) -> None:
        device = self.device
        assert device is not None

        def typed(phrase: str, _path: str) -> None:
            def checked(keys: AccountKeys | None, exc: BaseException | None) -> None:
                if exc is not None:
                    self._dialog_error(exc)
                    return
                device.passphrase = phrase
                self.close_dialog()
                self._attach(client, keys, None)
                proceed()

            self._app.jobs.start("e2e-unlock", lambda: _read_keys(device.path, phrase), checked)

        def cancelled() -> None:
            self.dialog = None
            self._attach(client, None, "you did not type their passphrase")
            proceed()

        self._open_dialog("unlock", client.nick, typed, cancelled)

    def _attach(self, client: ChatClient, keys: AccountKeys | None, locked: str | None) -> None:
        device = self.device
        assert device is not None
        self.locked = locked
        session_for(client, device, keys)
        self._remember()

    def _remember(self) -> None:
        device = self.device
        if device is not None and device.passphrase is not None and self.locked is None:
            self._remembered = (device.folder, device.passphrase)

    def linked(self) -> None:
        """This device got the account's keys from another device: not locked now."""
        self.locked = None
        self._remember()

    def forget(self) -> None:
        """Signing out: the next sign-in asks for the passphrase again."""
        self._remembered = None
        self.close_dialog()

    # --- after login -------------------------------------------------------------------------

    def settle(self, client: ChatClient) -> None:
        """After login: settle the keys with the server; a note says where things stand."""
        session = session_of(client)
        if session is None:
            return
        if self.locked is not None:
            self._app._note(
                f"End-to-end encryption is OFF on this device: your keys are locked "
                f"({self.locked}). {LOCKED_EFFECT}",
                "error",
            )
            return
        texts = {
            "published": SETTLED_TEXT,
            "ready": SETTLED_TEXT,
            "unlinked": "This device has no end-to-end keys yet; your account has them on "
            "another device. Type /link here and follow it, or import your key file "
            "(/keys import).",
            "conflict": "WARNING: the server holds other end-to-end keys for your account than "
            "this device. Private messages to people with keys are not sent.",
        }

        def started(state: Any, exc: BaseException | None) -> None:
            self._app.e2e_peer_known(client.nick)  # headers follow what this device can do
            if exc is not None:
                if session.keys is None:
                    # No keys to use (they could not be kept): locked, never plain.
                    self.locked = _why(exc)
                    self._app._note(
                        f"End-to-end encryption is OFF on this device: {self.locked}. "
                        f"{LOCKED_EFFECT}",
                        "error",
                    )
                else:
                    self._app._note(f"End-to-end encryption: {_why(exc)}", "error")
                return
            self._app._note(texts[state], "error" if state == "conflict" else "notice")

        self._app.jobs.start("e2e-start", session.start, started)

    # --- sending -----------------------------------------------------------------------------

    def send_private(
        self, client: ChatClient, text: str, to: str, *, typed: str | None = None
    ) -> bool:
        """Send *text* to *to* (a job): encrypted when both have keys, plainly (said
        once) when *to* has none, not at all when this device cannot encrypt for a
        peer that has keys. True when E2E took it over. *typed* (the input it came
        from) goes back into the input when it is not sent."""
        session = session_of(client)
        if session is None:
            return False
        locked = self.locked
        ticket = self._turns.take()
        peer = fold(to)

        def work() -> str | None:
            with self._turns.turn(ticket):
                if locked is not None:
                    if session.peer_keys(to) is not None:
                        self.peers[peer] = True
                        raise KeysLocked(to, locked)
                else:
                    try:
                        session.send_private(to, text)
                        self.peers[peer] = True
                        return None
                    except NoPeerKeys:
                        pass
                self.peers[peer] = False
                client.send_text(text, to=to)  # the user is told (below) that it went plainly
            return None if peer in self._told else str(NoPeerKeys(to))

        where = dm_key(to)  # what is said about a message goes with its conversation

        def done(warning: str | None) -> None:
            self._app.e2e_peer_known(to)
            if warning and peer not in self._told:
                self._told.add(peer)
                self._app._note(warning, "notice", where)

        self._job(
            "e2e-send",
            work,
            done,
            failed="Not sent",
            where=where,
            on_failed=lambda: self._app.give_back(typed or text),
        )
        return True

    def conversation_opened(self, client: ChatClient | None, nick: str) -> None:
        """A private conversation with *nick* opened: once per login, look up whether
        *nick* has keys, so a conversation without end-to-end encryption says so
        before the first message (and its header says which it is)."""
        session = session_of(client)
        peer = fold(nick)
        if session is None or peer in self._checked:
            return
        self._checked.add(peer)
        where = dm_key(nick)

        def found(keys: object, exc: BaseException | None) -> None:
            if isinstance(exc, KeyChanged):
                self._app._note(str(exc), "error", where)
                return
            if exc is not None:
                # No answer (offline, say): nothing known yet; the next opening asks again.
                self._checked.discard(peer)
                return
            self.peers[peer] = keys is not None
            self._app.e2e_peer_known(nick)
            if keys is None and peer not in self._told:
                self._told.add(peer)
                self._app._note(str(NoPeerKeys(nick)), "notice", where)
            elif keys is not None and self.locked is not None:
                self._app._note(
                    f"{nick} has end-to-end encryption keys and yours are locked on this "
                    "device: messages to them are not sent until you unlock your keys.",
                    "error",
                    where,
                )

        self._app.jobs.start("e2e-peer", lambda: session.peer_keys(nick), found)

    def describe(self, client: ChatClient | None, nick: str) -> str:
        """What a private conversation's header says of its encryption ("" unknown)."""
        session = session_of(client)
        known = self.peers.get(fold(nick))
        if session is None or known is None:
            return ""
        if not known:
            return "NOT end-to-end encrypted"
        if self.locked is not None:
            return "your keys are locked: not sent"
        if not session.ready:
            return "this device has no keys yet: not sent"
        return "end-to-end encrypted"

    # --- commands ----------------------------------------------------------------------------

    def command(self, client: ChatClient | None, line: str) -> bool:
        """Run an E2E command typed in the input; False when *line* is none of them."""
        head, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        name = head.lower()
        if name not in ("/safety", "/trust", "/link", "/keys"):
            return False
        session = session_of(client)
        note = self._app._note
        if session is None:
            note("End-to-end encryption is off on this device.", "error")
            return True
        if name == "/keys":
            self._keys_command(session, arg)
        elif name in ("/safety", "/trust") and not arg:
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
        else:
            self._link_command(session, arg)
        return True

    def _link_command(self, session: E2ESession, arg: str) -> None:
        note = self._app._note
        if not arg:
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

    def _keys_command(self, session: E2ESession, arg: str) -> None:
        what, _, name = arg.partition(" ")
        path = os.path.expanduser(name.strip()) if name.strip() else ""
        if what == "export":
            self.export_keys(session, path)
        elif what == "import":
            self.import_keys(session, path)
        elif what == "unlock" and not name.strip():
            self.unlock(session)
        else:
            self._app._note(
                "usage: /keys export [FILE] | /keys import [FILE] | /keys unlock", "error"
            )

    # --- the key menu's actions --------------------------------------------------------------

    def menu_entries(self, client: ChatClient | None) -> list[tuple[str, Callable[[], None]]]:
        """The key button's menu: (label, action) pairs for the current state."""
        session = session_of(client)
        if session is None:
            return []
        entries: list[tuple[str, Callable[[], None]]] = []
        if self.locked is not None:
            entries.append(("Unlock keys\u2026", lambda: self.unlock(session)))
        entries.append(("Export keys\u2026", lambda: self.export_keys(session, "")))
        entries.append(("Import keys\u2026", lambda: self.import_keys(session, "")))
        return entries

    def unlock(self, session: E2ESession) -> None:
        """Unlock locked keys: type their passphrase (or choose one, when there is no
        key file yet); then settle them with the server as at login."""
        device = self.device
        if device is None or self.locked is None:
            self._app._note("Your end-to-end keys are not locked.", "notice")
            return
        try:
            protection = device.protection
        except E2EError as exc:
            self._app._note(f"End-to-end encryption: {exc}", "error")
            return
        client = session.client

        def unlocked(keys: AccountKeys | None, phrase: str | None) -> None:
            device.passphrase = phrase
            if keys is not None:
                session.unlock(keys)
            self.locked = None
            self._remember()
            self.close_dialog()
            self._app.e2e_keys_changed()
            self._app._note("Your end-to-end keys are unlocked.", "notice")
            self.settle(client)

        if protection == "keyring":
            self._job(
                "e2e-open",
                device.load,
                lambda keys: unlocked(keys, None),
            )
            return
        if protection is None:

            def probed(usable: bool, exc: BaseException | None) -> None:
                if usable and exc is None and not self._app.prefers_key_passphrase():
                    unlocked(None, None)
                    return
                self._open_dialog(
                    "create", client.nick, lambda phrase, _p: unlocked(None, phrase), self._gone
                )

            self._app.jobs.start("e2e-keyring", keyring_usable, probed)
            return

        def typed(phrase: str, _path: str) -> None:
            def checked(keys: AccountKeys | None, exc: BaseException | None) -> None:
                if exc is not None:
                    self._dialog_error(exc)
                else:
                    unlocked(keys, phrase)

            self._app.jobs.start("e2e-unlock", lambda: _read_keys(device.path, phrase), checked)

        self._open_dialog("unlock", client.nick, typed, self._gone)

    def export_keys(self, session: E2ESession, path: str) -> None:
        """Write the account's keys to a file protected by a passphrase (a dialog asks)."""
        keys = session.keys
        if keys is None:
            why = "unlock them first" if self.locked else "link it or import a key file first"
            self._app._note(f"This device has no end-to-end keys to export: {why}.", "error")
            return

        def typed(phrase: str, where: str) -> None:
            target = Path(os.path.expanduser(where))

            def work() -> None:
                data = encrypt_keys(keys, phrase)
                try:
                    write_private(target, data)
                except OSError as exc:
                    raise E2EError(f"cannot write {target}: {exc.strerror or exc}") from exc

            def done(_r: object, exc: BaseException | None) -> None:
                if exc is not None:
                    self._dialog_error(exc)
                    return
                self.close_dialog()
                self._app._note(
                    f"Keys written to {target}. Keep the file and its passphrase safe: "
                    "together they read your private messages.",
                    "notice",
                )

            self._app.jobs.start("e2e-export", work, done)

        self._open_dialog("export", session.client.nick, typed, self._gone, path)

    def import_keys(self, session: E2ESession, path: str) -> None:
        """Use the keys of an exported file on this device (a dialog asks its passphrase)."""
        device = self.device
        if device is None:
            return
        client = session.client
        locked = self.locked is not None
        prefers = self._app.prefers_key_passphrase()

        def typed(phrase: str, where: str) -> None:
            source = Path(os.path.expanduser(where))

            def work() -> bool:
                keys = _read_keys(source, phrase)
                # Keys kept by the keyring stay there; otherwise (no keyring, locked
                # keys, or a passphrase preferred) the file's passphrase protects
                # them here too. (Probing the keyring talks to D-Bus: here, off Tk.)
                with_file = device.passphrase is None and (
                    locked or prefers or not keyring_usable()
                )
                if with_file:
                    device.passphrase = phrase
                session.adopt(keys)  # saved on this device, then used
                return with_file

            def done(keep_with_file: bool, exc: BaseException | None) -> None:
                if exc is not None:
                    self._dialog_error(exc)
                    return
                self.locked = None
                self._remember()
                self.close_dialog()
                extra = (
                    " On this device they are protected by the file's passphrase."
                    if keep_with_file
                    else ""
                )
                self._app.e2e_keys_changed()
                self._app._note(f"Keys imported from {source}.{extra}", "notice")
                self.settle(client)

            self._app.jobs.start("e2e-import", work, done)

        self._open_dialog("import", client.nick, typed, self._gone, path)

    # --- helpers -----------------------------------------------------------------------------

    def _open_dialog(
        self,
        mode: str,
        account: str,
        on_submit: Callable[[str, str], None],
        on_cancel: Callable[[], None],
        path: str = "",
    ) -> None:
        self.close_dialog()
        master = self._app
        assert isinstance(master, tkinter.Misc)  # the App window
        self.dialog = KeyDialog(
            master, mode, account=account, on_submit=on_submit, on_cancel=on_cancel, path=path
        )

    def _gone(self) -> None:
        self.dialog = None

    def _dialog_error(self, exc: BaseException) -> None:
        dialog = self.dialog
        if dialog is None or dialog.closed:
            self._app._note(f"End-to-end encryption: {_why(exc)}", "error")
            return
        dialog.show_error(f"{_why(exc)[:1].upper()}{_why(exc)[1:]}. Try again.")

    def close_dialog(self) -> None:
        """Close the key dialog, if one is open (its cancel action does not run)."""
        dialog, self.dialog = self.dialog, None
        if dialog is not None:
            dialog.close()

    def _job(
        self,
        name: str,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        failed: str = "End-to-end encryption",
        where: str | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        def finished(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._app._note(f"{failed}: {_why(exc)}", "error", where)
                if on_failed is not None:
                    on_failed()
            else:
                done(result)

        self._app.jobs.start(name, work, finished)


def _read_keys(path: Path, passphrase: str) -> AccountKeys:
    """The keys in key file *path* under *passphrase* (E2EError: unreadable, wrong)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise E2EError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decrypt_keys(data, passphrase)


def _why(exc: BaseException) -> str:
    """An exception as the words of a note."""
    if isinstance(exc, E2EError):
        return str(exc)
    return f"it failed ({exc})"
