"""The terminal client's end-to-end encryption: its commands and what it prints.

cli.py hands private messages, searches and E2E events to TerminalE2E; the
commands (/link, /safety, /trust, /keys) are listed in docs/cli.md. Status and
warnings go to stderr like every other status line; decrypted messages go to
stdout like any message.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from parley_chat.protocol import LocalProtocolError, Message, fold

from .crypto import E2EError, group_digits
from .files import PASSPHRASE_ENV, DeviceKeys
from .keystore import decrypt_keys, encrypt_keys, write_private
from .pins import KeyChanged
from .session import E2ENotice, E2ESession, NoPeerKeys

#: The passphrase of an exported key file, for scripts (else asked on a terminal).
EXPORT_PASSPHRASE_ENV = "PARLEY_EXPORT_PASSPHRASE"

HELP = """\
End-to-end encryption (private messages; docs/security.md):
  /safety NICK        the safety number to compare with NICK in person
  /trust NICK         accept NICK's new key after a key-change warning
  /link               on a new device: show a code to type on a device with your keys
  /link CODE          on the device with your keys: check CODE, show the comparison code
  /link yes           ... then, if both screens show the same code: send the keys over
  /keys export FILE   write your keys to FILE, protected by a passphrase
  /keys import FILE   use the keys in an exported FILE on this device"""


def key_passphrase(
    env: Mapping[str, str],
    stdin: TextIO,
    use_keyring: bool,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str | None:
    """The key passphrase: PARLEY_KEY_PASSPHRASE, else asked on a terminal; None: the keyring.

    Raises E2EError when there is no way to protect the keys (a script without
    the variable and without --keyring, or no answer at the prompt).
    """
    if env.get(PASSPHRASE_ENV):
        return env[PASSPHRASE_ENV]
    if use_keyring:
        return None
    how = f"set {PASSPHRASE_ENV}, or run with --keyring, to protect the keys at rest"
    if stdin.isatty():
        try:
            phrase = prompt("passphrase for your end-to-end keys on this device: ")
        except (EOFError, KeyboardInterrupt, OSError) as exc:
            raise E2EError(f"no passphrase given ({how})") from exc
        if not phrase:
            raise E2EError(f"no passphrase given ({how})")
        return phrase
    raise E2EError(how)


class TerminalE2E:
    """End-to-end encryption as the terminal client shows and drives it."""

    def __init__(
        self,
        session: E2ESession,
        device: DeviceKeys,
        out: Callable[[str], None],
        err: Callable[[str], None],
        env: Mapping[str, str],
        stdin: TextIO,
    ) -> None:
        self.session = session
        self.device = device
        self._out = out
        self._err = err
        self._env = env
        self._stdin = stdin
        self._told: set[str] = set()  # peers already told they have no keys
        self._link_code: str | None = None

    def settle(self) -> None:
        """After login: settle the keys with the server and say where things stand."""
        try:
            state = self.session.start()
        except E2EError as exc:
            if self.session.keys is None:
                self.session.detach()  # no keys to use: plain private messages, said once here
            self._err(f"end-to-end encryption is off on this device: {exc}")
            return
        if state in ("published", "ready"):
            self._err("end-to-end encryption: on for private messages to users who have keys")
        elif state == "unlinked":
            self._err(
                "end-to-end encryption: this device has no keys yet; your account has them on "
                "another device. Type /link here and follow it (or /keys import FILE)."
            )
        else:
            self._err(
                "end-to-end encryption: the server holds OTHER keys for your account than "
                "this device. Private messages to users with keys are not sent until that is "
                "sorted out (link this device again, or import your key file)."
            )

    # --- sending ----------------------------------------------------------------------------

    def send_private(self, nick: str, text: str, send_plain: Callable[[], object]) -> None:
        """Send *text* to *nick*: encrypted when both have keys; otherwise say why."""
        if not self.session.attached:
            send_plain()
            return
        try:
            self.session.send_private(nick, text)
            return
        except KeyChanged as exc:
            self._err(f"NOT SENT: {exc}  (/safety {nick}, then /trust {nick})")
            return
        except NoPeerKeys as exc:
            if fold(nick) not in self._told:
                self._told.add(fold(nick))
                self._err(f"note: {exc}")
        except E2EError as exc:
            # No keys on this device yet, a conflict, no answer: never silently plain.
            self._err(f"not sent: {exc}")
            return
        send_plain()

    def search(self, words: str, show: Callable[[Message], str]) -> None:
        """Print the local hits (encrypted messages only this device can search)."""
        hits = self.session.search_local(words)
        if hits:
            self._err(f"-- on this device: {len(hits)} end-to-end encrypted message(s) --")
            for message in hits:
                self._out(show(message))

    def notice(self, event: E2ENotice) -> None:
        """Print an E2E event."""
        self._err(event.text)

    # --- commands ---------------------------------------------------------------------------

    def command(self, name: str, arg: str) -> bool:
        """Run /safety, /trust, /link or /keys; False if *name* is none of them."""
        handler = {
            "safety": self._safety,
            "trust": self._trust,
            "link": self._link,
            "keys": self._keys,
        }.get(name)
        if handler is None:
            return False
        try:
            handler(arg)
        except E2EError as exc:
            self._err(f"error: {exc}")
        except LocalProtocolError as exc:  # an argument no frame can carry
            self._err(f"error: {exc.message}")
        return True

    def _safety(self, arg: str) -> None:
        if not arg:
            self._err("usage: /safety NICK")
            return
        number = self.session.safety_number(arg)
        self._err(f"safety number with {arg}: {group_digits(number)}")
        self._err("compare it with theirs in person or on a call: the same digits, no one between")

    def _trust(self, arg: str) -> None:
        if not arg:
            self._err("usage: /trust NICK")
            return
        keys = self.session.accept(arg)
        self._err(f"{arg}'s key {keys.fingerprint()} is trusted now")

    def _link(self, arg: str) -> None:
        if not arg:
            start = self.session.start_link()
            self._err(f"on a device that has your keys, type:  /link {start.code}")
            self._err(f"then check that it shows the same comparison code: {start.comparison}")
            return
        if arg.lower() == "yes":
            if self._link_code is None:
                self._err("type /link CODE first (the code the new device shows)")
                return
            self.session.confirm_link(self._link_code)
            self._link_code = None
            self._err("keys sent to the new device")
            return
        comparison = self.session.fetch_link(arg)
        self._link_code = arg
        self._err(f"comparison code: {comparison}")
        self._err("if the new device shows the same code, type /link yes (otherwise do nothing)")

    def _keys(self, arg: str) -> None:
        what, _, name = arg.partition(" ")
        if what not in ("export", "import") or not name.strip():
            self._err("usage: /keys export FILE | /keys import FILE")
            return
        path = Path(os.path.expanduser(name.strip()))
        # What can fail without the passphrase is checked before asking for it.
        if what == "export":
            keys = self.session.keys
            if keys is None:
                raise E2EError("this device has no keys to export")
            sealed = encrypt_keys(keys, self._export_passphrase(what))
            try:
                write_private(path, sealed)
            except OSError as exc:
                raise E2EError(f"cannot write {path}: {exc.strerror or exc}") from exc
            self._err(f"keys written to {path}; keep it and its passphrase safe")
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise E2EError(f"cannot read {path}: {exc.strerror}") from exc
        keys = decrypt_keys(data, self._export_passphrase(what))
        self.session.adopt(keys)
        self._err(f"keys imported from {path}")
        self.settle()

    def _export_passphrase(self, what: str) -> str:
        if self._env.get(EXPORT_PASSPHRASE_ENV):
            return self._env[EXPORT_PASSPHRASE_ENV]
        if self._stdin.isatty():
            phrase = getpass.getpass(f"passphrase of the key file to {what}: ")
            if phrase:
                return phrase
        raise E2EError(
            f"give the key file's passphrase (on a terminal, or {EXPORT_PASSPHRASE_ENV})"
        )
