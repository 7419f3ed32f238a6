# The operator's configuration: the TOML file, PARLEY_* variables and flags in
# their order (server/config_file.py), every key's type and range with errors
# that name the key and the source (server/config_schema.py), --print-config
# and the shipped sample (server/config_render.py), and a real server started
# with --config honouring a limit from the file through a real TLS connection.

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from parley_chat.protocol import Ack, Error, Send
from parley_chat.server.config import ServerConfig
from parley_chat.server.config_file import LoadedConfig, command_line_config, default_paths, load
from parley_chat.server.config_render import SAMPLE_PATH, render_sample
from parley_chat.server.config_schema import BY_NAME, KEYS, TABLES, ConfigError, check
from tests.support import RawClient, first_line

ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, toml: str | None, argv=(), env=None) -> LoadedConfig:
    """load() with an optional file given by --config, and no default locations."""
    args = list(argv)
    if toml is not None:
        path = tmp_path / "parley.toml"
        path.write_text(toml, encoding="utf-8")
        args = ["--config", str(path), *args]
    return load(args, env or {}, paths=())


# --- the schema covers ServerConfig exactly --------------------------------------------


def test_every_field_has_exactly_one_key_with_the_fields_type():
    names = [f.name for f in dataclasses.fields(ServerConfig)]
    assert sorted(k.name for k in KEYS) == sorted(names)
    assert len(KEYS) == len(BY_NAME)
    defaults = ServerConfig()
    for key in KEYS:
        assert key.table in TABLES, key.name
        assert isinstance(getattr(defaults, key.name), key.kind), key.name
        assert key.help.endswith("."), key.name


def test_every_default_is_within_its_own_range():
    defaults = ServerConfig()
    for key in KEYS:
        value = getattr(defaults, key.name)
        as_toml = str(value) if isinstance(value, Path) else value
        assert check(key, as_toml, "defaults") == value, key.name


def test_every_env_name_and_flag_is_unique():
    envs = [k.env for k in KEYS]
    flags = [f for k in KEYS for f in k.flags]
    assert len(set(envs)) == len(envs) and len(set(flags)) == len(flags)
    # The names from before the file still work.
    assert BY_NAME["db_url"].env == "PARLEY_DB" and "--db" in BY_NAME["db_url"].flags
    assert BY_NAME["certs_dir"].env == "PARLEY_CERTS" and "--certs" in BY_NAME["certs_dir"].flags


# --- the sample --------------------------------------------------------------------------


def test_the_shipped_sample_is_the_generated_one():
    assert SAMPLE_PATH.read_text(encoding="utf-8") == render_sample(), (
        "server/parley.sample.toml is stale: run `python -m parley_chat.server --print-sample > "
        "server/parley.sample.toml`"
    )


def test_the_sample_lists_every_field_once_under_its_table_with_its_default():
    text = SAMPLE_PATH.read_text(encoding="utf-8")
    # Every setting is commented out; uncommented, the file is the defaults, exactly.
    uncommented = re.sub(r"(?m)^#(\w+ = )", r"\1", text)
    data = tomllib.loads(uncommented)
    assert list(data) == list(TABLES)
    seen = {name: (table, value) for table, keys in data.items() for name, value in keys.items()}
    assert sorted(seen) == sorted(f.name for f in dataclasses.fields(ServerConfig))
    defaults = ServerConfig()
    for name, (table, value) in seen.items():
        assert table == BY_NAME[name].table
        expected = getattr(defaults, name)
        assert (Path(value) if isinstance(expected, Path) else value) == expected, name
    # Read as it ships (everything commented), it changes nothing.
    assert load(["--config", str(SAMPLE_PATH)], {}).config == ServerConfig()


