# The generate-certs script: a CA that signs a short-lived ECDSA server
# certificate covering loopback, host names and LAN addresses; keys 0600;
# idempotent; --renew keeps the CA; openssl agrees.

from __future__ import annotations

import shutil
import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from parley_chat.certs import check_server_certificate, fingerprint_sha256, generate, san_name


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_generates_a_ca_and_a_server_certificate(tmp_path):
    paths = generate(tmp_path, ["chat.example", "10.1.2.3"])
    assert paths.created_ca and paths.created_server
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = _load(paths.server_cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life <= timedelta(days=365, hours=1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "chat.example"} <= dns
    assert {"127.0.0.1", "::1", "10.1.2.3"} <= ips
    assert any(d.endswith(".local") for d in dns)


def test_python_ssl_verifies_the_chain_with_hostname(tmp_path):
    paths = generate(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(paths.server_cert, paths.server_key)
    client = ssl.create_default_context(cafile=str(paths.ca_cert))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cobj = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    sobj = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (cobj, sobj):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    cobj.do_handshake()  # raises if the chain or the hostname did not verify
    assert cobj.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_openssl_verify_says_ok(tmp_path):
    paths = generate(tmp_path)
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(paths.ca_cert), str(paths.server_cert)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK")


def test_rerun_keeps_everything_renew_keeps_the_ca_force_replaces_it(tmp_path):
    first = generate(tmp_path)
    ca, leaf = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = generate(tmp_path)
    assert not again.created_ca and not again.created_server
    assert first.server_cert.read_bytes() == leaf
    renewed = generate(tmp_path, renew=True)
    assert not renewed.created_ca and renewed.created_server
    assert first.ca_cert.read_bytes() == ca and first.server_cert.read_bytes() != leaf
    forced = generate(tmp_path, force=True)
    assert forced.created_ca and first.ca_cert.read_bytes() != ca


def test_days_are_capped(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, days=400)


def test_warnings_for_expiry_and_uncovered_address(tmp_path):
    paths = generate(tmp_path, ["10.1.2.3"])
    assert check_server_certificate(paths.server_cert, addresses=["10.1.2.3"]) == []
    soon = datetime.now(UTC) + timedelta(days=350)
    (warning,) = check_server_certificate(paths.server_cert, now=soon, addresses=[])
    assert "expires in" in warning and "--renew" in warning
    (uncovered,) = check_server_certificate(paths.server_cert, addresses=["192.0.2.7"])
    assert "192.0.2.7" in uncovered


def test_cli_prints_fingerprints_and_paths(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "parley_chat.certs", "--out", str(tmp_path), "--san", "lan-host"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    fp = fingerprint_sha256((tmp_path / "server.pem").read_bytes())
    assert fp in out.stdout and str(tmp_path / "ca.pem") in out.stdout
    assert "lan-host" in _load(tmp_path / "server.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("bad", ["bad host!", "two..dots", "-dash.lan", "x" * 64 + ".lan", ""])
def test_a_name_no_certificate_can_cover_is_refused_before_anything_is_written(tmp_path, bad):
    (tmp_path / "kept").mkdir()
    kept = generate(tmp_path / "kept")
    before = {p: p.read_bytes() for p in (kept.ca_cert, kept.server_cert, kept.server_key)}
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        generate(tmp_path / "kept", [bad], renew=True)
    assert {p: p.read_bytes() for p in before} == before  # the old certificate stands
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        generate(tmp_path / "new", [bad])
    assert not (tmp_path / "new").exists()


def test_names_are_covered_in_the_form_a_client_asks_for():
    assert san_name("10.1.2.3") == "10.1.2.3" and san_name("fe80::1") == "fe80::1"
    assert san_name("Chat.School.LAN.") == "chat.school.lan"
    assert san_name("*.school.lan") == "*.school.lan"
    assert san_name("schüle.lan") == "xn--schle-mva.lan"  # an international name: its xn-- form
