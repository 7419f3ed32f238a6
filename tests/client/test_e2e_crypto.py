# Unit tests of the end-to-end primitives (client/e2e): the safety number
# against Signal's own test vector, envelopes, link codes, keys at rest, pins
# and the local store. The network paths are in test_e2e.py.

from __future__ import annotations

import json

import keyring
import keyring.backend
import nacl.pwhash
import pytest
from nacl.signing import SigningKey

from parley_chat.client.e2e.crypto import (
    AccountKeys,
    E2EError,
    PublicKeys,
    check_link_mac,
    comparison_code,
    group_digits,
    link_mac,
    new_link_code,
    open_envelope,
    safety_number,
    seal,
    split_link_code,
    unwrap_on_device,
    wrap_for_device,
)
from parley_chat.client.e2e.keystore import (
    KEYRING_SERVICE,
    decrypt_keys,
    encrypt_keys,
    encrypt_keys_keyring,
)
from parley_chat.client.e2e.localstore import LocalStore
from parley_chat.client.e2e.pins import KeyChanged, PinStore

# libsignal's NumericFingerprintGeneratorTest (Java and C): two Curve25519
# identity keys with the 0x05 type byte, phone numbers as identifiers, 5200 rounds.
SIGNAL_ALICE = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
SIGNAL_BOB = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
SIGNAL_NUMBER = "300354477692869396892869876765458257569162576843440918079131"


def test_the_safety_number_is_signals_on_signals_test_vector():
    assert safety_number("+14152222222", SIGNAL_ALICE, "+14153333333", SIGNAL_BOB) == SIGNAL_NUMBER


def test_both_sides_compute_the_same_sixty_digits():
    assert safety_number("+14153333333", SIGNAL_BOB, "+14152222222", SIGNAL_ALICE) == SIGNAL_NUMBER


def test_parleys_safety_number_of_two_ed25519_identities():
    # parley's own vector: folded nicks and raw 32-byte Ed25519 keys from fixed seeds.
    alice = bytes(SigningKey(bytes(range(32))).verify_key)
    bob = bytes(SigningKey(bytes(range(32, 64))).verify_key)
    assert alice.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    number = safety_number("alice", alice, "bob", bob)
    assert number == "408994591962137649598025436758841352551786110599004483440853"
    assert len(number) == 60 and number.isdigit()
    assert group_digits(number).split()[0] == "40899"
    other = bytes(SigningKey(bytes(range(64, 96))).verify_key)
    assert safety_number("alice", alice, "bob", other) != number  # another key, other digits


@pytest.fixture
def alice() -> AccountKeys:
    return AccountKeys.generate()


@pytest.fixture
def bob() -> AccountKeys:
    return AccountKeys.generate()


def test_an_envelope_opens_for_the_recipient_and_the_senders_own_account(alice, bob):
    envelope = seal(alice, "alice", "bob", bob.public, "meet at 5 \U0001f600")
    assert "meet" not in envelope
    for keys, me in ((bob, "bob"), (alice, "Alice")):
        opened = open_envelope(keys, me, envelope, "alice", "bob")
        assert opened.text == "meet at 5 \U0001f600"
        assert (opened.sender_sign, opened.sender_box) == (alice.public.sign, alice.public.box)


def test_a_third_account_cannot_open_it(alice, bob):
    envelope = seal(alice, "alice", "bob", bob.public, "secret")
    with pytest.raises(E2EError, match="not encrypted for this account"):
        open_envelope(AccountKeys.generate(), "carol", envelope, "alice", "bob")
    # Named bob, but without bob's key: the wrap does not open.
    with pytest.raises(E2EError, match="does not decrypt"):
        open_envelope(AccountKeys.generate(), "bob", envelope, "alice", "bob")


def test_a_tampered_envelope_is_refused(alice, bob):
    body = json.loads(seal(alice, "alice", "bob", bob.public, "secret"))
    body["c"] = body["c"][:-4] + ("AAAA" if body["c"][-4:] != "AAAA" else "BBBB")
    with pytest.raises(E2EError, match="signature"):
        open_envelope(bob, "bob", json.dumps(body), "alice", "bob")


def test_a_relabelled_message_is_refused(alice, bob):
    # The server says carol sent it: the payload inside says alice.
    envelope = seal(alice, "alice", "bob", bob.public, "secret")
    with pytest.raises(E2EError, match="other parties"):
        open_envelope(bob, "bob", envelope, "carol", "bob")


@pytest.mark.parametrize("junk", ["", "[]", '{"v": 2}', '{"v": 1, "s": "!!"}', "not json"])
def test_junk_envelopes_raise_e2e_errors_only(bob, junk):
    with pytest.raises(E2EError):
        open_envelope(bob, "bob", junk, "alice", "bob")


def test_published_keys_are_verified(alice, bob):
    wire = alice.public.to_wire()
    assert PublicKeys.from_wire(**wire).same_as(alice.public)
    forged = {**wire, "box": bob.public.to_wire()["box"]}  # someone else's box key
    with pytest.raises(E2EError, match="not signed"):
        PublicKeys.from_wire(**forged)