def test_print_sample_prints_the_sample():
    proc = subprocess.run(
        [sys.executable, "-m", "parley_chat.server", "--print-sample"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == SAMPLE_PATH.read_text(encoding="utf-8")


# --- precedence --------------------------------------------------------------------------


def test_defaults_then_file_then_environment_then_flags(tmp_path):
    toml = """
[server]
port = 6001
host = "10.0.0.1"
server_name = "from-file"

[frames]
max_text_chars = 100
"""
    loaded = _load(tmp_path, toml)
    cfg, src = loaded.config, loaded.sources
    assert (cfg.port, cfg.host, cfg.max_text_chars) == (6001, "10.0.0.1", 100)
    assert src["port"] == f"file {tmp_path / 'parley.toml'}" and src["log_level"] == "default"

    env = {"PARLEY_PORT": "6002", "PARLEY_MAX_TEXT_CHARS": "200"}
    loaded = _load(tmp_path, toml, env=env)
    assert (loaded.config.port, loaded.config.max_text_chars) == (6002, 200)
    assert loaded.config.host == "10.0.0.1"  # the file still counts where env says nothing
    assert loaded.sources["port"] == "env PARLEY_PORT"

    loaded = _load(tmp_path, toml, ["--port", "6003", "--server-name", "from-flag"], env)
    assert (loaded.config.port, loaded.config.server_name) == (6003, "from-flag")
    assert loaded.config.max_text_chars == 200
    assert loaded.sources["port"] == "flag --port"
    assert loaded.sources["server_name"] == "flag --server-name"
    assert loaded.sources["max_text_chars"] == "env PARLEY_MAX_TEXT_CHARS"


def test_an_empty_environment_variable_counts_as_unset(tmp_path):
    loaded = _load(tmp_path, "[server]\nport = 6001\n", env={"PARLEY_PORT": ""})
    assert loaded.config.port == 6001


def test_booleans_from_file_env_and_flags(tmp_path):
    toml = "[accounts]\nregistration_open = false\n"
    assert _load(tmp_path, toml).config.registration_open is False
    assert _load(tmp_path, toml, env={"PARLEY_REGISTRATION_OPEN": "yes"}).config.registration_open
    loaded = _load(tmp_path, toml, ["--registration-open"])
    assert loaded.config.registration_open and loaded.sources["registration_open"] == (
        "flag --registration-open"
    )
    loaded = _load(tmp_path, None, ["--no-backup-before-migrate"])
    assert loaded.config.backup_before_migrate is False
    assert loaded.sources["backup_before_migrate"] == "flag --no-backup-before-migrate"
    loaded = _load(tmp_path, None, ["--registration", "closed"])
    assert loaded.config.registration_open is False


def test_floats_accept_whole_numbers_and_log_level_any_case(tmp_path):
    loaded = _load(tmp_path, '[flood]\nflood_rate = 7\n[logging]\nlog_level = "debug"\n')
    assert loaded.config.flood_rate == 7.0 and isinstance(loaded.config.flood_rate, float)
    assert loaded.config.log_level == "DEBUG"
    assert _load(tmp_path, None, ["--log-level", "warning"]).config.log_level == "WARNING"


def test_which_file_is_read(tmp_path, monkeypatch):
    first, second, named = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "named.toml"
    second.write_text("[server]\nport = 7002\n")
    named.write_text("[server]\nport = 7003\n")
    # No file named: the first default location that exists.
    loaded = load([], {}, paths=(first, second))
    assert loaded.config.port == 7002 and loaded.file == second
    assert loaded.file_named_by == "default location"
    first.write_text("[server]\nport = 7001\n")
    assert load([], {}, paths=(first, second)).config.port == 7001
    # PARLEY_CONFIG names one; --config wins over it; neither merges with the defaults' files.
    loaded = load([], {"PARLEY_CONFIG": str(named)}, paths=(first,))
    assert loaded.config.port == 7003 and loaded.file_named_by == "PARLEY_CONFIG"
    loaded = load(["--config", str(second)], {"PARLEY_CONFIG": str(named)}, paths=(first,))
    assert loaded.config.port == 7002 and loaded.file_named_by == "--config"
    # Nothing anywhere: the defaults, and the places looked at are remembered.
    loaded = load([], {}, paths=(tmp_path / "none.toml",))
    assert loaded.file is None and loaded.searched == (tmp_path / "none.toml",)
    assert loaded.config == ServerConfig()


def test_default_paths_are_the_working_directory_then_the_config_folders(tmp_path):
    paths = default_paths(tmp_path)
    assert paths[0] == tmp_path / "parley.toml"
    assert [p.name for p in paths[1:]] == ["server.toml", "server.toml"]
    assert all(p.parent.name == "parley" for p in paths[1:])


def test_the_flags_from_before_the_file_keep_working():
    env = {"PARLEY_PORT": "6000", "PARLEY_DB": "sqlite:///env.db", "PARLEY_CERTS": "/e"}
    cfg = ServerConfig.from_args(["--host", "0.0.0.0", "--scrypt-n", "1024"], env)
    assert (cfg.host, cfg.port, cfg.db_url, cfg.scrypt_n) == (
        "0.0.0.0",
        6000,
        "sqlite:///env.db",
        1024,
    )
    assert cfg.certs_dir == Path("/e")
    cfg = ServerConfig.from_args(["--db", "sqlite:///f.db", "--certs", "/c"], env)
    assert cfg.db_url == "sqlite:///f.db" and cfg.certs_dir == Path("/c")


# --- refused values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # unknown keys and tables, and keys in the wrong place
        (
            "[frames]\nmax_txt_chars = 5\n",
            r"\[frames\]: unknown key max_txt_chars \(did you mean max_text_chars\?\)",
        ),
        ("[limit]\nport = 1\n", r"unknown table \[limit\]"),
        ("port = 1\n", r"port must be inside a table: put it under \[server\]"),
        ("[server]\nmax_text_chars = 5\n", r"max_text_chars belongs in \[frames\], not \[server\]"),
        ("server = 1\n", r"server must be one table, written \[server\]"),
        ("[[server]]\nport = 1\n", r"server must be one table, written \[server\]"),
        (
            "[server]\nhost = 2026-01-01\n",
            r"host = 2026-01-01: expected a string, got a date or time",
        ),
        ("[server]\nport = " + "9" * 5000 + "\n", r"is not valid TOML: Exceeds the limit"),
        # wrong types
        (
            '[server]\nport = "5555"\n',
            r"\[server\]: port = '5555': expected a whole number, got a string",
        ),
        (
            "[frames]\nmax_text_chars = 4000.0\n",
            r"max_text_chars = 4000.0: expected a whole number, got a decimal number",
        ),
        ("[accounts]\nregistration_open = 1\n", r"registration_open = 1: expected true or false"),
        ("[flood]\nflood_rate = true\n", r"flood_rate = true: expected a number, got a boolean"),
        ("[server]\nhost = [1, 2]\n", r"host = \[1, 2\]: expected a string, got an array"),
        ("[tls]\ncerts_dir = 5\n", r"certs_dir = 5: expected a string"),
        # out of range: zero, negative, huge, NaN, infinite, not a power of two, empty
        ("[frames]\nmax_text_chars = 0\n", r"max_text_chars = 0: must be 1 to 16000"),
        ("[server]\nport = -1\n", r"port = -1: must be 0 to 65535"),
        ("[threads]\nio_threads = 0\n", r"io_threads = 0: must be 1 to 64"),
        (
            "[connections]\nsend_queue_bytes = 100000000000000000000\n",
            r"send_queue_bytes = 100000000000000000000: must be 65536 to 1073741824 bytes",
        ),
        ("[tls]\nhandshake_timeout = nan\n", r"handshake_timeout = nan: expected a finite number"),
        ("[flood]\nflood_rate = inf\n", r"flood_rate = inf: expected a finite number"),
        ("[flood]\nflood_rate = 0\n", r"flood_rate = 0.0: must be 0.01 to 1000000"),
        (
            "[connections]\nlogin_timeout = -5\n",
            r"login_timeout = -5.0: must be 0.1 to 3600 seconds",
        ),
        ("[accounts]\nscrypt_n = 1000\n", r"scrypt_n = 1000: must be a power of two, 2 to 1048576"),
        ('[server]\nhost = ""\n', r"host = '': must not be empty"),
        (
            '[server]\nserver_name = "' + "x" * 101 + '"\n',
            r"server_name = 'x+\.\.\.: must be 1 to 100 characters",
        ),
        ('[logging]\nlog_level = "loud"\n', r"log_level = 'loud': must be one of DEBUG, INFO"),
        (
            "[connections]\nidle_ping_after = 120\n",
            r"idle_close_after must be longer than idle_ping_after: idle_close_after = 90.0 \(default\), idle_ping_after = 120.0 \(file ",
        ),
        # a broken file
        ("[server\nport = 1\n", r"is not valid TOML: .*line 1"),
        ("[server]\nport = \n", r"is not valid TOML"),
        ("[server]\nport = 1\nport = 2\n", r"is not valid TOML"),
    ],
)
def test_a_refused_file_value_names_the_key_and_the_file(tmp_path, toml, expected):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, toml)
    message = str(caught.value)
    assert re.search(expected, message), message
    assert str(tmp_path / "parley.toml") in message


