"""The connect form's Server field with several servers (host:port,host2:port2): failover.

The pure part checks the form (no display); the rest types a list into the real
connect screen, with the first server down, and connects to the second.
"""

from __future__ import annotations

import socket

import pytest

from parley_chat.client.gui.app import App
from parley_chat.client.gui.connect_policy import ConnectForm, build_client, check_form
from parley_chat.client.settings import Settings, SettingsStore
from tests.client.gui.helpers import pump


def form(**changes: object) -> ConnectForm:
    values: dict[str, object] = {
        "host": "a.lan",
        "port": 5555,
        "ca_file": "",
        "nick": "alice",
        "password": "pw",
    }
    values.update(changes)
    return ConnectForm(**values)  # type: ignore[arg-type]


def test_a_server_list_gives_every_address_in_order(ca_file):
    several = form(host="a.lan", port=5556, servers="a.lan:5556,b.lan,[::1]:7000")
    assert several.addresses == [("a.lan", 5556), ("b.lan", 5556), ("::1", 7000)]
    assert several.where == "a.lan:5556,b.lan:5556,[::1]:7000"
    assert check_form(several) is None
    client = build_client(
        form(servers="a.lan:1,b.lan:2", ca_file=str(ca_file)), pin=None, last_seen=None
    )
    assert client.addresses == (("a.lan", 1), ("b.lan", 2))
    one = form()
    assert one.addresses == [("a.lan", 5555)] and one.where == "a.lan:5555"


def test_a_bad_server_list_is_a_problem_that_says_how_to_write_one():
    problem = check_form(form(host="a.lan:5555,,b", servers="a.lan:5555,,b"))
    assert problem is not None and problem.title == "Check the server addresses"
    assert "host:port,host2:port2" in problem.detail


@pytest.mark.gui
def test_the_connect_screen_fails_over_to_the_second_server_and_remembers_the_list(
    ctk, gui_server, ca_file, tmp_path
):
    host, port = gui_server.address
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    servers = f"127.0.0.1:{dead},{host}:{port}"
    store = SettingsStore(tmp_path / "cfg")
    store.save(Settings())
    app = App(store)
    try:
        page = app.connect_page
        for entry, value in (
            (page.host, servers),
            (page.port, "5555"),
            (page.ca_file, str(ca_file)),
            (page.nick, "sam"),
            (page.password, "secret-pw"),
        ):
            entry.delete(0, "end")
            entry.insert(0, value)
        page.register.select()
        page.connect_button.invoke()
        pump(app, lambda: app.statusbar.state == "connected", what="connected to the second")
        assert app._client is not None and (app._client.host, app._client.port) == (host, port)
        # The status bar names the server in use, not the whole list.
        assert app.statusbar.state_label.cget("text") == f"Connected as sam to {host}:{port}"
    finally:
        app.shutdown(timeout=0.5)
    saved = store.load()
    assert saved.host == servers  # kept as typed, for the next start


@pytest.mark.gui
@pytest.mark.parametrize(
    ("typed", "host", "port", "servers"),
    [
        ("chat.lan", "chat.lan", 5555, ""),
        ("fe80::1", "fe80::1", 5555, ""),
        ("chat.lan:6000", "chat.lan", 6000, "chat.lan:6000"),
        ("[::1]:6000", "::1", 6000, "[::1]:6000"),
        ("a.lan,b.lan:6000", "a.lan", 5555, "a.lan,b.lan:6000"),
    ],
)
def test_the_server_field_splits_into_the_first_server_and_the_list(
    ctk, tmp_path, typed, host, port, servers
):
    store = SettingsStore(tmp_path / "cfg")
    store.save(Settings())
    app = App(store)
    try:
        page = app.connect_page
        for entry, value in ((page.host, typed), (page.port, "5555")):
            entry.delete(0, "end")
            entry.insert(0, value)
        got = page.get_form()
        assert (got.host, got.port, got.servers) == (host, port, servers)
    finally:
        app.shutdown(timeout=0.5)
