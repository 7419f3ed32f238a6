# client/gui/settings.py: the per-user files (no display needed).

from __future__ import annotations

import json
import os

import pytest

from parley_chat.client.gui.settings import (
    Pin,
    Settings,
    SettingsStore,
    config_dir,
    server_key,
)


def test_config_dir_prefers_the_override_then_xdg_then_home(tmp_path):
    assert config_dir({"PARLEY_CONFIG_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    assert config_dir({"XDG_CONFIG_HOME": "/xdg", "HOME": "/h"}).as_posix() == "/xdg/parley"
    assert config_dir({"HOME": "/h"}).as_posix() == "/h/.config/parley"


def test_settings_round_trip_and_defaults(tmp_path):
    store = SettingsStore(tmp_path / "cfg")
    assert store.load() == Settings()  # nothing saved yet
    saved = Settings(
        host="chat.lan",
        port=6000,
        ca_file="",
        nick="alice",
        register=True,
        appearance="dark",
        geometry="1300x800",
    )
    store.save(saved)
    assert store.load() == saved


def test_settings_have_no_password_field_and_never_write_one(tmp_path):
    store = SettingsStore(tmp_path)
    settings = Settings(nick="alice")
    with pytest.raises(AttributeError):
        settings.password = "x"  # type: ignore[attr-defined]  # slots: no such field
    store.save(settings)
    assert "password" not in json.loads((tmp_path / "settings.json").read_text())


def test_bad_or_foreign_values_fall_back_to_defaults(tmp_path):
    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                "host": 5,
                "port": 99999,
                "appearance": "sepia",
                "register": "yes",
                "nick": "bob",
                "password": "leaked?",
                "extra": 1,
            }
        )
    )
    s = SettingsStore(tmp_path).load()
    assert (s.host, s.port, s.appearance, s.register, s.nick) == (
        "127.0.0.1",
        5555,
        "light",
        False,
        "bob",
    )
    (tmp_path / "settings.json").write_text("{not json")
    assert SettingsStore(tmp_path).load() == Settings()


def test_pins_are_per_host_and_port_and_never_silently_replaced(tmp_path):
    store = SettingsStore(tmp_path)
    assert store.get_pin("Chat.LAN", 5555) is None
    pin = Pin(pem="-----BEGIN CERTIFICATE-----\n...", fingerprint="ab" * 32)
    store.set_pin("Chat.LAN", 5555, pin)
    assert store.get_pin("chat.lan", 5555) == pin
    assert store.get_pin("chat.lan", 5556) is None
    store.set_pin("chat.lan", 5555, pin)  # the same pin again is fine
    with pytest.raises(ValueError, match="forget it first"):
        store.set_pin("chat.lan", 5555, Pin(pem="other", fingerprint="cd" * 32))
    assert store.get_pin("chat.lan", 5555) == pin
    assert store.forget_pin("chat.lan", 5555) is True
    assert store.forget_pin("chat.lan", 5555) is False
    store.set_pin("chat.lan", 5555, Pin(pem="other", fingerprint="cd" * 32))
    assert store.known_servers_path == tmp_path / "known_servers.json"


def test_last_seen_is_kept_per_server_and_nick(tmp_path):
    store = SettingsStore(tmp_path)
    store.set_last_seen("127.0.0.1", 5555, "Alice", 41)
    store.set_last_seen("127.0.0.1", 5555, "bob", 7)
    store.set_last_seen("127.0.0.1", 6000, "alice", 3)
    assert store.get_last_seen("127.0.0.1", 5555, "alice") == 41  # nicks are case-insensitive
    assert store.get_last_seen("127.0.0.1", 5555, "bob") == 7
    assert store.get_last_seen("127.0.0.1", 6000, "alice") == 3
    assert store.get_last_seen("10.0.0.1", 5555, "alice") is None


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    store = SettingsStore(tmp_path / "new")
    store.save(Settings())
    store.set_last_seen("h", 1, "n", 1)
    assert sorted(os.listdir(tmp_path / "new")) == ["last_seen.json", "settings.json"]


def test_server_key_brackets_ipv6():
    assert server_key("::1", 5555) == "[::1]:5555"
    assert server_key("Host", 1) == "host:1"