def test_a_missing_or_unreadable_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"none.toml \(from --config\) does not exist"):
        load(["--config", str(tmp_path / "none.toml")], {}, paths=())
    with pytest.raises(ConfigError, match=r"none.toml \(from PARLEY_CONFIG\) does not exist"):
        load([], {"PARLEY_CONFIG": str(tmp_path / "none.toml")}, paths=())
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[server]\nserver_name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin.toml is not UTF-8 text"):
        load(["--config", str(latin)], {}, paths=())
    with pytest.raises(ConfigError, match=r"cannot read config file"):
        load(["--config", str(tmp_path)], {}, paths=())  # a directory


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"PARLEY_PORT": "abc"},
            r"environment variable PARLEY_PORT: port = 'abc': expected a whole number",
        ),
        (
            {"PARLEY_PORT": "70000"},
            r"environment variable PARLEY_PORT: port = 70000: must be 0 to 65535",
        ),
        (
            {"PARLEY_FLOOD_RATE": "nan"},
            r"environment variable PARLEY_FLOOD_RATE: flood_rate = nan: expected a finite number",
        ),
        (
            {"PARLEY_REGISTRATION_OPEN": "maybe"},
            r"PARLEY_REGISTRATION_OPEN: registration_open = 'maybe': expected true or false",
        ),
        (
            {"PARLEY_MAX_ROOMS": "1e3"},
            r"PARLEY_MAX_ROOMS: max_rooms = '1e3': expected a whole number",
        ),
        (
            {"PARLEY_PORT": "9" * 5000},
            r"PARLEY_PORT: port = '9+\.\.\.: expected a whole number$",
        ),
        ({"PARLEY_LOG_LEVEL": "chatty"}, r"PARLEY_LOG_LEVEL: log_level = 'chatty': must be one of"),
    ],
)
def test_a_refused_environment_value_names_the_variable(env, expected):
    with pytest.raises(ConfigError, match=expected):
        load([], env, paths=())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "99999"], r"flag --port: port = 99999: must be 0 to 65535"),
        (["--flood-rate", "-1"], r"flag --flood-rate: flood_rate = -1.0: must be 0.01 to"),
        (
            ["--max-text-chars", "lots"],
            r"flag --max-text-chars: max_text_chars = 'lots': expected a whole number",
        ),
        (
            ["--switch-interval", "inf"],
            r"flag --switch-interval: switch_interval = inf: expected a finite number",
        ),
        (["--scrypt-n", "0"], r"flag --scrypt-n: scrypt_n = 0: must be a power of two"),
    ],
)
def test_a_refused_flag_value_names_the_flag(argv, expected):
    with pytest.raises(ConfigError, match=expected):
        load(argv, {}, paths=())


