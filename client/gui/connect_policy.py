"""What the connect form asks for, how the server is
trusted, and what each failure tells the user to do. No Tk.

Trust, in the order it is decided:
1. A CA file in the form: the server must present a certificate it signed,
   for the host name typed (client/tls.py). Nothing else is consulted.
2. No CA file, and a certificate pinned for this host and port: the server
   must present a certificate the pin vouches for. The pin is the server's
   local CA (so a renewed server certificate is still trusted), or for pins
   older clients made, the server certificate itself, replaced by its CA as
   soon as the server sends that CA (client/trust.py). A server the pin does
   not vouch for is refused, loudly, and never re-pinned without the user
   explicitly forgetting the old pin.
3. No CA file and no pin (first use, as SSH does): the app fetches the
   certificates with the display-only probe. With an invite, the fingerprint
   it names decides, and a mismatch is refused loudly; without one the app
   shows the CA's short fingerprint and pins it only if the user accepts.
   The real connection then verifies against that pin, so a server that
   swaps certificates between the probe and the login is refused too.
Credentials are only ever sent on a connection that passed one of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parley_chat.certs import short_fingerprint
from parley_chat.client import (
    CertificateExpired,
    CertificateNotTrusted,
    ChatClient,
    ConnectionLost,
    HostnameMismatch,
    InviteMismatch,
    LoginRefused,
    ServerUnreachable,
    TrustStoreError,
)
from parley_chat.protocol import MAX_PASSWORD_CHARS, valid_nick

from ..addresses import Address, format_addresses, parse_addresses
from ..settings import Pin

#: The name the desktop client gives the server in `hello`.
CLIENT_NAME = "parley-desktop"


@dataclass(frozen=True, slots=True)
class ConnectForm:
    """The connect form's values. `ca_file` empty means trust on first use;
    `expected_fingerprint` (hex) comes from a pasted invite and settles it.

    `servers` is the Server field as typed when it names servers with their
    ports (`host:port,host2:port2`, for failover: client/addresses.py), else
    empty; `host` and `port` are then the first of them, which the pin, the
    probe and the remembered last message belong to (all share one CA).
    """

    host: str
    port: int
    ca_file: str
    nick: str
    password: str
    register: bool = False
    expected_fingerprint: str = ""
    servers: str = ""

    @property
    def addresses(self) -> list[Address]:
        """Every server to try, in order. Raises ValueError for a list that does not parse."""
        if not self.servers:
            return [(self.host.strip(), self.port)]
        return parse_addresses(self.servers, self.port)

    @property
    def uses_ca(self) -> bool:
        """True when a CA file decides trust (else the pinned certificate does)."""
        return bool(self.ca_file.strip())

    @property
    def where(self) -> str:
        """host:port (or every server of the list), for messages."""
        if self.servers:
            try:
                return format_addresses(self.addresses)
            except ValueError:
                return self.servers
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Problem:
    """A failure explained for people: what went wrong and what to do.

    `severity` is "error" for ordinary failures, "danger" for a changed
    certificate (shown as a loud warning) and "info" for advice that is no failure. `fingerprint` is the SHA-256 of the
    certificate the server offered, when that matters.
    """

    title: str
    detail: str
    fingerprint: str | None = None
    severity: str = "error"
    pinned_fingerprint: str | None = None


def check_form(form: ConnectForm) -> Problem | None:
    """A Problem when the form cannot be used as it is, else None."""
    if not form.host.strip():
        return Problem(
            "Enter the server's address", "Type the host name or IP address of the server."
        )
    try:
        form.addresses  # noqa: B018 (parsed only to check it)
    except ValueError as exc:
        return Problem(
            "Check the server addresses",
            f"{_sentence(str(exc))} Several servers go as host:port,host2:port2.",
        )
    if not 0 < form.port < 65536:
        return Problem("Check the port", "The port is a number from 1 to 65535 (parley uses 5555).")
    if not valid_nick(form.nick):
        return Problem(
            "Choose a valid nick",
            "A nick is 1 to 24 letters, digits, '_' or '-', with no spaces.",
        )
    if not form.password:
        return Problem("Enter your password", "The password of your account (or of the new one).")
    if len(form.password) > MAX_PASSWORD_CHARS:
        return Problem(
            "Check the password", f"A password is at most {MAX_PASSWORD_CHARS} characters."
        )
    if form.uses_ca and not Path(form.ca_file).expanduser().is_file():
        return Problem(
            "CA file not found",
            f"There is no file at {form.ca_file}. Choose the ca.pem the server's operator gave "
            "you, or clear the field to check the server's fingerprint yourself (trust on first use).",
        )
    return None


#: The CA file a fresh client's settings name (Settings.ca_file's default).
DEFAULT_CA_FILE = "certs/ca.pem"


def initial_ca_file(remembered: str) -> str:
    """The CA field's value on opening: the remembered file, except that the
    built-in default is left out when no such file exists, so a fresh client
    takes the trust-on-first-use path instead of failing with "CA file not found"."""
    if remembered == DEFAULT_CA_FILE and not Path(remembered).is_file():
        return ""
    return remembered


def build_client(form: ConnectForm, *, pin: Pin | None, last_seen: int | None) -> ChatClient:
    """A ChatClient for *form*, trusting its CA file or else *pin* (one is required)."""
    if form.uses_ca:
        trust: dict[str, object] = {"ca_file": Path(form.ca_file).expanduser()}
    elif pin is not None:
        trust = {"pinned_cert_pem": pin.pem}
    else:
        raise ValueError("no CA file and no pinned certificate: nothing to trust")
    return ChatClient(
        form.addresses,
        nick=form.nick,
        password=form.password,
        register=form.register,
        last_seen=last_seen,
        client_name=CLIENT_NAME,
        **trust,  # type: ignore[arg-type]
    )


def format_fingerprint(fingerprint: str) -> str:
    """A SHA-256 fingerprint on two lines of 32 hex digits, as the server prints it
    but split so it fits a dialog (whitespace aside, the same characters)."""
    return f"{fingerprint[:32]}\n{fingerprint[32:]}"


def format_short_fingerprint(fingerprint: str) -> str:
    """The grouped short form the server prints at start ("7604 b0da ... 2725")."""
    return short_fingerprint(fingerprint)


def describe_failure(exc: BaseException, form: ConnectForm, pin: Pin | None = None) -> Problem:
    """What a failed connect means for the user, and what they can do about it."""
    if isinstance(exc, ServerUnreachable):
        return Problem(
            f"Can't reach {form.where}",
            f"{_sentence(plain_reason(str(exc), 'the server did not answer'))} Check the "
            "address and port, that the server is running, and that no firewall is in the way.",
        )
    if isinstance(exc, HostnameMismatch):
        return Problem(
            "The certificate is for another name",
            f"The server's certificate is valid but does not name \u201c{form.host}\u201d. "
            "Connect with a name or address the certificate covers, or ask the operator to "
            f"reissue it with --san {form.host}. Nothing was sent.",
            fingerprint=exc.fingerprint,
        )
    if isinstance(exc, InviteMismatch):
        return Problem(
            "WARNING: this is not the server in the invite",
            f"{form.where} offered a certificate other than the one the invite names. "
            "Someone may be intercepting the connection, or the invite is out of date. The "
            "connection was refused and nothing was sent. Ask the server's operator for a "
            "new invite (parley-server invite).",
            fingerprint=exc.anchor_fingerprint,
            severity="danger",
            pinned_fingerprint=form.expected_fingerprint or None,
        )
    if isinstance(exc, CertificateExpired):
        return Problem(
            "The server's certificate has expired",
            f"{exc}. Ask the server's operator to renew it; you will not need to trust "
            "the server again.",
        )
    if isinstance(exc, CertificateNotTrusted):
        if not form.uses_ca and pin is not None:
            return Problem(
                "WARNING: the server's certificate has changed",
                f"{form.where} presented a certificate from a new CA, not the one you "
                "trusted before. Someone may be intercepting the connection, "
                "or the operator replaced the CA (a renewal alone never does this). The "
                "connection was refused and nothing was sent. Ask the operator which "
                "fingerprint the server prints at start; only if it matches the new one, "
                "forget the old pin and connect again.",
                fingerprint=exc.anchor_fingerprint,
                severity="danger",
                pinned_fingerprint=pin.fingerprint,
            )
        return Problem(
            "The server's certificate is not trusted",
            "It is not signed by the CA file you chose, so nothing was sent (not even your "
            "password). Get the server's ca.pem from its operator, or clear the CA field and "
            "compare this fingerprint with the one the server printed at start.",
            fingerprint=exc.fingerprint,
        )
    if isinstance(exc, TrustStoreError):
        return Problem(
            "Can't use the CA file",
            f"{exc}. Choose the ca.pem the server's operator gave you, or clear the field to "
            "trust the server on first use.",
        )
    if isinstance(exc, LoginRefused):
        return _login_problem(exc, form)
    if isinstance(exc, ConnectionLost):
        return Problem(
            "The connection broke while logging in",
            f"{_sentence(plain_reason(str(exc)))} Try again; if it keeps happening, the server "
            "may be overloaded or not a parley server.",
        )
    if isinstance(exc, OSError):
        return Problem(
            f"Can't reach {form.where}",
            f"{_sentence(plain_reason(exc.strerror or str(exc), 'the server did not answer'))} "
            "Check the address and port and that the server is running.",
        )
    return Problem("Could not connect", _sentence(plain_reason(str(exc))))


def _sentence(words: str) -> str:
    """*words* as a sentence: capital first letter, full stop."""
    words = words.strip().rstrip(".")
    return f"{words[:1].upper()}{words[1:]}." if words else ""


def _login_problem(exc: LoginRefused, form: ConnectForm) -> Problem:
    nick = form.nick
    code = exc.code
    if code == "auth-failed":
        return Problem(
            "Wrong password",
            f"The password for {nick} is not right. Check it and try again (after 5 wrong "
            "tries the server makes you wait a few minutes).",
        )
    if code == "nick-taken":
        return Problem(
            f"The nick {nick} is taken",
            "Someone already has an account with that nick. Choose another nick, or if the "
            "account is yours, enter its password.",
        )
    if code == "registration-closed":
        return Problem(
            "Registration is closed",
            "This server does not accept new accounts. Log in with an existing account, or "
            "ask the operator to create one for you.",
        )
    if code == "no-such-account":
        return Problem(
            f"There is no account named {nick}",
            "Tick \u201cCreate account\u201d to register this nick, or check its spelling.",
        )
    if code == "throttled":
        return Problem(
            "Too many wrong passwords",
            "The server is refusing more attempts for a few minutes. Wait, then try again "
            "with the right password.",
        )
    if code == "bad-nick":
        return Problem("The server refused this nick", exc.message)
    if code in ("shutdown", "too-many-connections", "timeout", "internal"):
        return Problem("The server is busy", f"{exc.message}. Try again in a moment.")
    return Problem("The server refused the login", exc.message)


#: How the client library's disconnect reasons read to a user: (fragment in the
#: reason, lower case) -> plain words. First match wins.
_PLAIN_REASONS = (
    ("login refused", ""),  # the login failure's own words follow the colon
    ("certificate", ""),  # trust failures are already written for people
    ("shutdown", "the server is shutting down or restarting"),
    ("server-shutdown", "the server is shutting down or restarting"),
    ("timeout", "the server stopped answering"),
    ("timed out", "the server stopped answering"),
    ("flood", "too many messages too fast: the server closed the connection"),
    ("refused", "the server refused the connection"),
    ("unreachable", "the server can't be reached"),
    ("no route", "the server can't be reached"),
    ("name or service", "the server's name can't be found"),
)


def plain_reason(reason: str, default: str = "the connection was cut") -> str:
    """A disconnect *reason* from the client library in plain words, without raw
    OpenSSL or exception text: "EOF occurred in violation of protocol
    (_ssl.c:2427)" reads "the connection was cut" (or *default*)."""
    low = reason.lower()
    for fragment, words in _PLAIN_REASONS:
        if fragment in low:
            if words:
                return words
            if fragment == "login refused":
                return reason.split(":", 1)[-1].strip() or "the server refused the login"
            return reason
    if not reason or any(
        raw in low
        for raw in ("ssl", "eof", "errno", "reset", "broken pipe", "socket", "error", "(", "_")
    ):
        return default
    return reason
