# Trust on first use pins the CA (client/trust.py), against real servers with
# certificates from the project's own script: the server sends its CA, a
# renewal keeps a CA pin valid, a new CA is refused in plain words, an invite
# settles the first connection, and a pinned server certificate from an older
# client becomes a pin of its CA.

from __future__ import annotations

import sqlite3

import pytest

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint
from parley_chat.client import (
    CertificateNotTrusted,
    ChatClient,
    Connected,
    InviteMismatch,
    probe_server_certificate,
)
from parley_chat.client.tls import is_ca_certificate, issued_by
from parley_chat.client.trust import anchor_for_invite, upgraded_pin
from parley_chat.server.chat_server import ChatServer
from tests.support import wait_for_event


def login(server: ChatServer, pem: str) -> ChatClient:
    host, port = server.address
    client = ChatClient(
        host, port, nick="alice", password="secret-pw", register=True, pinned_cert_pem=pem
    )
    client.connect()
    wait_for_event(client, lambda e: isinstance(e, Connected))
    return client


def users(server: ChatServer) -> int:
    con = sqlite3.connect(str(server.store.database_path))
    try:
        return con.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        con.close()


def test_the_server_sends_its_ca_and_the_probe_picks_it_as_the_anchor(server, certs_dir):
    probed = probe_server_certificate(*server.address)
    ca_fp = fingerprint_sha256((certs_dir / "ca.pem").read_bytes())
    assert probed.fingerprint == fingerprint_sha256((certs_dir / "server.pem").read_bytes())
    assert probed.ca_fingerprint == ca_fp and probed.anchor_fingerprint == ca_fp
    assert probed.anchor_is_ca and is_ca_certificate(probed.anchor_pem)
    assert issued_by(probed.pem, probed.anchor_pem)


def test_a_server_without_ca_pem_is_pinned_by_its_own_certificate(tmp_path, own_server):
    paths = generate(tmp_path / "certs")
    paths.ca_cert.rename(tmp_path / "ca-elsewhere.pem")  # the operator kept ca.pem apart
    server = own_server()
    probed = probe_server_certificate(*server.address)
    assert probed.ca_pem is None and not probed.anchor_is_ca
    assert probed.anchor_fingerprint == probed.fingerprint
    client = login(server, probed.anchor_pem)
    assert client.close()


def test_renewal_keeps_a_ca_pin_valid_and_a_new_ca_is_refused_plainly(tmp_path, own_server):
    paths = generate(tmp_path / "certs")
    server = own_server()
    port = server.address[1]
    pin = probe_server_certificate(*server.address).anchor_pem
    assert login(server, pin).close()

    server.stop()
    generate(tmp_path / "certs", renew=True)  # python -m parley_chat.certs --renew: same CA
    renewed = own_server(port=port)
    offered = probe_server_certificate(*renewed.address)
    assert offered.fingerprint == fingerprint_sha256(paths.server_cert.read_bytes())
    assert offered.ca_fingerprint == fingerprint_sha256(paths.ca_cert.read_bytes())
    client = login(renewed, pin)  # no new decision: the CA pin vouches for it
    assert client.fingerprint == offered.fingerprint
    assert client.close()

    renewed.stop()
    generate(tmp_path / "certs", force=True)  # a new CA: the pin must not vouch for it
    replaced = own_server(port=port)
    before = users(replaced)
    client = ChatClient("127.0.0.1", port, nick="alice", password="secret-pw", pinned_cert_pem=pin)
    with pytest.raises(CertificateNotTrusted) as info:
        client.connect()
    message = str(info.value)
    assert "not signed by the CA this client trusts" in message and "nothing was sent" in message
    assert "certificate verify failed" not in message and "unable to get" not in message
    assert info.value.anchor_fingerprint == fingerprint_sha256(paths.ca_cert.read_bytes())
    assert users(replaced) == before


def test_an_invite_fingerprint_settles_the_first_use_and_a_wrong_one_is_refused(server):
    probed = probe_server_certificate(*server.address)
    where = "{}:{}".format(*server.address)
    # Either the CA's or the server certificate's fingerprint: the CA is pinned.
    assert anchor_for_invite(probed, probed.anchor_fingerprint, where) == probed.ca_pem
    assert anchor_for_invite(probed, probed.fingerprint.upper(), where) == probed.ca_pem
    with pytest.raises(InviteMismatch) as info:
        anchor_for_invite(probed, "ab" * 32, where)
    assert short_fingerprint("ab" * 32) in str(info.value)
    assert short_fingerprint(probed.anchor_fingerprint) in str(info.value)


def test_a_pinned_server_certificate_migrates_to_its_ca_only(tmp_path, own_server):
    generate(tmp_path / "certs")
    server = own_server()
    port = server.address[1]
    old = probe_server_certificate(*server.address)
    legacy_pin = old.pem  # what older clients pinned: the server's own certificate
    server.stop()
    generate(tmp_path / "certs", renew=True)
    renewed = own_server(port=port)
    now = probe_server_certificate(*renewed.address)
    assert now.fingerprint != old.fingerprint
    ca = upgraded_pin(legacy_pin, now)
    assert ca == now.ca_pem  # the CA the server sends signed the pinned certificate
    assert login(renewed, ca).close()
    assert upgraded_pin(ca, now) is None  # a CA pin stays as it is
    # A CA that did not sign the pinned certificate never replaces it.
    stranger = generate(tmp_path / "stranger")
    assert upgraded_pin(stranger.server_cert.read_text(), now) is None


def test_short_fingerprint_is_the_first_16_bytes_in_groups_of_four():
    fp = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert short_fingerprint(fp) == "9f86 d081 884c 7d65 9a2f eaa0 c55a d015"
    assert short_fingerprint(fp.upper()) == short_fingerprint(fp)
    colons = ":".join(fp[i : i + 2] for i in range(0, 64, 2))
    assert short_fingerprint(colons) == short_fingerprint(fp)