def test_unknown_parley_variables_are_left_to_their_tools():
    loaded = load([], {"PARLEY_PASSWORD": "x", "PARLEY_CONFIG_DIR": "/tmp/x"}, paths=())
    assert loaded.config == ServerConfig()


def test_a_refused_setting_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[frames]\nmax_text_chars = -3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "parley_chat.server", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"parley: config error: {bad} [frames]: max_text_chars = -3: must be 1 to 16000\n"
    )
    assert proc.stdout == ""


def test_command_line_config_exits_like_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        command_line_config(["--port", "nan"], {})
    assert caught.value.code == 2
    assert "parley: config error: flag --port: port = 'nan'" in capsys.readouterr().err
    cfg = command_line_config(["--port", "0"], {"PARLEY_CONFIG": str(SAMPLE_PATH)})
    assert cfg.port == 0


# --- --print-config ----------------------------------------------------------------------


def test_print_config_shows_every_value_with_its_source_and_reads_back(tmp_path):
    path = tmp_path / "ops.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\n[rooms]\nmax_rooms = 20\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "--config",
            str(path),
            "--port",
            "6100",
            "--print-config",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PARLEY_JOIN_RATE": "2.5", "PARLEY_CONFIG": "", "PARLEY_MDNS": ""},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"# config file: {path} (from --config)" in out
    lines = {line.split(" = ")[0]: line for line in out.splitlines() if " = " in line}
    assert lines["host"].endswith(f"# file {path}") and '"0.0.0.0"' in lines["host"]
    assert lines["max_rooms"].endswith(f"# file {path}")
    assert lines["port"].endswith("# flag --port") and "6100" in lines["port"]
    assert lines["join_rate"].endswith("# env PARLEY_JOIN_RATE") and "2.5" in lines["join_rate"]
    assert lines["max_text_chars"].endswith("# default")
    assert len(lines) == len(KEYS)
    # The output is a configuration file that gives the same settings.
    again = tmp_path / "again.toml"
    again.write_text(out)
    expected = ServerConfig().replace(host="0.0.0.0", max_rooms=20, port=6100, join_rate=2.5)
    assert load(["--config", str(again)], {}, paths=()).config == expected


