# Tests for server/config.py: the defaults, the flags, validation.

from pathlib import Path

import pytest

from parley_chat.server.config import DEFAULT_DB_URL, ServerConfig


def test_defaults_are_the_documented_ones():
    cfg = ServerConfig()
    assert (cfg.host, cfg.port, cfg.db_url) == ("127.0.0.1", 5555, DEFAULT_DB_URL)
    assert cfg.certs_dir == Path("certs")
    assert cfg.max_line_bytes == 64 * 1024
    assert cfg.max_text_chars == 4000
    assert cfg.handshake_timeout == 10.0 and cfg.login_timeout == 30.0
    assert cfg.idle_ping_after < cfg.idle_close_after
    assert cfg.send_queue_bytes == 1024 * 1024
    assert cfg.replay_cap == 500 and cfg.fresh_room_messages == 50
    assert cfg.scrypt_n == 2**17 and cfg.login_failures == 5
    assert cfg.registration_open is True


def test_the_hardening_caps_have_their_documented_defaults():
    cfg = ServerConfig()
    # Handshakes: one address holds at most 16 of the 256 slots.
    assert (cfg.max_handshakes, cfg.max_handshakes_per_ip) == (256, 16)
    assert cfg.max_connections_per_ip == 16 and cfg.listen_backlog == 1024
    # Rooms: per user, per server, and the pace of joins.
    assert (cfg.max_rooms_per_user, cfg.max_rooms) == (100, 1000)
    assert (cfg.join_burst, cfg.join_rate) == (10, 0.5)
    # Accounts and logins: Ergo's 30 accounts per 10 minutes per address.
    assert (cfg.registrations_per_ip, cfg.registration_window) == (30, 600.0)
    assert (cfg.login_failures, cfg.login_failures_per_ip, cfg.login_failure_window) == (
        5,
        30,
        300.0,
    )
    # Flood control (before login too), replay and reply bounds, kernel buffer.
    assert (cfg.flood_burst, cfg.flood_rate, cfg.flood_backlog) == (10, 5.0, 200)
    assert cfg.replay_max_bytes == 1024 * 1024 and cfg.max_reply_queue_bytes == 8 * 1024 * 1024
    assert cfg.socket_send_buffer == 256 * 1024 and cfg.rooms_page == 500
    # The server's threads: a few loops and pools, whatever the number of clients.
    assert (cfg.io_threads, cfg.login_workers, cfg.request_workers) == (1, 4, 4)


def test_presence_grace_defaults_to_20_seconds_and_is_never_negative():
    assert ServerConfig().presence_grace == 20.0
    assert ServerConfig(presence_grace=0).presence_grace == 0
    with pytest.raises(ValueError, match="presence_grace"):
        ServerConfig(presence_grace=-1)


def test_flags_override_environment_which_overrides_defaults():
    env = {"PARLEY_PORT": "6000", "PARLEY_DB": "sqlite:///env.db"}
    cfg = ServerConfig.from_args(["--host", "0.0.0.0"], env)
    assert (cfg.host, cfg.port, cfg.db_url) == ("0.0.0.0", 6000, "sqlite:///env.db")
    cfg = ServerConfig.from_args(
        ["--port", "7000", "--registration", "closed", "--certs", "/c"], env
    )
    assert cfg.port == 7000 and cfg.registration_open is False and cfg.certs_dir == Path("/c")
    assert cfg.cert_file == Path("/c/server.pem") and cfg.key_file == Path("/c/server.key")


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        ServerConfig().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_text_chars": 0},
        {"max_text_chars": 20_000},
        {"max_line_bytes": 10},
        {"port": 70000},
        {"handshake_timeout": 0},
        {"idle_ping_after": 10, "idle_close_after": 5},
    ],
)
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValueError):
        ServerConfig(**bad)


def test_for_tests_is_cheap_and_uses_any_free_port(tmp_path):
    cfg = ServerConfig.for_tests("sqlite:///x.db", tmp_path, replay_cap=7)
    assert cfg.port == 0 and cfg.scrypt_n <= 2**6 and cfg.replay_cap == 7
