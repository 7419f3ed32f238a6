"""One certificate per server node under the shared CA, made by the real `parley-certs`.

Several nodes share one database (issue 14); a client trusts one ca.pem and fails
over between nodes, so every node needs its own certificate, for its own names, signed
by that CA. The script is run as operators run it (the installed command), and the
directories it writes are served by real servers.
"""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from parley_chat.certs import fingerprint_sha256
from parley_chat.server.chat_server import ChatServer
from tests.support import RawClient

PARLEY_CERTS = Path(sys.executable).with_name("parley-certs")


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `parley-certs` with *args*."""
    return subprocess.run(
        [str(PARLEY_CERTS), *args], capture_output=True, text=True, timeout=60, check=False
    )


def names_in(cert_file: Path) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses a certificate covers."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def issued_by(cert_file: Path, ca_file: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_file.read_bytes()))
    except Exception:
        return False
    return True


@pytest.fixture
def node_servers(
    tmp_path: Path, make_server: Callable[..., ChatServer]
) -> Callable[[Path], ChatServer]:
    """Start a server (its own database) on a node's certificate directory."""

    def start(node_dir: Path) -> ChatServer:
        return make_server(
            db_url=f"sqlite:///{tmp_path / f'{node_dir.name}.db'}", certs_dir=node_dir
        )

    return start


def test_each_node_gets_its_own_certificate_under_the_one_ca(tmp_path):
    out = tmp_path / "certs"
    assert certs("--out", str(out)).returncode == 0  # this machine: the CA and server.pem
    ca, leaf = (out / "ca.pem").read_bytes(), (out / "server.pem").read_bytes()

    a = certs("--out", str(out), "--node", "a", "--san", "a.lan", "--san", "10.0.0.11")
    b = certs("--out", str(out), "--node", "b", "--san", "b.lan")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr

    # The CA and this machine's certificate are left as they were.
    assert (out / "ca.pem").read_bytes() == ca and (out / "server.pem").read_bytes() == leaf
    for node, dns, ips in (("a", {"a", "a.lan"}, {"10.0.0.11"}), ("b", {"b", "b.lan"}, set())):
        d = out / "nodes" / node
        # What the node machine runs with, and nothing more: never the CA's key.
        assert sorted(p.name for p in d.iterdir()) == ["ca.pem", "server.key", "server.pem"]
        assert stat.S_IMODE((d / "server.key").stat().st_mode) == 0o600
        assert (d / "ca.pem").read_bytes() == ca
        assert issued_by(d / "server.pem", out / "ca.pem")
        # The node's own names only: this machine's (localhost, its LAN address) are not its.
        assert names_in(d / "server.pem") == (dns, ips)
        cert = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN={node}"
    assert (out / "nodes/a/server.key").read_bytes() != (out / "nodes/b/server.key").read_bytes()
    # The script says where the files are and what to check.
    assert fingerprint_sha256((out / "nodes/a/server.pem").read_bytes()) in a.stdout
    assert fingerprint_sha256(ca) in a.stdout and "--certs" in a.stdout


def test_a_node_certificate_is_kept_renewed_on_request_and_reissued_for_a_new_ca(tmp_path):
    out = tmp_path / "certs"
    assert certs("--out", str(out), "--node", "a", "--san", "a.lan").returncode == 0
    first = (out / "nodes/a/server.pem").read_bytes()
    kept = certs("--out", str(out), "--node", "a")
    assert kept.returncode == 0 and "(kept)" in kept.stdout
    assert (out / "nodes/a/server.pem").read_bytes() == first
    assert certs("--out", str(out), "--node", "a", "--renew").returncode == 0
    renewed = (out / "nodes/a/server.pem").read_bytes()
    assert renewed != first and issued_by(out / "nodes/a/server.pem", out / "ca.pem")
    # The CA replaced (--force, without --node): the node's next run reissues its
    # certificate, since the old one no longer chains to the ca.pem copied beside it.
    assert certs("--out", str(out), "--force").returncode == 0
    again = certs("--out", str(out), "--node", "a")
    assert again.returncode == 0 and "node a certificate (created)" in again.stdout
    assert (out / "nodes/a/ca.pem").read_bytes() == (out / "ca.pem").read_bytes()
    assert issued_by(out / "nodes/a/server.pem", out / "ca.pem")


def test_bad_node_requests_are_refused_with_a_reason(tmp_path):
    out = tmp_path / "certs"
    bad = certs("--out", str(out), "--node", "a/../b")
    assert bad.returncode == 1 and "is not a node name" in bad.stderr
    forced = certs("--out", str(out), "--node", "a", "--force")
    assert forced.returncode == 2 and "does not go with --node" in forced.stderr
    assert not (out / "nodes").exists() or list((out / "nodes").iterdir()) == []


def test_one_ca_file_trusts_every_node_and_each_node_only_for_its_names(tmp_path, node_servers):
    out = tmp_path / "certs"
    for node in ("a", "b"):
        done = certs("--out", str(out), "--node", node, "--san", f"{node}.lan")
        assert done.returncode == 0, done.stderr
    ca_file = out / "ca.pem"  # the one file every client keeps
    for node in ("a", "b"):
        server = node_servers(out / "nodes" / node)
        client = RawClient(server.address, ca_file, hostname=f"{node}.lan")
        welcome, _ = client.login(f"user{node}")
        assert welcome.nick == f"user{node}"
        assert client.sock.getpeercert(binary_form=True) is not None
        served = fingerprint_sha256(client.sock.getpeercert(binary_form=True))
        assert served == fingerprint_sha256((out / "nodes" / node / "server.pem").read_bytes())
        client.close()
        other = "b" if node == "a" else "a"
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            RawClient(server.address, ca_file, hostname=f"{other}.lan")