def test_link_codes_macs_and_the_comparison_code(alice):
    code = new_link_code()
    code_id, secret = split_link_code(code.lower().replace("-", " "))
    assert len(code) == 14 and code[:4] == code_id
    device = AccountKeys.generate().private
    pub = bytes(device.public_key)
    check_link_mac(secret, link_mac(secret, pub), pub)
    wrong = ("A" if secret[0] != "A" else "B") + secret[1:]
    with pytest.raises(E2EError, match="does not match"):
        check_link_mac(wrong, link_mac(secret, pub), pub)
    assert comparison_code(secret, pub) != comparison_code(wrong, pub)
    assert len(comparison_code(secret, pub)) == 7
    one_time, sealed = wrap_for_device(alice, pub)
    linked = unwrap_on_device(device, one_time, sealed)
    assert linked.public.same_as(alice.public)
    with pytest.raises(E2EError):
        split_link_code("ABCD-EFGH")


def test_keys_at_rest_need_the_passphrase(alice):
    ops, mem = nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN
    data = encrypt_keys(alice, "correct horse", ops=ops, mem=mem)
    assert bytes(alice.signing).hex() not in data.decode()
    assert decrypt_keys(data, "correct horse").public.same_as(alice.public)
    with pytest.raises(E2EError, match="wrong passphrase"):
        decrypt_keys(data, "wrong horse")
    with pytest.raises(E2EError, match="needs its passphrase"):
        decrypt_keys(data)
    # PARLEY_KEY_PASSPHRASE with a byte that is not UTF-8: said, not a UnicodeEncodeError.
    with pytest.raises(E2EError, match="not UTF-8"):
        decrypt_keys(data, "horse\udcff")


def test_pins_are_kept_and_a_changed_key_is_refused(tmp_path, alice, bob):
    pins = PinStore(tmp_path / "pins.json")
    assert pins.check("Bob", bob.public) is True  # first contact: pinned
    assert PinStore(tmp_path / "pins.json").check("bob", bob.public) is False
    with pytest.raises(KeyChanged, match="CHANGED") as caught:
        PinStore(tmp_path / "pins.json").check("bob", alice.public)
    assert caught.value.nick == "bob"
    pins.accept("bob", alice.public)
    assert PinStore(tmp_path / "pins.json").check("bob", alice.public) is False
    assert (tmp_path / "pins.json").stat().st_mode & 0o077 == 0


def test_the_local_store_keeps_texts_sealed_and_finds_them(tmp_path, alice):
    path = tmp_path / "local.db"
    store = LocalStore(path, alice.local_key(), "alice")
    store.add(7, "2026-12-01T10:00:00.000Z", "bob", "alice", "the Zebra crossing")
    store.add(7, "2026-12-01T10:00:00.000Z", "bob", "alice", "the Zebra crossing")  # again
    store.add(9, "2026-12-01T10:01:00.000Z", "alice", "bob", "zebras again")
    assert [m.id for m in store.search("zebra")] == [9, 7]
    assert [m.id for m in store.search("ZEBRA crossing")] == [7]
    assert store.get(9) is not None and store.get(9).recipient == "bob"
    store.close()
    assert b"Zebra" not in path.read_bytes()
    other = LocalStore(path, AccountKeys.generate().local_key(), "alice")
    assert other.search("zebra") == []  # another key reads nothing


class _MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory OS keyring (this machine has none): a fake for this one module."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


def test_keys_at_rest_under_the_os_keyring(alice):
    before = keyring.get_keyring()
    fake = _MemoryKeyring()
    keyring.set_keyring(fake)
    try:
        data = encrypt_keys_keyring(alice, "alice@host:5555")
        assert list(fake.items) == [(KEYRING_SERVICE, "alice@host:5555")]
        assert bytes(alice.signing).hex() not in data.decode()
        assert decrypt_keys(data).public.same_as(alice.public)
        fake.items.clear()  # the keyring lost its key: the file cannot be opened
        with pytest.raises(E2EError, match="holds no key"):
            decrypt_keys(data)
    finally:
        keyring.set_keyring(before)


def test_what_protects_a_key_file_and_whether_a_keyring_is_there(alice):
    from keyring.backends import fail

    from parley_chat.client.e2e.files import keyring_usable
    from parley_chat.client.e2e.keystore import key_file_protection

    ops, mem = nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN
    assert key_file_protection(encrypt_keys(alice, "correct horse", ops=ops, mem=mem)) == "argon2id"
    with pytest.raises(E2EError, match="not a parley key file"):
        key_file_protection(b"{}")
    with pytest.raises(E2EError, match="unknown key protection"):
        key_file_protection(b'{"v": 1, "kdf": "rot13"}')
    before = keyring.get_keyring()
    try:
        keyring.set_keyring(fail.Keyring())  # what a machine without a keyring service has
        assert not keyring_usable()
        fake = _MemoryKeyring()
        keyring.set_keyring(fake)
        assert keyring_usable()
        data = encrypt_keys_keyring(alice, "alice@host:5555")
        assert key_file_protection(data) == "keyring"
    finally:
        keyring.set_keyring(before)
