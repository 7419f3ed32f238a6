"""The client library's exceptions. Each one says whose fault
a failure is, so a user interface can tell a person what to do about it.

Exception hierarchy:

* ClientError                   base; also raised for misuse (connect() twice)
  x TrustStoreError             the CA file or pinned certificate cannot be loaded (our setup)
  x ServerUnreachable           connect refused, timed out, or the name does not resolve (network)
  x TLSVerificationFailed       the server could not prove who it is (never retried silently)
    + CertificateNotTrusted     its certificate is not signed by the CA we trust (or not the pinned one)
      + CertificateExpired      ... because it has expired (or is not valid yet): the operator renews it
      + InviteMismatch          its certificates are not the one the invite names
    + HostnameMismatch          its certificate is valid but for another name
  x LoginRefused                the server refused the hello: `.code` is a protocol ErrorCode value
  x ConnectionLost              the connection broke after it was made (network or server)

Socket-level exceptions (OSError, ssl.SSLError, TimeoutError) are translated into
these only at the socket boundary in client/connection.py, always with
`raise ... from exc` so the original cause stays visible.
"""

from __future__ import annotations

#: Login error codes that are about this server's state right now, not about
#: the credentials: a reconnect loop keeps trying after these.
TRANSIENT_LOGIN_CODES = frozenset(
    {"shutdown", "too-many-connections", "timeout", "internal", "store-failed"}
)


class ClientError(Exception):
    """Base of the client library's exceptions."""


class TrustStoreError(ClientError):
    """The CA file or the pinned certificate could not be read or parsed."""


class ServerUnreachable(ClientError):
    """No TCP connection (and TLS handshake) could be made: refused, timed out, or DNS failed."""


class TLSVerificationFailed(ClientError):
    """The server's certificate was rejected. Nothing was sent to that server.

    `fingerprint` is the SHA-256 (64 lowercase hex digits) of the certificate the
    server offered, fetched by a separate unverified probe purely so a person can
    compare it with the one the operator printed; None if the probe failed.
    `anchor_fingerprint` is the same for what trust on first use would pin from
    that server: the CA it sent along, else its certificate (client/trust.py).
    """

    def __init__(
        self,
        message: str,
        fingerprint: str | None = None,
        anchor_fingerprint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.anchor_fingerprint = anchor_fingerprint or fingerprint


class CertificateNotTrusted(TLSVerificationFailed):
    """The server's certificate does not chain to the trusted CA (or is not the pinned one)."""


class CertificateExpired(CertificateNotTrusted):
    """The server's certificate is signed by the trusted CA but is outside its validity dates."""


class InviteMismatch(CertificateNotTrusted):
    """On first use, the server offered no certificate with the fingerprint its invite names."""


class HostnameMismatch(TLSVerificationFailed):
    """The server's certificate is trusted but does not name the host we connected to."""


class LoginRefused(ClientError):
    """The server answered `hello` with an `error`. `code` is a protocol.ErrorCode value
    (auth-failed, nick-taken, registration-closed, no-such-account, throttled,
    bad-token, ...); `message` is the server's explanation for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        """True when the refusal is about the server's state (shutting down, overloaded),
        so trying again later may succeed with the same credentials."""
        return self.code in TRANSIENT_LOGIN_CODES


class ConnectionLost(ClientError):
    """The connection broke after it was established (or during the login exchange)."""
