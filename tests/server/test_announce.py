# server/announce.py and `python -m parley_chat.server invite`: the addresses a client
# should type (only those the certificate covers), the trust anchor's short
# fingerprint, the start banner under the "listening" line, and the invite.

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint
from parley_chat.protocol.invite import parse_invite
from parley_chat.server.announce import (
    banner,
    certificate_names,
    client_addresses,
    host_port,
    short_hostname,
    trust_anchor,
)
from parley_chat.server.mdns import advertised_interfaces, instance_name, txt_records

ROOT = Path(__file__).resolve().parents[2]
DNS = {"localhost", "vm", "vm.local"}
IPS = {"127.0.0.1", "::1", "10.1.2.3", "fd00::7"}


def test_wildcard_lists_covered_interface_addresses_then_hostname_local():
    interfaces = ["10.9.9.9", "10.1.2.3", "fd00::7"]
    assert client_addresses("0.0.0.0", DNS, IPS, interfaces=interfaces, hostname="vm") == [
        "10.1.2.3",
        "vm.local",
    ]
    # Bound to :: the IPv6 addresses are reachable too.
    assert client_addresses("::", DNS, IPS, interfaces=interfaces, hostname="vm") == [
        "10.1.2.3",
        "fd00::7",
        "vm.local",
    ]
    # A .local name the certificate does not cover is not offered.
    assert client_addresses("0.0.0.0", DNS, IPS, interfaces=interfaces, hostname="other") == [
        "10.1.2.3"
    ]


def test_a_bound_address_is_the_only_one_and_only_if_covered():
    assert client_addresses("127.0.0.1", DNS, IPS, interfaces=["10.1.2.3"]) == ["127.0.0.1"]
    assert client_addresses("10.1.2.3", DNS, IPS, interfaces=[]) == ["10.1.2.3"]
    assert client_addresses("10.9.9.9", DNS, IPS, interfaces=[]) == []


def test_host_port_brackets_ipv6():
    assert host_port("fd00::7", 5555) == "[fd00::7]:5555"
    assert host_port("10.1.2.3", 5555) == "10.1.2.3:5555"


def test_the_anchor_is_the_ca_or_else_the_server_certificate(tmp_path):
    paths = generate(tmp_path / "c", ["10.1.2.3"])
    anchor = trust_anchor(paths.server_cert, paths.ca_cert)
    assert anchor.is_ca and anchor.fingerprint == fingerprint_sha256(paths.ca_cert.read_bytes())
    assert anchor.short == short_fingerprint(anchor.fingerprint)
    alone = trust_anchor(paths.server_cert, tmp_path / "missing.pem")
    assert not alone.is_ca
    assert alone.fingerprint == fingerprint_sha256(paths.server_cert.read_bytes())
    stranger = generate(tmp_path / "s")
    assert not trust_anchor(paths.server_cert, stranger.ca_cert).is_ca


def test_banner_with_real_certificates(tmp_path):
    paths = generate(tmp_path / "c", ["10.1.2.3"])
    dns, ips = certificate_names(paths.server_cert)
    assert f"{short_hostname()}.local".lower() in dns and "10.1.2.3" in ips
    ca_fp = fingerprint_sha256(paths.ca_cert.read_bytes())
    lines = banner(
        "0.0.0.0", 6000, paths.server_cert, paths.ca_cert, interfaces=["10.1.2.3", "10.9.9.9"]
    )
    assert lines[0] == "parley: clients connect to (the LAN):"
    assert lines[1] == "parley:   10.1.2.3:6000"
    assert lines[2] == f"parley:   {short_hostname().lower()}.local:6000"
    assert not any("10.9.9.9" in line for line in lines)
    assert (
        lines[3] == f"parley: first connection: check the CA fingerprint {short_fingerprint(ca_fp)}"
    )
    invite = parse_invite(lines[4].removeprefix("parley: invite: "))
    assert (invite.host, invite.port, invite.fingerprint) == ("10.1.2.3", 6000, ca_fp)

    loop = banner("127.0.0.1", 6000, paths.server_cert, paths.ca_cert)
    assert loop[:2] == [
        "parley: clients connect to (this machine only):",
        "parley:   127.0.0.1:6000",
    ]

    uncovered = banner("10.9.9.9", 6000, paths.server_cert, paths.ca_cert)
    assert "covers no address" in uncovered[0] and "--renew" in uncovered[0]


