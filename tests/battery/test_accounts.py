# Battery #21-#24, #26 and pending items c and e: who may log in as whom.
# Password guessing costs the server five hashes, not a hundred; passwords
# exist only as salted scrypt hashes; a client that does not trust the server
# sends nothing; a nick is one account, whatever its case, and cannot be
# borrowed with look-alike letters or a forged field.

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from parley_chat.certs import generate
from parley_chat.protocol import Ack, Error, ErrorCode, Hello, Message, Presence, Send, Welcome, Who
from tests.battery.helpers import (
    OTHER_SOURCE,
    Client,
    codes,
    db_files,
    run_threads,
)


def _refused(client: Client, hello: Hello | bytes, timeout: float = 30) -> list[tuple[str, str]]:
    """Send a hello that must be refused; the (code, message) of the errors before the close."""
    client.send(hello)
    errors = []
    while True:
        try:
            frame = client.recv(timeout)
        except EOFError:
            return errors
        if isinstance(frame, Welcome):
            raise AssertionError(f"logged in as {frame.nick} instead of being refused")
        if isinstance(frame, Error):
            errors.append((frame.code, frame.message))


def _raw_hello(nick: str, password: str = "secret-pw", register: bool = True) -> bytes:
    # By hand: protocol.Hello refuses to even build a hello with a bad nick.
    hello = {
        "type": "hello",
        "version": 1,
        "nick": nick,
        "password": password,
        "register": register,
    }
    return json.dumps(hello).encode() + b"\n"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA of an unrelated parley installation."""
    out = tmp_path_factory.mktemp("other-ca")
    generate(out)
    return out / "ca.pem"


@pytest.mark.slow
def test_a_hundred_wrong_passwords_cost_five_hashes_at_the_default_cost(make_server, battery):
    """Battery #21: 100 wrong passwords for one account from one address, default scrypt: 5 hashed, 95 `throttled` faster than those 5 took."""
    server = make_server(scrypt_n=2**17)  # the real cost: ~0.4 s a hash on this machine
    battery.online(server, "alice").close()
    took: list[float] = []
    replies: list[list[tuple[str, str]]] = []
    for i in range(100):
        client = battery.connect(server)
        started = time.monotonic()
        replies.append(_refused(client, Hello(version=1, nick="alice", password=f"guess-{i}")))
        took.append(time.monotonic() - started)
    assert [r[0][0] for r in replies] == [ErrorCode.AUTH_FAILED] * 5 + [ErrorCode.THROTTLED] * 95
    assert all(len(r) == 1 for r in replies)
    hashed, throttled = took[:5], took[5:]
    assert sum(throttled) < sum(hashed), (
        f"95 throttled replies took {sum(throttled):.2f} s, 5 hashed ones {sum(hashed):.2f} s"
    )
    # One reply form for every throttled attempt (only the seconds to wait change).
    assert len({re.sub(r"\d+", "N", r[0][1]) for r in replies[5:]}) == 1
    # An unknown nick is refused without a hash too (by design it says so: no-such-account).
    started = time.monotonic()
    unknown = _refused(battery.connect(server), Hello(version=1, nick="ghost", password="x"))
    assert [c for c, _ in unknown] == [ErrorCode.NO_SUCH_ACCOUNT]
    assert time.monotonic() - started < min(hashed)
    # The throttle is per (account, address): the owner elsewhere is not locked out.
    battery.online(server, "alice", source=OTHER_SOURCE, register=False)
    battery.finish(server)


