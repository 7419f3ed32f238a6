# Joining a LAN server from the connect screen, in a real window against real
# servers: a pasted invite connects with no trust question (and a wrong one is
# refused loudly), a fresh client with no CA file takes the trust-on-first-use
# path, a server certificate pinned by an older client becomes a pin of its
# CA, and servers found by mDNS are listed and fill in the address on a click.

from __future__ import annotations

import json
import uuid

import pytest

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint
from parley_chat.client.discovery import DiscoveredServer
from parley_chat.client.gui.app import App
from parley_chat.client.gui.connect_policy import DEFAULT_CA_FILE
from parley_chat.client.settings import Pin, Settings, SettingsStore, server_key
from parley_chat.protocol.invite import format_invite
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig
from parley_chat.server.mdns import Advertiser, txt_records
from tests.client.gui.helpers import pump

pytestmark = pytest.mark.gui


def connected_or_panel(app) -> None:
    pump(
        app,
        lambda: app.statusbar.state == "connected" or app.connect_page.panel_kind,
        what="connected, or a panel",
    )


def paste_invite(app, line: str) -> None:
    page = app.connect_page
    page.host._entry.focus_force()  # key events go to the focused entry
    pump(app)
    page.host.delete(0, "end")
    page.host.insert(0, line)
    page.host._entry.event_generate("<KeyRelease>")  # as after typing or Ctrl+V
    pump(app, lambda: page.host.get() != line, what="the invite split into the fields")


def test_a_pasted_invite_connects_without_a_trust_question(open_app, gui_server, ca_file, tmp_path):
    host, port = gui_server.address
    ca_fp = fingerprint_sha256(ca_file.read_bytes())
    config = tmp_path / "config-ivy"
    app = open_app("ivy", password=None, ca="", config=config, connected=False)
    paste_invite(app, format_invite(host, port, ca_fp))
    page = app.connect_page
    assert (page.host.get(), page.port.get(), page.ca_file.get()) == (host, str(port), "")
    assert short_fingerprint(ca_fp) in page.ca_hint.cget("text")
    page.password.insert(0, "secret-pw")
    page.submit()
    connected_or_panel(app)
    assert app.connect_page.panel_kind == "" and app.statusbar.state == "connected"
    pins = json.loads((config / "known_servers.json").read_text())
    assert pins[server_key(host, port)]["fingerprint"] == ca_fp


def test_a_wrong_invite_is_refused_loudly_and_a_broken_one_explained(open_app, gui_server):
    host, port = gui_server.address
    app = open_app("ivo", password=None, ca="", connected=False)
    page = app.connect_page
    paste_invite(app, format_invite(host, port, "ab" * 32))
    page.password.insert(0, "secret-pw")
    page.submit()
    connected_or_panel(app)
    assert page.panel_kind == "danger"
    text = page.panel_text()
    assert "not the server in the invite" in text and short_fingerprint("ab" * 32) in text
    assert app._client is None
    page.cancel_button.invoke()
    pump(app, lambda: page.panel_kind == "")
    page.host.delete(0, "end")
    page.host.insert(0, "parley://chat:99999")
    page.submit()
    pump(app, lambda: page.panel_kind == "error", what="the invite problem")
    assert "Check the invite" in page.panel_text() and "port" in page.panel_text()


