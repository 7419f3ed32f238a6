# client/settings.py: the per-user files and their folders (no display needed).

from __future__ import annotations

import json
import os
import sys

import pytest

from parley_chat.client.settings import (
    Pin,
    Settings,
    SettingsStore,
    config_dir,
    data_dir,
    legacy_dir,
    migrate_legacy,
    server_key,
)


def test_folders_prefer_the_overrides_then_platformdirs(tmp_path, monkeypatch):
    assert config_dir({"PARLEY_CONFIG_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    assert data_dir({"PARLEY_CONFIG_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    env = {"PARLEY_CONFIG_DIR": str(tmp_path / "x"), "PARLEY_DATA_DIR": str(tmp_path / "d")}
    assert data_dir(env) == tmp_path / "d" and config_dir(env) == tmp_path / "x"
    # No override: the OS-correct folders (platformdirs reads XDG_* from os.environ).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    if sys.platform.startswith("linux"):
        assert config_dir({}) == tmp_path / "xdg-config" / "parley"
        assert data_dir({}) == tmp_path / "xdg-data" / "parley"
    assert config_dir({}).name == data_dir({}).name == "parley"
    # Where the client kept everything before platformdirs.
    assert legacy_dir({"XDG_CONFIG_HOME": "/xdg", "HOME": "/h"}).as_posix() == "/xdg/parley"
    assert legacy_dir({"HOME": "/h"}).as_posix() == "/h/.config/parley"


def test_settings_and_pins_live_in_their_own_folders(tmp_path):
    store = SettingsStore(tmp_path / "config", tmp_path / "data")
    store.save(Settings(nick="alice"))
    store.set_pin("h", 1, Pin(pem="p", fingerprint="ab" * 32))
    store.set_last_seen("h", 1, "alice", 5)
    assert os.listdir(tmp_path / "config") == ["settings.json"]
    assert sorted(os.listdir(tmp_path / "data")) == ["known_servers.json", "last_seen.json"]
    assert store.known_servers_path == tmp_path / "data" / "known_servers.json"
    again = SettingsStore(tmp_path / "config", tmp_path / "data")
    assert again.load().nick == "alice" and again.get_last_seen("h", 1, "alice") == 5


def _user_env(tmp_path, monkeypatch) -> dict[str, str]:
    # A home of its own: platformdirs' folders and the old one all under tmp_path.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    for name in ("PARLEY_CONFIG_DIR", "PARLEY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / "cfg")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders are Linux's")
def test_files_from_the_old_folder_move_once_and_never_over_newer_ones(tmp_path, monkeypatch):
    env = _user_env(tmp_path, monkeypatch)
    old = legacy_dir(env)
    old.mkdir(parents=True)
    pin = Pin(pem="-----BEGIN CERTIFICATE-----\n...", fingerprint="ab" * 32)
    SettingsStore(old).set_pin("chat.lan", 5555, pin)
    SettingsStore(old).set_last_seen("chat.lan", 5555, "alice", 41)
    SettingsStore(old).save(Settings(nick="alice"))

    store = SettingsStore.for_user(env)
    new_data = tmp_path / "home" / "data" / "parley"
    # On Linux settings.json already is in the config folder; the data files move.
    assert store.directory == old and store.data_directory == new_data
    assert sorted(store.migrated) == [
        (old / "known_servers.json", new_data / "known_servers.json"),
        (old / "last_seen.json", new_data / "last_seen.json"),
    ]
    assert store.get_pin("chat.lan", 5555) == pin
    assert store.get_last_seen("chat.lan", 5555, "alice") == 41
    assert store.load().nick == "alice"
    assert sorted(os.listdir(old)) == ["settings.json"]
    assert SettingsStore.for_user(env).migrated == []  # once

    # A file left in the old folder never replaces one at the new place.
    SettingsStore(old).set_last_seen("chat.lan", 5555, "alice", 7)
    again = SettingsStore.for_user(env)
    assert again.migrated == [] and again.get_last_seen("chat.lan", 5555, "alice") == 41
    assert (old / "last_seen.json").exists()


def test_an_override_folder_is_used_as_it_is_with_no_migration(tmp_path, monkeypatch):
    env = _user_env(tmp_path, monkeypatch)
    old = legacy_dir(env)
    SettingsStore(old).set_last_seen("h", 1, "n", 3)
    env["PARLEY_CONFIG_DIR"] = str(tmp_path / "override")
    store = SettingsStore.for_user(env)
    assert store.migrated == [] and store.get_last_seen("h", 1, "n") is None
    assert store.directory == store.data_directory == tmp_path / "override"
    assert (old / "last_seen.json").exists()


def test_migration_moves_settings_when_the_config_folder_changed(tmp_path):
    # As on macOS and Windows, where the new folders are not ~/.config/parley.
    old, new = tmp_path / "old", tmp_path / "new"
    SettingsStore(old).save(Settings(nick="bob", appearance="dark"))
    SettingsStore(old).set_pin("h", 1, Pin(pem="p", fingerprint="cd" * 32))
    store = SettingsStore(new / "config", new / "data")
    moved = migrate_legacy(old, store)
    assert sorted(target for _, target in moved) == [
        new / "config" / "settings.json",
        new / "data" / "known_servers.json",
    ]
    assert store.load().nick == "bob" and store.get_pin("h", 1) is not None
    assert os.listdir(old) == []


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
    # A geometry Tk refuses would stop the window from opening at all.
    for bad in ("huge", "1200", "x720", "1200x720+a+b", ""):
        (tmp_path / "settings.json").write_text(json.dumps({"geometry": bad}))
        assert SettingsStore(tmp_path).load().geometry == Settings().geometry, bad
    for good in ("1200x760", "1200x760+40+30", "900x600-0+-20"):
        (tmp_path / "settings.json").write_text(json.dumps({"geometry": good}))
        assert SettingsStore(tmp_path).load().geometry == good


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
