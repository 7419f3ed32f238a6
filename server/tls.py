"""The one place the server builds an ssl.SSLContext.

Every departure from Python's defaults carries its reason. The result is
Mozilla "intermediate" compliant with the <= 365-day certificate the certs
script makes; tests/server/test_tls_profile.py runs sslyze against a real
server to keep it so (the profile, and why P-256 only: docs/decisions.md,
"TLS profile").
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from .config import ServerConfig
from .errors import CertificateMissing


def server_context(cfg: ServerConfig) -> ssl.SSLContext:
    """A TLS server context for *cfg*'s certificate. Raises CertificateMissing."""
    # Purpose.CLIENT_AUTH gives a server-side context with Python's secure defaults.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Python 3.10+ already defaults to 1.2; set it anyway so the floor is explicit here.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2 suites: forward secret AEAD only (drops the CBC suites sslyze flags).
    # TLS 1.3 suites are not affected by set_ciphers and are all AEAD.
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    # Client-initiated renegotiation is a DoS lever and nothing here needs it.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    # Key exchange groups. OpenSSL 3.0's default list adds X448 and secp521r1 to
    # the profile's X25519, P-256 and P-384, and sslyze fails the profile on them.
    # Python 3.11 can set only ONE group (set_ecdh_curve; SSLContext.set_groups
    # arrives in 3.15), for TLS 1.2 and 1.3 alike. P-256 it is: our certificate
    # is ECDSA P-256, so every client able to verify it implements P-256, and
    # TLS 1.3 makes P-256 mandatory (RFC 8446 section 9.1). Cost: a TLS 1.3
    # client that guesses an X25519 key share (OpenSSL's default) gets one
    # HelloRetryRequest, about 0.2 ms of CPU plus one round trip per connection.
    ctx.set_ecdh_curve("prime256v1")
    # No TLS 1.3 session tickets: they go out as extra records after the handshake
    # and cost a login ~35 ms on a 2-core machine; clients here do not resume TLS.
    ctx.num_tickets = 0
    try:
        _load_chain(ctx, cfg.cert_file, cfg.ca_file, cfg.key_file)
    except (FileNotFoundError, PermissionError) as exc:
        raise CertificateMissing(
            f"cannot read the server certificate {cfg.cert_file} / key {cfg.key_file}: "
            f"{exc.strerror}. Create them with: parley-certs --out {cfg.certs_dir}"
        ) from exc
    except ssl.SSLError as exc:
        raise CertificateMissing(
            f"the certificate {cfg.cert_file} and key {cfg.key_file} do not form a valid pair: {exc}"
        ) from exc
    return ctx


def served_chain(cert_file: Path, ca_file: Path) -> bytes:
    """The PEM chain the server sends: its certificate, then the CA that signed it.

    The CA goes along so a client trusting on first use can pin the CA instead
    of this short-lived certificate: after `certs --renew` it still verifies
    (docs/decisions.md, "Trust on first use pins the CA"). A server.pem that
    already holds the CA, or a certs directory without ca.pem, is served as it is.
    """
    chain = cert_file.read_bytes()
    try:
        ca = ca_file.read_bytes()
    except FileNotFoundError:
        return chain
    if ca.strip() and ca.strip() not in chain:
        chain = chain.rstrip() + b"\n" + ca.strip() + b"\n"
    return chain


def _load_chain(ctx: ssl.SSLContext, cert_file: Path, ca_file: Path, key_file: Path) -> None:
    # load_cert_chain reads files only, so the chain goes through a private temp
    # file (deleted at once); the certificates in it are public anyway.
    chain = served_chain(cert_file, ca_file)
    fd, tmp = tempfile.mkstemp(prefix="parley-chain-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain)
        ctx.load_cert_chain(certfile=tmp, keyfile=key_file)
    finally:
        os.unlink(tmp)


def accepted_versions(ctx: ssl.SSLContext) -> list[str]:
    """Human names of the TLS versions *ctx* accepts, e.g. ['TLS 1.2', 'TLS 1.3']."""
    names = {
        ssl.TLSVersion.TLSv1_2: "TLS 1.2",
        ssl.TLSVersion.TLSv1_3: "TLS 1.3",
    }
    low = ctx.minimum_version
    high = ctx.maximum_version
    out = []
    for version, name in names.items():
        if (low == ssl.TLSVersion.MINIMUM_SUPPORTED or version >= low) and (
            high == ssl.TLSVersion.MAXIMUM_SUPPORTED or version <= high
        ):
            out.append(name)
    return out