def test_a_fresh_client_without_a_ca_file_asks_to_trust_on_first_use(
    ctk, gui_server, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no certs/ca.pem here
    host, port = gui_server.address
    store = SettingsStore(tmp_path / "fresh")
    assert store.load().ca_file == DEFAULT_CA_FILE
    app = App(store, settings=Settings(host=host, port=port, nick="newbie", register=True))
    try:
        page = app.connect_page
        assert page.ca_file.get() == ""
        page.password.insert(0, "secret-pw")
        page.submit()
        pump(app, lambda: page.panel_kind, what="a panel")
        assert page.panel_kind == "warn"  # the trust prompt, not "CA file not found"
        assert "First connection" in page.panel_text()
    finally:
        app.shutdown(timeout=0.5)
        app.wait_closed(10)


def test_a_pinned_server_certificate_becomes_a_pin_of_its_ca(open_app, tmp_path, request):
    paths = generate(tmp_path / "certs")
    db = f"sqlite:///{tmp_path / 'own.db'}"
    server = ChatServer(ServerConfig.for_tests(db, tmp_path / "certs"))
    server.start()
    request.addfinalizer(server.stop)
    host, port = server.address
    config = tmp_path / "config-old"
    old_leaf = paths.server_cert.read_text()
    SettingsStore(config).set_pin(host, port, Pin(old_leaf, fingerprint_sha256(old_leaf)))
    # The operator renews; the old client's pin is the certificate just replaced.
    server.stop()
    generate(tmp_path / "certs", renew=True)
    renewed = ChatServer(ServerConfig.for_tests(db, tmp_path / "certs", port=port))
    renewed.start()
    request.addfinalizer(renewed.stop)
    app = open_app("olga", ca="", config=config, connected=False, server=renewed)
    connected_or_panel(app)
    assert app.connect_page.panel_kind == "" and app.statusbar.state == "connected"
    pin = SettingsStore(config).get_pin(host, port)
    assert pin is not None and pin.fingerprint == fingerprint_sha256(paths.ca_cert.read_bytes())


def test_servers_found_are_listed_and_a_click_fills_in_the_address(open_app):
    app = open_app("finn", password=None, connected=False)
    page = app.connect_page
    assert not page.found_frame.winfo_ismapped()  # none found (PARLEY_MDNS=off in tests)
    found = [
        DiscoveredServer("parley on lab-pc", "10.1.2.3", 5555, fingerprint="ab" * 32),
        DiscoveredServer("parley on teacher", "fd00::7", 6000),
    ]
    page.show_servers(found)
    pump(app, lambda: page.found_frame.winfo_ismapped(), what="the list shown")
    labels = [b.cget("text") for b in page.found_buttons]
    assert "parley on lab-pc" in labels[0] and "10.1.2.3:5555" in labels[0]
    assert "[fd00::7]:6000" in labels[1]
    page.found_buttons[1].invoke()
    pump(app)
    assert (page.host.get(), page.port.get()) == ("fd00::7", "6000")
    # An advertised fingerprint is never trusted: nothing expected from it.
    page.found_buttons[0].invoke()
    pump(app)
    assert page.get_form().expected_fingerprint == ""
    page.show_servers([])
    pump(app, lambda: not page.found_frame.winfo_ismapped(), what="the list hidden")


def test_the_connect_screen_lists_a_server_advertised_on_loopback(
    ctk, gui_server, tmp_path, monkeypatch
):
    # Advertiser and browser both bound to 127.0.0.1: nothing leaves this machine
    # (tests/integration/test_mdns.py shows a loopback-bound pair sends nothing
    # to a LAN). The name is unique, so other servers on loopback do not matter.
    monkeypatch.setenv("PARLEY_MDNS", "on")
    monkeypatch.setenv("PARLEY_MDNS_INTERFACES", "127.0.0.1")
    port = gui_server.address[1]
    name = f"parley gui test {uuid.uuid4().hex[:8]}"
    advertiser = Advertiser(
        name=name,
        port=port,
        addresses=["127.0.0.1"],
        txt=txt_records("ab" * 32, True),
        interfaces=["127.0.0.1"],
    )
    advertiser.start()
    app = App(SettingsStore(tmp_path / "cfg"), settings=Settings(host="elsewhere", port=1))
    try:
        assert advertiser.registered.wait(15), "the advertisement was not registered in time"
        page = app.connect_page
        pump(
            app,
            lambda: any(s.name == name for s in page.found_servers),
            timeout=15,
            what="the advertised server listed",
        )
        index = [s.name for s in page.found_servers].index(name)
        page.found_buttons[index].invoke()
        pump(app)
        assert (page.host.get(), page.port.get()) == ("127.0.0.1", str(port))
    finally:
        app.shutdown(timeout=0.5)
        app.wait_closed(10)
        advertiser.stop()
