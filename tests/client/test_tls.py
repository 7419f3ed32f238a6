# Tests of client/tls.py and of how ChatClient uses it against a real server:
# the context's guarantees, the display-only probe, CA trust, trust on first
# use (pinning), and that a refused server never receives a hello.

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import socket
import sqlite3
import ssl
import threading
import warnings
from pathlib import Path

import pytest

from parley_chat.certs import generate
from parley_chat.client import (
    CertificateNotTrusted,
    ChatClient,
    Connected,
    ConnectionLost,
    HostnameMismatch,
    ServerUnreachable,
    TrustStoreError,
    client_context,
    fingerprint_sha256,
    probe_server_certificate,
)

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


def leaf_pem(chain_file: Path) -> str:
    """The first certificate (the server's own) of a PEM chain file."""
    match = _PEM_BLOCK.search(chain_file.read_text())
    assert match is not None
    return match.group(0)


def leaf_fingerprint(chain_file: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf_pem(chain_file))).hexdigest()


def count_rows(server, table: str) -> int:
    con = sqlite3.connect(str(server.store.database_path))
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA and server certificate."""
    out = tmp_path_factory.mktemp("other-certs")
    generate(out)
    return out


# --- the context -----------------------------------------------------------------------


def test_context_needs_exactly_one_trust_anchor(ca_file):
    with pytest.raises(ValueError):
        client_context()
    with pytest.raises(ValueError):
        client_context(ca_file, ca_file.read_text())


def test_ca_context_verifies_certificate_and_hostname(ca_file):
    ctx = client_context(ca_file)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    # Only our CA is trusted, never the system store.
    assert len(ctx.get_ca_certs()) == 1


def test_pinned_context_anchors_on_the_leaf_and_still_checks_the_hostname(certs_dir):
    ctx = client_context(pinned_cert_pem=leaf_pem(certs_dir / "server.pem"))
    assert ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True


def test_unreadable_trust_anchors_raise_trust_store_error(tmp_path):
    with pytest.raises(TrustStoreError, match="does not exist"):
        client_context(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TrustStoreError):
        client_context(junk)
    with pytest.raises(TrustStoreError):
        client_context(
            pinned_cert_pem="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )


def test_fingerprint_is_sha256_lowercase_hex():
    fp = fingerprint_sha256(b"abc")
    assert fp == hashlib.sha256(b"abc").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)


def test_the_one_fingerprint_is_the_same_from_pem_der_and_a_certificate(certs_dir):
    from cryptography import x509

    pem = leaf_pem(certs_dir / "server.pem")
    der = ssl.PEM_cert_to_DER_cert(pem)
    cert = x509.load_pem_x509_certificate(pem.encode())
    expected = hashlib.sha256(der).hexdigest()
    assert fingerprint_sha256(pem) == fingerprint_sha256(pem.encode()) == expected
    assert fingerprint_sha256(der) == fingerprint_sha256(cert) == expected


# --- the probe -------------------------------------------------------------------------


def test_probe_returns_the_offered_certificate_and_logs_nobody_in(server, certs_dir):
    host, port = server.address
    probed = probe_server_certificate(host, port)
    assert probed.fingerprint == leaf_fingerprint(certs_dir / "server.pem")
    assert fingerprint_sha256(ssl.PEM_cert_to_DER_cert(probed.pem)) == probed.fingerprint
    assert count_rows(server, "sessions") == 0


def test_probe_of_a_closed_port_raises_oserror(server):
    host, port = server.address
    server.stop()
    with pytest.raises(OSError):
        probe_server_certificate(host, port, timeout=2.0)


# --- ChatClient trust decisions against a real server ----------------------------------------


def _client(server, **kwargs) -> ChatClient:
    host, port = server.address
    kwargs.setdefault("password", "secret-pw")
    return ChatClient(host, port, nick="alice", register=True, **kwargs)


def test_wrong_ca_is_refused_with_the_offered_fingerprint_and_no_hello(
    server, certs_dir, other_certs
):
    client = _client(server, ca_file=other_certs / "ca.pem", auto_reconnect=False)
    with pytest.raises(CertificateNotTrusted) as info:
        client.connect()
    assert info.value.fingerprint == leaf_fingerprint(certs_dir / "server.pem")
    assert not client.connected
    # The hello (with the password and register) never reached the server.
    assert count_rows(server, "users") == 0
    assert count_rows(server, "sessions") == 0


def test_hostname_mismatch_is_refused(server, ca_file, certs_dir):
    client = _client(server, ca_file=ca_file, server_hostname="not-in-the-cert.example")
    with pytest.raises(HostnameMismatch) as info:
        client.connect()
    assert info.value.fingerprint == leaf_fingerprint(certs_dir / "server.pem")
    assert count_rows(server, "users") == 0


def test_pinned_certificate_from_a_probe_is_trusted(server):
    host, port = server.address
    pinned = probe_server_certificate(host, port).pem
    client = _client(server, pinned_cert_pem=pinned)
    client.connect()
    try:
        event = client.events.get(timeout=10)
        assert isinstance(event, Connected)
        assert event.fingerprint == probe_server_certificate(host, port).fingerprint
    finally:
        assert client.close()


def test_pinned_certificate_still_checks_the_hostname(server, certs_dir):
    client = _client(
        server,
        pinned_cert_pem=leaf_pem(certs_dir / "server.pem"),
        server_hostname="not-in-the-cert.example",
    )
    with pytest.raises(HostnameMismatch):
        client.connect()


def test_a_different_pinned_certificate_is_refused(server, other_certs):
    client = _client(server, pinned_cert_pem=leaf_pem(other_certs / "server.pem"))
    with pytest.raises(CertificateNotTrusted):
        client.connect()
    assert count_rows(server, "users") == 0


@pytest.fixture
def web_server():
    """A real plaintext HTTP server on a loopback port: not TLS, not parley."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_a_service_that_does_not_speak_tls_is_said_in_words_not_opensslese(web_server, ca_file):
    # It was "the TLS handshake failed: WRONG_VERSION_NUMBER".
    host, port = web_server.server_address[:2]
    client = ChatClient(host, port, nick="alice", password="pw", ca_file=ca_file)
    with pytest.raises(
        ServerUnreachable, match="does not answer in TLS: it is not a parley server"
    ):
        client.connect()
    client.close(timeout=1.0)


def test_a_server_with_no_tls_version_in_common_is_said_so(certs_dir, ca_file):
    # A real TLS server that speaks only TLS 1.0/1.1, which this client never accepts.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs_dir / "server.pem", certs_dir / "server.key")
    with warnings.catch_warnings():  # the old versions are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):  # the handshake fails on both sides
                ctx.wrap_socket(conn, server_side=True)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ChatClient("127.0.0.1", port, nick="alice", password="pw", ca_file=ca_file)
        with pytest.raises(ConnectionLost, match=r"parley needs TLS 1\.2 or newer"):
            client.connect()
        client.close(timeout=1.0)
        thread.join(10)