def test_passwords_exist_only_as_salted_scrypt_hashes(server, battery, caplog):
    """Battery #22: scrypt$n$r$p$salt$hash per account, distinct salts; the password is in no database file and no log line."""
    caplog.set_level("DEBUG", logger="parley")
    password, wrong = "Correct-Horse-9-battery", "Correct-Horse-9-WRONG"
    for nick in ("alice", "bob"):  # the same password, twice
        battery.online(server, nick, password=password).close()
    assert _refused(battery.connect(server), Hello(version=1, nick="alice", password=wrong))
    battery.online(server, "alice", password=password, register=False).close()
    with server.store.read() as s:
        stored = dict(s.execute(text("SELECT nick, password_hash FROM users")).all())
    salts = set()
    for nick in ("alice", "bob"):
        match = re.fullmatch(
            r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored[nick]
        )
        assert match, stored[nick]
        n, r, p = (int(g) for g in match.groups()[:3])
        assert n == server.config.scrypt_n and (r, p) == (8, 1)
        salt, digest = base64.b64decode(match[4]), base64.b64decode(match[5])
        assert len(salt) == 16 and len(digest) == 32
        salts.add(salt)
    assert len(salts) == 2, "two accounts with one password got the same salt"
    for path in db_files(server):
        data = path.read_bytes()
        for secret in (password, wrong):
            for encoded in (secret.encode(), secret.encode("utf-16-le")):
                assert encoded not in data, f"a password is in {path.name}"
    for record in caplog.records:
        assert password not in record.getMessage() and wrong not in record.getMessage()
    battery.finish(server)


def test_a_client_trusting_another_ca_refuses_the_server_and_sends_nothing(
    server, battery, other_ca
):
    """Battery #23: a client with another CA fails verification before sending a byte; the server logs the unknown-CA alert."""
    context = ssl.create_default_context(cafile=str(other_ca))
    # OpenSSL words it after the chain the server sends: leaf alone, or leaf and its CA.
    untrusted = (
        "unable to get local issuer certificate|self-signed certificate in certificate chain"
    )
    with pytest.raises(ssl.SSLCertVerificationError, match=untrusted):
        battery.connect(server, context=context)
    record = battery.wait_for_log(lambda r: "TLS handshake failed" in r.getMessage())
    assert "UNKNOWN_CA" in record.getMessage()
    assert not any("logged in" in r.getMessage() for r in battery.server_records())
    battery.finish(server)


@pytest.mark.parametrize(
    ("hostname", "complaint"),
    [("chat.example", "Hostname mismatch"), ("127.0.0.2", "IP address mismatch")],
)
def test_a_client_refuses_a_server_whose_certificate_names_another_host(
    server, battery, hostname, complaint
):
    """Battery #24: the right CA but another name or IP: the client aborts the handshake; the server logs the bad-certificate alert."""
    with pytest.raises(ssl.SSLCertVerificationError, match=complaint):
        battery.connect(server, hostname=hostname)
    record = battery.wait_for_log(lambda r: "TLS handshake failed" in r.getMessage())
    assert "BAD_CERTIFICATE" in record.getMessage()
    assert not any("logged in" in r.getMessage() for r in battery.server_records())
    battery.finish(server)


def test_a_nick_is_one_account_whatever_its_case_and_only_with_its_password(server, battery):
    """Battery #26: a second login as a nick needs its password; `ALICE` is `alice`; both connections are one user."""
    alice = battery.online(server, "alice")
    bob = battery.online(server, "bob")
    assert [
        c
        for c, _ in _refused(
            battery.connect(server), Hello(version=1, nick="alice", password="not-hers")
        )
    ] == [ErrorCode.AUTH_FAILED]
    assert [
        c
        for c, _ in _refused(
            battery.connect(server),
            Hello(version=1, nick="Alice", password="not-hers", register=True),
        )
    ] == [ErrorCode.NICK_TAKEN]
    second = battery.connect(server)
    welcome, _ = second.login("ALICE", register=False)
    assert (welcome.nick, welcome.created) == ("alice", False), (
        "the first spelling is the account's"
    )
    bob.send(Who(tag="w"))
    assert bob.expect(Presence, tag="w").online == ["alice", "bob"], "one user, listed once"
    bob.send(Send(id="dm", text="for alice", to="Alice"))
    ack = bob.expect(Ack)
    for conn in (alice, second):
        assert conn.expect(Message, id=ack.id).text == "for alice"
    battery.finish(server)


