# client/gui/connect_policy.py: the form's checks and what each failure tells the
# user (no display, no network).

from __future__ import annotations

from parley_chat.client import (
    CertificateExpired,
    CertificateNotTrusted,
    ConnectionLost,
    HostnameMismatch,
    InviteMismatch,
    LoginRefused,
    ServerUnreachable,
    TrustStoreError,
)
from parley_chat.client.gui.connect_policy import (
    DEFAULT_CA_FILE,
    ConnectForm,
    check_form,
    describe_failure,
    format_fingerprint,
    initial_ca_file,
)
from parley_chat.client.settings import Pin

FP = "ab" * 32


def form(**changes) -> ConnectForm:
    values = {
        "host": "chat.lan",
        "port": 5555,
        "ca_file": "",
        "nick": "alice",
        "password": "pw",
        "register": False,
    }
    values.update(changes)
    return ConnectForm(**values)


def test_form_checks(tmp_path):
    assert check_form(form()) is None
    assert "address" in check_form(form(host=" ")).title
    assert "port" in check_form(form(port=0)).title
    assert "nick" in check_form(form(nick="no spaces")).title
    assert "password" in check_form(form(password="")).title
    too_long = check_form(form(password="p" * 1025))  # once a bad-frame from the hello
    assert "password" in too_long.title and "at most 1024" in too_long.detail
    missing = check_form(form(ca_file=str(tmp_path / "nope.pem")))
    assert missing.title == "CA file not found" and "trust on first use" in missing.detail
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert check_form(form(ca_file=str(ca))) is None


def test_each_failure_says_what_to_do():
    f = form(ca_file="certs/ca.pem")
    cases = {
        ServerUnreachable("cannot connect to chat.lan:5555: Connection refused"): "Can't reach",
        HostnameMismatch("not valid for the name", FP): "another name",
        CertificateNotTrusted("not trusted", FP): "not trusted",
        TrustStoreError("the CA file x does not exist"): "Can't use the CA file",
        LoginRefused("auth-failed", "wrong password"): "Wrong password",
        LoginRefused("nick-taken", "taken"): "is taken",
        LoginRefused("registration-closed", "closed"): "Registration is closed",
        LoginRefused("no-such-account", "register first"): "no account",
        LoginRefused("throttled", "wait"): "Too many",
        ConnectionLost("reset"): "broke",
    }
    for exc, words in cases.items():
        problem = describe_failure(exc, f)
        assert words in problem.title, (exc, problem)
        assert problem.detail
        assert problem.severity == "error"
    untrusted = describe_failure(CertificateNotTrusted("x", FP), f)
    assert untrusted.fingerprint == FP and "nothing was sent" in untrusted.detail


def test_a_changed_pinned_certificate_is_a_loud_warning():
    pin = Pin(pem="pem", fingerprint="cd" * 32)
    problem = describe_failure(CertificateNotTrusted("x", FP), form(), pin)
    assert problem.severity == "danger"
    assert problem.title.startswith("WARNING")
    assert problem.fingerprint == FP and problem.pinned_fingerprint == "cd" * 32


def test_fingerprint_is_shown_whole_on_two_lines():
    shown = format_fingerprint(FP)
    assert shown.replace("\n", "") == FP and shown.count("\n") == 1


def test_an_expired_certificate_is_no_changed_certificate_warning():
    pin = Pin(pem="pem", fingerprint="cd" * 32)
    problem = describe_failure(CertificateExpired("expired", FP), form(), pin)
    assert problem.severity == "error" and "expired" in problem.title
    assert "renew" in problem.detail


def test_an_invite_mismatch_is_a_loud_warning_naming_both_fingerprints():
    invited = form(expected_fingerprint="cd" * 32)
    problem = describe_failure(InviteMismatch("x", FP, FP), invited)
    assert problem.severity == "danger" and "invite" in problem.title
    assert problem.fingerprint == FP and problem.pinned_fingerprint == "cd" * 32
    assert "nothing was sent" in problem.detail


def test_a_missing_default_ca_file_starts_as_trust_on_first_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert initial_ca_file(DEFAULT_CA_FILE) == ""
    (tmp_path / "certs").mkdir()
    (tmp_path / DEFAULT_CA_FILE).write_text("x")
    assert initial_ca_file(DEFAULT_CA_FILE) == DEFAULT_CA_FILE
    # A file the user chose is kept even when it is gone: they are told so on connect.
    assert initial_ca_file(str(tmp_path / "gone.pem")) == str(tmp_path / "gone.pem")


def test_failures_never_show_raw_openssl_or_exception_text():
    from parley_chat.client.gui.connect_policy import plain_reason

    form = ConnectForm("chat.lan", 5555, "", "alice", "pw")
    raw = [
        ConnectionLost("EOF occurred in violation of protocol (_ssl.c:2427)"),
        ServerUnreachable("cannot connect to chat.lan:5555: [Errno 111] Connection refused"),
        OSError(104, "Connection reset by peer"),
    ]
    for exc in raw:
        problem = describe_failure(exc, form)
        for fragment in ("_ssl", "Errno", "EOF occurred", "(", "reset by peer"):
            assert fragment not in problem.detail, (exc, problem.detail)
    assert plain_reason("EOF occurred in violation of protocol (_ssl.c:2427)") == (
        "the connection was cut"
    )
    assert plain_reason("shutdown: the server is shutting down").startswith("the server is")
