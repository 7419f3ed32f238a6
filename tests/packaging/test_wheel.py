"""The wheel as a user gets it: built from the sdist, installed into a fresh venv far from
the checkout, every command run from there.

One module-scoped install (build, venv, install) serves every test here. The installer is
uv (pinned in requirements-dev.txt), for the build's isolated environments too
(`python -m build --installer uv`, the same frontend as `make dist`): pip took 40 s of the
suite for this fixture, uv takes under 10. The package's own modules are byte-compiled in
the venv (each must compile); the third-party ones compile when a command first imports
them. uv may use its cache and the package index, with
requirements.txt as constraints so the versions are the pinned ones. Every process runs
with a timeout, from a directory outside the checkout and with no PYTHONPATH, so nothing
can come from the repository by accident.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from uv import find_uv_bin

# One worker runs all of them (make test: --dist loadgroup), so the wheel is built and
# installed once, not once per worker that got one of them.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("parley-server", "parley", "parley-cli", "parley-certs", "parley-admin", "parley-logs")
PASSWORD = "wheel-test-pw"
STEP_TIMEOUT = 120


@dataclass(frozen=True)
class Installed:
    """A fresh venv holding the wheel, and a working directory outside the checkout."""

    wheel: Path
    venv: Path
    work: Path

    def bin(self, name: str) -> Path:
        """A command in the venv."""
        sub = "Scripts" if os.name == "nt" else "bin"
        suffix = ".exe" if os.name == "nt" else ""
        return self.venv / sub / f"{name}{suffix}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment the commands run in: no PYTHONPATH, no venv of ours, and a
        home of its own, as a new user's: customtkinter copies its fonts into ~/.fonts at
        every import, and rewriting the files the desktop tests' windows have mapped
        killed one of them with SIGBUS."""
        drop = {"PYTHONPATH", "VIRTUAL_ENV", "PARLEY_PASSWORD", "PARLEY_DB", "PARLEY_CERTS"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}

    def run(self, name: str, *args: str, stdin: str | None = None, **env: str):
        """Run a command of the venv to completion."""
        return subprocess.run(
            [str(self.bin(name)), *args],
            cwd=self.work,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            env=self.env(**env),
        )


def _check(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build sdist and wheel (the wheel from the sdist), make a venv, install wheel[all]."""
    uv = find_uv_bin()
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(dist), str(ROOT)]
    # setuptools writes parley_chat.egg-info into the checkout: xdist workers that each got
    # some of this module's tests build one after the other, never over each other.
    with FileLock(tmp_path_factory.getbasetemp().parent / "wheel-build.lock"):
        _check(build, cwd=dist)
    (wheel,) = dist.glob("parley_chat-*.whl")
    assert list(dist.glob("parley_chat-*.tar.gz")), "no sdist was built"
    venv = tmp_path_factory.mktemp("venv")
    # No pip in it: uv installs from outside, and nothing here runs pip.
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _check(
        [
            *(uv, "pip", "install", "-q", "--python", str(py)),
            *("-c", str(ROOT / "requirements.txt")),
            f"{wheel}[all]",
        ],
        cwd=venv,
    )
    # Every module of the package compiles with the venv's Python (compileall fails on
    # one that does not, imported by a command or not), its byte code written as an
    # installer writes it. The third-party packages' modules are compiled at their
    # first import by the commands below instead: all of site-packages took 6.5 s.
    (package,) = {p.resolve() for p in venv.glob("*/**/site-packages/parley_chat")}
    _check([str(py), "-m", "compileall", "-q", str(package)], cwd=venv)
    return Installed(wheel=wheel, venv=venv, work=tmp_path_factory.mktemp("work"))


def test_the_wheel_installs_only_under_parley_chat(installed: Installed):
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
    tops = {name.split("/")[0] for name in names}
    version = installed.wheel.name.split("-")[1]
    assert tops == {"parley_chat", f"parley_chat-{version}.dist-info"}, tops
    # The migrations travel with the code: env.py, the template and every revision.
    assert "parley_chat/migrations/env.py" in names
    assert "parley_chat/migrations/script.py.mako" in names
    assert any(re.fullmatch(r"parley_chat/migrations/versions/0001_\w+\.py", n) for n in names)
    where = subprocess.run(
        [str(installed.bin("python")), "-c", "import parley_chat.server as s; print(s.__file__)"],
        cwd=installed.work,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        env=installed.env(),
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(installed: Installed, command: str):
    done = installed.run(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {command} "), done.stdout[:200]


def _listening_port(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    """The port from the server's "listening on HOST:PORT" line (read with a deadline)."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def pump() -> None:
        for line in out:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no listening line in time; stdout so far: {seen}") from None
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"parley-server exited {proc.wait(5)}: {seen} {err}")
        seen.append(line)
        if match := re.search(r"listening on \S+?:(\d+)\b", line):
            return int(match.group(1))


def test_server_and_terminal_client_from_the_wheel(installed: Installed):
    work = installed.work
    made = installed.run("parley-certs", "--out", "certs")
    assert made.returncode == 0, made.stderr
    assert (work / "certs" / "server.pem").exists() and (work / "certs" / "ca.pem").exists()
    db = f"sqlite:///{work / 'chat.db'}"
    server = subprocess.Popen(
        [str(installed.bin("parley-server")), "--port", "0", "--db", db, "--scrypt-n", "16"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=installed.env(),
    )
    try:
        port = _listening_port(server)
        common = ["--host", "127.0.0.1", "--port", str(port), "--ca", "certs/ca.pem"]
        alice = installed.run(
            "parley-cli",
            *common,
            "--nick",
            "alice",
            "--register",
            stdin="hello from the wheel\n",
            PARLEY_PASSWORD=PASSWORD,
        )
        assert alice.returncode == 0, alice.stderr
        # bob is another process: he sees alice's message in his login replay.
        bob = installed.run(
            "parley-cli", *common, "--nick", "bob", "--register", stdin="", PARLEY_PASSWORD=PASSWORD
        )
        assert bob.returncode == 0, bob.stderr
        assert re.search(r"#lobby <alice> hello from the wheel$", bob.stdout, re.M), bob.stdout
        # The operator's tools read the same database while the server runs.
        users = installed.run("parley-admin", "--db", db, "--scrypt-n", "16", "users")
        assert users.returncode == 0, users.stderr
        assert "alice" in users.stdout and "bob" in users.stdout
        count = installed.run(
            "parley-logs",
            "--db",
            db,
            "query",
            "SELECT count(*) AS n FROM chat_log WHERE sender = 'alice'",
        )
        assert count.returncode == 0, count.stderr
        assert re.search(r"^\s*1\s*$", count.stdout, re.M), count.stdout
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
