# The connect screen against real servers: what each failure says, that an
# untrusted server never sees the password, trust on first use and a changed
# certificate, and what the settings files remember (never the password).

from __future__ import annotations

import json
import socket

import pytest

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint
from parley_chat.client.gui.app import App
from parley_chat.client.settings import Settings, SettingsStore, server_key
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig
from tests.client.gui.helpers import idle, pump
from tests.support import db_rows

pytestmark = pytest.mark.gui


def flat(text: str) -> str:
    return "".join(text.split())


def problem_of(app) -> str:
    pump(app, lambda: app.connect_page.panel_kind in ("error", "danger"), what="a problem shown")
    return app.connect_page.panel_text()


def test_untrusted_ca_shows_the_offered_fingerprint_and_sends_no_password(
    open_app, gui_server, certs_dir, tmp_path
):
    other = generate(tmp_path / "other")
    app = open_app("mallory", ca=str(other.ca_cert), connected=False)
    text = problem_of(app)
    assert "not trusted" in text
    assert fingerprint_sha256((certs_dir / "server.pem").read_bytes()) in flat(text)
    assert "nothing was sent" in text
    idle(app)
    # No login ever reached the server: no account, no session, nobody online.
    assert db_rows(gui_server, "SELECT COUNT(*) FROM sessions") == [(0,)]
    assert db_rows(gui_server, "SELECT COUNT(*) FROM users") == [(0,)]
    assert app.connect_page.winfo_ismapped() and not app.chat_page.winfo_ismapped()
    assert app._client is None


def test_trust_on_first_use_pins_the_ca_survives_a_renewal_and_refuses_a_new_ca(
    open_app, tmp_path, request
):
    # A server of its own: this test renews and replaces its certificates.
    db_url = f"sqlite:///{tmp_path / 'own.db'}"
    mine = generate(tmp_path / "certs")
    server = ChatServer(ServerConfig.for_tests(db_url, tmp_path / "certs"))
    server.start()
    request.addfinalizer(server.stop)
    host, port = server.address
    config = tmp_path / "config-tina"
    ca_fp = fingerprint_sha256(mine.ca_cert.read_bytes())
    app = open_app("tina", ca="", config=config, connected=False, server=server)
    pump(app, lambda: app.connect_page.panel_kind == "warn", what="the trust prompt")
    # The prompt shows the CA's fingerprint in the grouped form the server prints.
    assert short_fingerprint(ca_fp) in app.connect_page.panel_text()
    assert "CA" in app.connect_page.panel_text()
    assert app._client is None  # nothing logged in before the user decides
    app.connect_page.trust_button.invoke()
    pump(app, lambda: app.statusbar.state == "connected", what="connected after trusting")
    pins = json.loads((config / "known_servers.json").read_text())
    assert pins[server_key(host, port)]["fingerprint"] == ca_fp
    app.shutdown(timeout=0.5)
    assert app.wait_closed(10)

    # The operator renews the server certificate (same CA) and restarts: no prompt.
    server.stop()
    generate(tmp_path / "certs", renew=True)
    renewed = ChatServer(ServerConfig.for_tests(db_url, tmp_path / "certs", port=port))
    renewed.start()
    request.addfinalizer(renewed.stop)
    again = open_app("tina", ca="", config=config, connected=False, server=renewed)
    again.connect_page.submit()
    pump(
        again,
        lambda: again.statusbar.state == "connected" or again.connect_page.panel_kind,
        what="connected after the renewal",
    )
    assert again.connect_page.panel_kind == "" and again.statusbar.state == "connected"
    assert again._client.fingerprint == fingerprint_sha256(mine.server_cert.read_bytes())
    again.shutdown(timeout=0.5)
    assert again.wait_closed(10)
    sessions_before = db_rows(renewed, "SELECT COUNT(*) FROM sessions")

    # The same host and port now presents a certificate from another CA.
    renewed.stop()
    other = generate(tmp_path / "other")
    impostor = ChatServer(ServerConfig.for_tests(db_url, tmp_path / "other", port=port))
    impostor.start()
    request.addfinalizer(impostor.stop)
    other_fp = fingerprint_sha256(other.ca_cert.read_bytes())
    app2 = open_app("tina", ca="", config=config, connected=False, server=impostor)
    app2.connect_page.submit()
    text = problem_of(app2)
    assert app2.connect_page.panel_kind == "danger"
    assert "WARNING" in text and "changed" in text
    assert short_fingerprint(ca_fp) in text and short_fingerprint(other_fp) in text
    assert "certificate verify failed" not in text and "SSL" not in text  # no OpenSSL text
    assert app2._client is None
    assert db_rows(impostor, "SELECT COUNT(*) FROM sessions") == sessions_before
    # Forgetting the old pin does not trust the new one: the user is asked again.
    app2.connect_page.forget_button.invoke()
    pump(app2)
    assert server_key(host, port) not in json.loads((config / "known_servers.json").read_text())
    app2.connect_page.submit()
    pump(app2, lambda: app2.connect_page.panel_kind == "warn", what="asked again")
    assert short_fingerprint(other_fp) in app2.connect_page.panel_text()
    assert app2._client is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "Wrong password"),
        ("nick-taken", "is taken"),
        ("registration-closed", "Registration is closed"),
        ("unreachable", "Can't reach"),
        ("hostname", "certificate is for another name"),
    ],
)
def test_each_failure_says_what_went_wrong(
    case, expected, open_app, make_server, chat_client, tmp_path
):
    if case in ("wrong-password", "nick-taken"):
        chat_client("bob", password="the-right-one")
        app = open_app(
            "bob", password="a-wrong-one", register=case == "nick-taken", connected=False
        )
    elif case == "registration-closed":
        server = make_server(registration_open=False, db_url=f"sqlite:///{tmp_path / 'closed.db'}")
        app = open_app("newcomer", server=server, connected=False)
    elif case == "unreachable":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now

        class Nowhere:
            address = ("127.0.0.1", port)

        app = open_app("bob", server=Nowhere(), connected=False)
    else:
        # Reached by an address the certificate does not name.
        server = make_server(host="0.0.0.0", db_url=f"sqlite:///{tmp_path / 'any.db'}")

        class OtherName:
            address = ("127.0.0.2", server.address[1])

        app = open_app("bob", server=OtherName(), connected=False)
    text = problem_of(app)
    assert expected in text
    assert app._client is None


