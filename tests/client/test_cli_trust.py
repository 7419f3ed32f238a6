# The terminal client's trust on first use, run as a user runs it (a real
# process, no CA file, a real server): an invite from `python -m parley_chat.server invite`
# connects with no question, the pin (the CA) then carries on across a
# renewal, a new CA is refused loudly, and a fresh client without a CA file or
# an invite says what to do instead of "CA file not found".

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint
from parley_chat.client.cli import EXIT_OK, EXIT_TLS, EXIT_USAGE, PASSWORD_ENV, main
from parley_chat.client.e2e.files import PASSPHRASE_ENV
from parley_chat.client.settings import server_key

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working directory without certs/ca.pem, and the client's settings directory."""
    (tmp_path / "cwd").mkdir()
    return tmp_path


def cli(
    home: Path, *args: str, lines: tuple[str, ...] = ("hi",)
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        PASSWORD_ENV: "secret-pw",
        "PARLEY_CONFIG_DIR": str(home / "config"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "parley_chat.client.cli", *args],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=home / "cwd",
        env=env,
    )


def invite_for(certs: Path, port: int) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley_chat.server",
            "invite",
            "--certs",
            str(certs),
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def pins(home: Path) -> dict[str, dict[str, str]]:
    return json.loads((home / "config" / "known_servers.json").read_text())


def test_an_invite_connects_without_a_question_and_the_ca_pin_survives_renewal(
    home, tmp_path, own_server
):
    paths = generate(tmp_path / "certs")
    server = own_server()
    port = server.address[1]
    invite = invite_for(tmp_path / "certs", port)
    first = cli(home, invite, "--nick", "alice", "--register")
    assert first.returncode == EXIT_OK, first.stderr
    assert "matches the invite" in first.stderr
    ca_fp = fingerprint_sha256(paths.ca_cert.read_bytes())
    assert pins(home)[server_key("127.0.0.1", port)]["fingerprint"] == ca_fp

    # python -m parley_chat.certs --renew, and a restart: the user gets in with no prompt.
    server.stop()
    generate(tmp_path / "certs", renew=True)
    renewed = own_server(port=port)
    again = cli(home, "--host", "127.0.0.1", "--port", str(port), "--nick", "alice")
    assert again.returncode == EXIT_OK, again.stderr
    assert "first connection" not in again.stderr

    # A new CA on the same address: refused loudly, in plain words, nothing sent.
    renewed.stop()
    generate(tmp_path / "certs", force=True)
    own_server(port=port)
    result = cli(home, "--host", "127.0.0.1", "--port", str(port), "--nick", "alice")
    assert result.returncode == EXIT_TLS
    assert "WARNING" in result.stderr and "new CA" in result.stderr
    assert "--forget-pin" in result.stderr
    assert "certificate verify failed" not in result.stderr
    assert "Traceback" not in result.stderr
    key = server_key("127.0.0.1", port)
    assert pins(home)[key]["fingerprint"] == ca_fp  # the pin is kept

    forgot = cli(home, "--host", "127.0.0.1", "--port", str(port), "--forget-pin", lines=())
    assert forgot.returncode == EXIT_OK and "forgot" in forgot.stderr
    assert key not in pins(home)


def test_a_fresh_client_without_ca_or_invite_says_what_to_do(home, server):
    host, port = server.address
    result = cli(home, "--host", host, "--port", str(port), "--nick", "alice")
    assert result.returncode == EXIT_TLS
    assert "pass the invite line" in result.stderr and "--ca FILE" in result.stderr
    assert "does not exist" not in result.stderr and "CA file" not in result.stderr
    assert not (home / "config" / "known_servers.json").exists()


def test_a_wrong_invite_is_refused_and_a_bad_one_is_a_usage_error(home, server):
    host, port = server.address
    wrong = cli(home, f"parley://{host}:{port}#sha256={'ab' * 32}", "--nick", "alice")
    assert wrong.returncode == EXIT_TLS
    assert "WARNING" in wrong.stderr and "not the server in the invite" in wrong.stderr
    assert not (home / "config" / "known_servers.json").exists()
    bad = cli(home, "parley://chat:99999", "--nick", "alice")
    assert bad.returncode == EXIT_USAGE and "bad invite" in bad.stderr


class _Tty(io.StringIO):
    """Standard input that says it is a terminal (the prompt is only asked there)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["y", "n"])
def test_on_a_terminal_the_first_use_asks_with_the_short_ca_fingerprint(
    answer, server, ca_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no certs/ca.pem here
    host, port = server.address
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--host", host, "--port", str(port), "--nick", "tty", "--register"],
        stdin=_Tty(f"{answer}\nhello\n"),
        stdout=out,
        stderr=err,
        # The key passphrase from the environment: otherwise getpass would ask the
        # real terminal (or warn and read pytest's stdin), not this test.
        environ={
            PASSWORD_ENV: "secret-pw",
            PASSPHRASE_ENV: "a key passphrase",
            "PARLEY_CONFIG_DIR": str(tmp_path / "cfg"),
            "PARLEY_DATA_DIR": str(tmp_path / "data"),
        },
    )
    ca_fp = fingerprint_sha256(ca_file.read_bytes())
    assert short_fingerprint(ca_fp) in err.getvalue()
    assert "Trust it and connect? [y/N]" in err.getvalue()
    known = tmp_path / "cfg" / "known_servers.json"
    if answer == "y":
        assert code == EXIT_OK, err.getvalue()
        assert json.loads(known.read_text())[server_key(host, port)]["fingerprint"] == ca_fp
    else:
        assert code == EXIT_TLS and "nothing was sent" in err.getvalue()
        assert not known.exists()