def test_print_config_says_where_it_looked_when_there_is_no_file(tmp_path):
    from parley_chat.server.config_render import render_effective

    text = render_effective(load([], {}, paths=(tmp_path / "x.toml",)))
    assert f"# config file: none (looked for {tmp_path / 'x.toml'})" in text


def test_print_config_hides_a_database_password(tmp_path):
    from parley_chat.server.config_render import render_effective

    url = "postgresql://parley:s3cret-pw@db.example/parley"
    text = render_effective(load(["--db", url], {}, paths=(tmp_path / "x.toml",)))
    (line,) = [ln for ln in text.splitlines() if ln.startswith("db_url = ")]
    assert "s3cret-pw" not in text
    assert "postgresql://parley:***@db.example/parley" in line and line.endswith("# flag --db")


# --- a real server honours the file --------------------------------------------------------


def test_a_server_started_with_config_keeps_the_files_limits(tmp_path, certs_dir, ca_file):
    path = tmp_path / "server.toml"
    path.write_text(
        f"""
[server]
port = 0
server_name = "from-the-file"

[tls]
certs_dir = {str(certs_dir)!r}

[frames]
max_text_chars = 50

[accounts]
scrypt_n = 16

[database]
db_url = "sqlite:///{(tmp_path / "file.db").as_posix()}"
backup_before_migrate = false
""",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley_chat.server", "--config", str(path)],
        cwd=tmp_path,  # nothing of the checkout's working directory is used
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    try:
        line = first_line(proc)
        assert line.startswith("parley listening on 127.0.0.1:")
        port = int(line.split()[3].rsplit(":", 1)[1])
        client = RawClient(("127.0.0.1", port), ca_file)
        try:
            welcome, _ = client.login("filed")
            assert welcome.max_text == 50 and welcome.server == "from-the-file"
            client.send(Send(id="long", text="x" * 51, room="#lobby"))
            refused = client.expect(Error, ref="long")
            assert refused.code == "text-too-long" and "over 50 characters" in refused.message
            client.send(Send(id="fits", text="y" * 50, room="#lobby"))
            assert client.expect(Ack, ref="fits").id >= 1
        finally:
            client.close()
        assert (tmp_path / "file.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        finally:
            proc.kill()
    assert rc == 0


def test_nan_never_reaches_the_config():
    # Python's float() reads "nan" and NaN compares false with every bound: the
    # schema must refuse it explicitly, everywhere a float is read.
    for key in KEYS:
        if key.kind is float:
            with pytest.raises(ConfigError, match="finite"):
                load([key.flags[0], "nan"], {}, paths=())


# --- the operator's tools read the same file ------------------------------------------------


def test_admin_and_logs_find_the_database_and_scrypt_cost_in_the_file(tmp_path, monkeypatch):
    import io
    import sqlite3

    from parley_chat.server import admin, logs

    monkeypatch.chdir(tmp_path)  # no ./parley.toml but ours below is named
    db = tmp_path / "from-file.db"
    path = tmp_path / "ops.toml"
    path.write_text(
        f'[database]\ndb_url = "sqlite:///{db.as_posix()}"\nbackup_before_migrate = false\n'
        "[accounts]\nscrypt_n = 16\n"
    )
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        ["--config", str(path), "add", "alice"],
        environ={"PARLEY_PASSWORD": "pw"},
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    con = sqlite3.connect(db)
    try:
        (stored,) = con.execute("SELECT password_hash FROM users WHERE nick = 'alice'").fetchone()
    finally:
        con.close()
    assert stored.startswith("scrypt$16$")  # the file's cost, not the default 2**17

    out = io.StringIO()
    argv = ["--config", str(path), "query", "SELECT nick FROM users", "--format", "csv"]
    assert logs.main(argv, environ={}, stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().splitlines() == ["nick", "alice"]
    # PARLEY_DB beats the file, and --db beats both, as for the server.
    other = tmp_path / "other.db"
    err = io.StringIO()
    env = {"PARLEY_CONFIG": str(path), "PARLEY_DB": f"sqlite:///{other.as_posix()}"}
    assert logs.main(["stats"], environ=env, stdout=io.StringIO(), stderr=err) == 1
    assert str(other) in err.getvalue()  # not created: the logs tool never creates one
    argv = ["--db", f"sqlite:///{db.as_posix()}", "query", "SELECT count(*) AS n FROM users"]
    out = io.StringIO()
    assert logs.main(argv, environ=env, stdout=out, stderr=io.StringIO()) == 0
    assert "1" in out.getvalue()


def test_admin_and_logs_refuse_a_bad_file_with_exit_2(tmp_path):
    import io

    from parley_chat.server import admin, logs

    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\ndb_url = 5\n")
    err = io.StringIO()
    assert admin.main(["--config", str(bad), "users"], environ={}, stderr=err) == 2
    assert f"config error: {bad} [database]: db_url = 5: expected a string" in err.getvalue()
    err = io.StringIO()
    assert logs.main(["--config", str(bad), "stats"], environ={}, stderr=err) == 2
    assert f"config error: {bad} [database]: db_url = 5" in err.getvalue()


def test_the_operators_guide_lists_every_key_in_its_table():
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## Configuration") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for key in KEYS:
        row = next((r for r in rows if f"`{key.name}`" in r.split("|")[1]), None)
        assert row is not None, f"docs/operations.md has no row for {key.name}"
        assert row.split("|")[2].strip() == key.table, key.name