def test_settings_remember_the_form_and_window_size_but_never_the_password(
    ctk, gui_server, ca_file, tmp_path
):
    host, port = gui_server.address
    store = SettingsStore(tmp_path / "cfg")
    store.save(Settings(geometry="1000x640"))
    app = App(store)
    try:
        page = app.connect_page
        for entry, value in (
            (page.host, host),
            (page.port, str(port)),
            (page.ca_file, str(ca_file)),
            (page.nick, "sam"),
            (page.password, "hunter2-very-secret"),
        ):
            entry.delete(0, "end")
            entry.insert(0, value)
        page.register.select()
        page.connect_button.invoke()
        pump(app, lambda: app.statusbar.state == "connected", what="connected")
        pump(app, lambda: app.winfo_width() == 1000, what="remembered size applied")
        app.geometry("1040x660")
        pump(app, lambda: app.winfo_width() == 1040)
    finally:
        app.shutdown(timeout=0.5)
        app.wait_closed(10)
    saved = store.load()
    assert (saved.host, saved.port, saved.ca_file, saved.nick, saved.register) == (
        host,
        port,
        str(ca_file),
        "sam",
        True,
    )
    assert saved.geometry == "1040x660"
    # Every file the app keeps, the end-to-end key store's folder included.
    for path in (tmp_path / "cfg").rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    again = App(store)
    try:
        pump(again)
        page = again.connect_page
        assert page.host.get() == host and page.port.get() == str(port)
        assert page.nick.get() == "sam" and page.ca_file.get() == str(ca_file)
        assert page.password.get() == ""
        assert again.winfo_width() == 1040
    finally:
        again.shutdown(timeout=0.5)
        again.wait_closed(10)
