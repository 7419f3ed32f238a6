"""The steps from the Connect button to a logged-in
ChatClient: check the form, settle trust (CA file, pinned CA or certificate,
an invite's fingerprint, or ask the user on first use), log in on a worker
thread, explain failures.

The trust policy itself is written down in connect_policy.py; this module only
sequences it. It runs on the Tk thread; blocking steps go through Jobs.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from parley_chat.client import ChatClient, ProbedCertificate, probe_server_certificate
from parley_chat.client.tls import is_ca_certificate
from parley_chat.client.trust import anchor_for_invite, upgraded_pin

from ..settings import Pin, SettingsStore
from .connect_page import ConnectPage
from .connect_policy import ConnectForm, Problem, build_client, check_form, describe_failure
from .jobs import Jobs

#: Opens the end-to-end keys for a client before it connects: (client, data
#: folder, then) -> None; it calls *then* when the keys are settled (gui/e2e.py).
PrepareE2E = Callable[[ChatClient, Path, Callable[[], None]], None]


class ConnectFlow:
    """Drives the connect *page*. *on_form_used* (form) is called when a form is used, so
    the app can remember it; *on_logged_in* (client, form, pin) gets the client
    once connect() succeeded; *prepare_e2e* opens the end-to-end keys first."""

    def __init__(
        self,
        page: ConnectPage,
        store: SettingsStore,
        jobs: Jobs,
        *,
        on_form_used: Callable[[ConnectForm], None],
        on_logged_in: Callable[[ChatClient, ConnectForm, Pin | None], None],
        prepare_e2e: PrepareE2E | None = None,
    ) -> None:
        self._page = page
        self._store = store
        self._jobs = jobs
        self._on_form_used = on_form_used
        self._on_logged_in = on_logged_in
        self._prepare_e2e = prepare_e2e
        self._trusting: tuple[ConnectForm, ProbedCertificate] | None = None
        self._changed_pin: ConnectForm | None = None

    def connect(self, form: ConnectForm) -> None:
        """Check *form*, settle trust (CA file, pin, or ask), then log in."""
        problem = check_form(form)
        if problem is not None:
            self._page.show_problem(problem)
            return
        self._on_form_used(form)
        self._page.hide_panel()
        if form.uses_ca:
            self._login(form, None)
            return
        pin = self._store.get_pin(form.host, form.port)
        if pin is not None and is_ca_certificate(pin.pem):
            self._login(form, pin)
            return
        # A pinned server certificate (or none): fetch the certificates (display
        # only; nothing is sent), then migrate the pin, or settle first use.
        self._page.set_busy("Fetching the server's certificate\u2026")
        host, port = form.host, form.port

        def done(probed: ProbedCertificate | None, exc: BaseException | None) -> None:
            if pin is not None:
                self._login(form, self._migrated(form, pin, probed))
                return
            if exc is not None or probed is None:
                self._page.show_problem(
                    Problem(
                        f"Can't reach {form.where}",
                        f"{_reason(exc)}. Check the address and port, and that the server "
                        "is running.",
                    )
                )
                return
            if form.expected_fingerprint:
                self._trust_invite(form, probed)
                return
            self._trusting = (form, probed)
            self._page.show_trust_prompt(
                form.where, probed.anchor_fingerprint, ca=probed.anchor_is_ca
            )

        self._jobs.start("probe", lambda: probe_server_certificate(host, port), done)

    def _migrated(self, form: ConnectForm, pin: Pin, probed: ProbedCertificate | None) -> Pin:
        # A pinned server certificate becomes a pin of the CA that signed it
        # (client/trust.py, rule 3), so the next renewal is no longer a lockout.
        ca_pem = upgraded_pin(pin.pem, probed) if probed is not None else None
        if ca_pem is None or probed is None or probed.ca_fingerprint is None:
            return pin
        new = Pin(pem=ca_pem, fingerprint=probed.ca_fingerprint)
        self._store.forget_pin(form.host, form.port)
        self._store.set_pin(form.host, form.port, new)
        return new

    def _trust_invite(self, form: ConnectForm, probed: ProbedCertificate) -> None:
        # The invite names the fingerprint: no person needs to compare it.
        try:
            pem = anchor_for_invite(probed, form.expected_fingerprint, form.where)
        except Exception as exc:  # InviteMismatch: refused loudly, nothing pinned
            self._page.show_problem(describe_failure(exc, form))
            return
        pin = Pin(pem=pem, fingerprint=probed.anchor_fingerprint)
        try:
            self._store.set_pin(form.host, form.port, pin)
        except ValueError as exc:
            self._page.show_problem(Problem("Already pinned", str(exc)))
            return
        self._login(form, pin)

    def trust_accepted(self) -> None:
        """The user accepted the fingerprint shown: pin it (the CA, when the server
        sent one) and log in against the pin."""
        if self._trusting is None:
            return
        form, probed = self._trusting
        self._trusting = None
        pin = Pin(pem=probed.anchor_pem, fingerprint=probed.anchor_fingerprint)
        try:
            self._store.set_pin(form.host, form.port, pin)
        except ValueError as exc:  # a pin appeared meanwhile: never overwrite one
            self._page.show_problem(Problem("Already pinned", str(exc)))
            return
        self._login(form, pin)

    def cancel(self) -> None:
        """The user dismissed the panel (trust prompt or warning)."""
        self._trusting = None
        self._changed_pin = None
        self._page.hide_panel()
        self._page.set_busy(None)

    def forget_pin(self) -> None:
        """After a changed-certificate warning: remove the old pin (and trust nothing yet)."""
        form = self._changed_pin
        self._changed_pin = None
        if form is None:
            return
        self._store.forget_pin(form.host, form.port)
        self._page.show_problem(
            Problem(
                "The old certificate is forgotten",
                "Press Connect to see the new fingerprint. Trust it only if it matches the "
                "one the server's operator gives you.",
                severity="info",
            )
        )

    def _login(self, form: ConnectForm, pin: Pin | None) -> None:
        last_seen = self._store.get_last_seen(form.host, form.port, form.nick)
        try:
            client = build_client(form, pin=pin, last_seen=last_seen)
        except Exception as exc:  # TrustStoreError, ValueError: bad input, nothing sent
            self._page.show_problem(describe_failure(exc, form, pin))
            return
        if self._prepare_e2e is None:
            self._connect(client, form, pin)
            return
        # Before connecting, so the replay of encrypted messages is decrypted.
        self._page.set_busy("Opening your end-to-end keys\u2026")
        self._prepare_e2e(
            client, self._store.data_directory, lambda: self._connect(client, form, pin)
        )

    def _connect(self, client: ChatClient, form: ConnectForm, pin: Pin | None) -> None:
        self._page.set_busy("Connecting\u2026")

        def done(_result: object, exc: BaseException | None) -> None:
            if exc is not None:
                problem = describe_failure(exc, form, pin)
                if problem.severity == "danger":
                    self._changed_pin = form
                self._page.show_problem(problem)
                return
            self._page.set_busy(None)
            self._page.hide_panel()
            self._on_logged_in(client, form, pin)

        self._jobs.start("connect", client.connect, done)


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) if exc else "no answer"
