"""The one place a client-side ssl.SSLContext is built, and the
certificate probe used to SHOW a person which certificate a server offers.

Rules this module keeps:
1. Every context verifies the server's certificate and its host name. There
   is no verify=False path for connections that carry credentials or chat.
2. The trust anchor is exactly one thing: the CA file the certs script made,
   or (trust on first use, as SSH does) one pinned certificate: the server's
   local CA, which the server sends after its own certificate, or (older pins,
   servers without a CA) the server's certificate itself. The system's CA
   store is never consulted: a LAN chat server is not on the web PKI.
3. probe_server_certificate() is the only unverified connection, and it sends
   no application data at all: it fetches the certificates to display their
   fingerprints and hangs up.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from parley_chat.certs import fingerprint_sha256

from .errors import TrustStoreError


def client_context(
    ca_file: Path | str | None = None, pinned_cert_pem: str | None = None
) -> ssl.SSLContext:
    """A TLS client context that trusts *ca_file* or exactly *pinned_cert_pem*.

    Exactly one of the two must be given (ValueError otherwise). The context
    requires TLS 1.2 or later, a certificate that verifies, and a host name
    that matches it. Raises TrustStoreError when the anchor cannot be loaded.
    """
    if (ca_file is None) == (pinned_cert_pem is None):
        raise ValueError("give exactly one of ca_file or pinned_cert_pem")
    # PROTOCOL_TLS_CLIENT already sets check_hostname=True and CERT_REQUIRED;
    # they are set again below so the guarantees are visible here.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Offer P-256 first: a parley server accepts only P-256 (Mozilla
    # "intermediate" on Python 3.11, server/tls.py), so a client that led with
    # X25519 would pay a HelloRetryRequest, one more round trip per connect.
    ctx.set_ecdh_curve("prime256v1")
    try:
        if ca_file is not None:
            ctx.load_verify_locations(cafile=str(ca_file))
        else:
            ctx.load_verify_locations(cadata=pinned_cert_pem)
            # The pin is the server's CA, or (older pins) the server's own
            # certificate. PARTIAL_CHAIN lets a trusted non-self-signed
            # certificate in the store end the chain, so such a leaf anchors
            # itself; the host name is still checked either way.
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    except FileNotFoundError as exc:
        raise TrustStoreError(f"the CA file {ca_file} does not exist") from exc
    except OSError as exc:
        raise TrustStoreError(f"cannot read the CA file {ca_file}: {exc.strerror}") from exc
    except (ssl.SSLError, ValueError) as exc:
        what = f"the CA file {ca_file}" if ca_file is not None else "the pinned certificate"
        raise TrustStoreError(f"{what} is not a valid PEM certificate: {exc}") from exc
    return ctx


@dataclass(frozen=True, slots=True)
class ProbedCertificate:
    """Certificates as a server offered them, UNVERIFIED: for display and pinning by a person.

    `pem`/`fingerprint` are the server's own certificate; `ca_pem`/`ca_fingerprint`
    the CA certificate it sent along, when one came and it did sign the server's
    (None otherwise: an older server, or a certs directory without ca.pem).
    """

    pem: str
    fingerprint: str
    ca_pem: str | None = None
    ca_fingerprint: str | None = None

    @property
    def anchor_pem(self) -> str:
        """What trust on first use pins: the CA when the server sent it, else its certificate."""
        return self.ca_pem or self.pem

    @property
    def anchor_fingerprint(self) -> str:
        """The SHA-256 of anchor_pem (64 lowercase hex digits)."""
        return self.ca_fingerprint or self.fingerprint

    @property
    def anchor_is_ca(self) -> bool:
        """True when the anchor is the server's CA (a renewal keeps it trusted)."""
        return self.ca_pem is not None


def is_ca_certificate(pem: str) -> bool:
    """True when *pem* is a CA certificate (basic constraints CA:TRUE); False for a
    server certificate or anything unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (ValueError, x509.ExtensionNotFound):
        return False


def issued_by(cert_pem: str, ca_pem: str) -> bool:
    """True when the CA certificate *ca_pem* signed *cert_pem* (names and signature).

    Says nothing about validity dates or host names: it links two certificates,
    e.g. a server certificate pinned earlier and the CA a server sends now.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return is_ca_certificate(ca_pem)


def _offered_chain(sock: ssl.SSLSocket) -> list[bytes]:
    # The certificates the peer sent, unverified, as DER. Python 3.13 has the
    # public method; 3.11 and 3.12 have the same one on the C object only.
    public = getattr(sock, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public()]
    private = sock._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in private or []]  # type: ignore[attr-defined]


def probe_server_certificate(host: str, port: int, timeout: float = 5.0) -> ProbedCertificate:
    """Fetch the certificates *host*:*port* offers, WITHOUT verifying them.

    WARNING: the result proves nothing about who the server is. It exists only
    so a person can compare the fingerprint with the one the server's operator
    printed, and then choose to pin it (client_context(pinned_cert_pem=...)).
    The probe carries no credentials and sends no application data: it does the
    TLS handshake, reads the offered certificate and closes. Never use it to
    decide to trust a server by itself.

    Raises OSError / ssl.SSLError / TimeoutError when no handshake is possible.
    """
    # An unverified context, used for this read-only handshake and nothing else.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
        try:
            chain = _offered_chain(sock)
        except (AttributeError, ssl.SSLError, ValueError):
            chain = []
    if not der:
        raise ssl.SSLError("the server offered no certificate")
    pem = ssl.DER_cert_to_PEM_cert(der)
    for extra in chain[1:]:
        ca_pem = ssl.DER_cert_to_PEM_cert(extra)
        if issued_by(pem, ca_pem):
            return ProbedCertificate(
                pem, fingerprint_sha256(der), ca_pem, fingerprint_sha256(extra)
            )
    return ProbedCertificate(pem=pem, fingerprint=fingerprint_sha256(der))