def test_mdns_records_and_where_they_go():
    assert advertised_interfaces("127.0.0.1") == ["127.0.0.1"]
    assert advertised_interfaces("::1") == ["::1"]
    assert advertised_interfaces("10.1.2.3") == ["10.1.2.3"]
    assert advertised_interfaces("0.0.0.0") is None
    assert advertised_interfaces("localhost") in (["127.0.0.1"], ["::1"])
    assert instance_name("parley", "vm") == "parley on vm"
    assert len(instance_name("x" * 80, "vm").encode()) <= 63
    assert "." not in instance_name("a.b", "vm.example")
    assert txt_records("ab" * 32, True) == {"v": "1", "sha256": "ab" * 32, "anchor": "ca"}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parley_chat.server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_invite_command_prints_one_line_the_clients_parse(tmp_path):
    paths = generate(tmp_path / "c")
    result = _run(["invite", "--certs", str(tmp_path / "c"), "--port", "6001"])
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    invite = parse_invite(line)
    assert (invite.host, invite.port) == ("127.0.0.1", 6001)
    assert invite.fingerprint == fingerprint_sha256(paths.ca_cert.read_bytes())
    # The server's own variables apply, as for `python -m parley_chat.server`.
    by_env = _run(["invite"], PARLEY_CERTS=str(tmp_path / "c"), PARLEY_PORT="6002")
    assert parse_invite(by_env.stdout).port == 6002


def test_invite_command_reads_the_servers_configuration_file(tmp_path):
    # It took only --port and PARLEY_PORT: a server on port 6003 from its
    # parley.toml got invites for 5555, which no client could use.
    generate(tmp_path / "c")
    config = tmp_path / "parley.toml"
    config.write_text(f'[server]\nport = 6003\n[tls]\ncerts_dir = "{tmp_path / "c"}"\n')
    result = _run(["invite", "--config", str(config)])
    assert result.returncode == 0, result.stderr
    assert parse_invite(result.stdout).port == 6003
    config.write_text("[network]\nport = 6003\n")  # refused as the server refuses it
    wrong = _run(["invite", "--config", str(config)])
    assert wrong.returncode == 2 and "unknown table [network]" in wrong.stderr


def test_invite_command_without_certificates_says_how_to_make_them(tmp_path):
    result = _run(["invite", "--certs", str(tmp_path / "none")])
    assert result.returncode == 2
    assert "cannot read the server certificate" in result.stderr
    assert "parley-certs --out" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_prints_the_banner_under_the_listening_line(tmp_path, certs_dir):
    db = f"sqlite:///{tmp_path / 'main.db'}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "--port",
            "0",
            "--db",
            db,
            "--certs",
            str(certs_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PARLEY_MDNS": "off"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(line) for line in iter(proc.stdout.readline, "")], daemon=True
    ).start()
    try:
        got = [lines.get(timeout=30).rstrip("\n") for _ in range(5)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert got[0].startswith("parley listening on 127.0.0.1:")  # unchanged, tests parse it
    port = int(got[0].split()[3].rsplit(":", 1)[1])
    ca_fp = fingerprint_sha256((certs_dir / "ca.pem").read_bytes())
    assert got[1:4] == [
        "parley: clients connect to (this machine only):",
        f"parley:   127.0.0.1:{port}",
        f"parley: first connection: check the CA fingerprint {short_fingerprint(ca_fp)}",
    ]
    assert parse_invite(got[4].removeprefix("parley: invite: ")).fingerprint == ca_fp