@pytest.mark.parametrize(
    "nick",
    ["\u0410lice", "alic\u0435", "\uff41lice", "alice\u200b", "al ice"],
    ids=["cyrillic-A", "cyrillic-e", "fullwidth-a", "zero-width-space", "space"],
)
def test_a_look_alike_nick_is_refused_as_bad_nick(server, battery, nick):
    """Battery #26: `alice` spelled with a Cyrillic A (U+0410) and other look-alikes gets `bad-nick`, never an account."""
    battery.online(server, "alice").close()
    refused = _refused(battery.connect(server), _raw_hello(nick), timeout=3)
    assert [c for c, _ in refused] == [ErrorCode.BAD_NICK]  # then closed, as refused logins are
    with server.store.read() as s:
        assert s.execute(text("SELECT nick FROM users")).scalars().all() == ["alice"]
    battery.finish(server)


def test_a_hello_with_a_bad_nick_is_refused_and_closed(server, battery):
    """Battery #26: a hello with a look-alike nick gets `bad-nick`, then the close every refused login gets."""
    refused = _refused(battery.connect(server), _raw_hello("\u0410lice"), timeout=3)
    assert [c for c, _ in refused] == [ErrorCode.BAD_NICK]
    battery.finish(server)


def test_the_sender_is_the_session_user_whatever_the_frame_claims(server, battery):
    """Battery #26: a send with forged `from`/`sender` fields is stored and shown as the session's user."""
    alice = battery.online(server, "alice")
    bob = battery.online(server, "bob")
    alice.send(
        b'{"type":"send","id":"forged","text":"i am bob","room":"#lobby","from":"bob","sender":"bob"}\n'
    )
    ack = alice.expect(Ack)
    assert bob.expect(Message, id=ack.id).from_ == "alice"
    with server.store.read() as s:
        sender = s.execute(
            text("SELECT sender FROM chat_log WHERE id = :i"), {"i": ack.id}
        ).scalar()
    assert sender == "alice"
    battery.finish(server)


# --- pending items ------------------------------------------------------------------------


def test_the_thirty_first_registration_from_one_address_is_throttled(make_server, battery):
    """Battery #21, item c: 30 accounts from one address, the 31st gets `throttled` and a close; an existing account still logs in there."""
    server = make_server(registrations_per_ip=30, registration_window=600.0)  # the defaults
    source = "127.0.0.5"
    for i in range(30):
        battery.online(server, f"reg{i}", source=source).close()
    refused = _refused(
        battery.connect(server, source=source),
        Hello(version=1, nick="reg30", password="pw", register=True),
    )
    assert [c for c, _ in refused] == [ErrorCode.THROTTLED]
    battery.online(server, "reg0", source=source, register=False)
    battery.finish(server)


def test_concurrent_wrong_passwords_are_throttled_while_in_flight(make_server, battery):
    """Battery #21, item e: 16 simultaneous wrong hellos for one account: at most 5 hashed, the rest `throttled`; the owner's token and other address still work."""
    server = make_server(scrypt_n=2**14)  # ~50 ms a hash: slow enough for hellos to overlap
    owner = battery.connect(server)
    welcome, _ = owner.login("alice")
    owner.close()
    attackers = [battery.connect(server) for _ in range(16)]
    resumer = battery.connect(server)
    start = threading.Barrier(len(attackers) + 1)
    answers: dict[int, list[str]] = {}
    resumed: list[str] = []

    def attack(i: int) -> None:
        start.wait(10)
        attackers[i].send(Hello(version=1, nick="alice", password=f"guess-{i}"))
        answers[i] = codes(attackers[i].expect_closed(timeout=30))

    def resume() -> None:
        start.wait(10)
        resumed.append(resumer.login("alice", token=welcome.token)[0].nick)

    failures = run_threads([*(lambda i=i: attack(i) for i in range(16)), resume], timeout=60)
    assert failures == []
    assert resumed == ["alice"], "the owner's resume token did not get in during the attack"
    assert all(len(a) == 1 for a in answers.values())
    flat = [a[0] for a in answers.values()]
    assert flat.count(ErrorCode.AUTH_FAILED) <= 5, f"{flat.count(ErrorCode.AUTH_FAILED)} hashed"
    assert flat.count(ErrorCode.AUTH_FAILED) + flat.count(ErrorCode.THROTTLED) == 16
    battery.online(server, "alice", source=OTHER_SOURCE, register=False)
    battery.finish(server)
