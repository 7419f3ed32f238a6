# Out-of-process smoke test: `python -m parley_chat.client.gui` as a real process on the
# virtual display, driven with real X key events (xdotool), checked by another
# client on the server. Slow (about a second), so just one.

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parley_chat.client import MessageReceived, PresenceChanged
from tests.client.gui.helpers import wait_event

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[3]


def xdotool(*args: str, timeout: float = 20.0) -> str:
    result = subprocess.run(
        ["xdotool", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool missing: make sysdeps")
def test_typing_in_the_real_process_reaches_another_client(
    display, gui_server, ca_file, chat_client, tmp_path
):
    host, port = gui_server.address
    watcher = chat_client("watcher")
    title = f"parley-smoke-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "DISPLAY": display,
        "PARLEY_CONFIG_DIR": str(tmp_path / "config"),
        # customtkinter copies its fonts into ~/.fonts at import: not over the files
        # the other desktop tests' windows have mapped (a rewrite is SIGBUS there).
        "HOME": str(tmp_path),
        "PARLEY_PASSWORD": "smoke-secret",
        "PARLEY_KEY_PASSPHRASE": "smoke key passphrase",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley_chat.client.gui",
            "--host",
            host,
            "--port",
            str(port),
            "--ca",
            str(ca_file),
            "--nick",
            "smoky",
            "--register",
            "--title",
            title,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_event(
            watcher,
            lambda e: isinstance(e, PresenceChanged) and e.joined == "smoky",
            timeout=20,
        )
        # The server knows smoky before the window has caught up: the title names
        # the open room once the window shows the chat (and its input has the focus).
        window = xdotool(
            "search", "--sync", "--onlyvisible", "--name", f"lobby .*{title}$"
        ).split()[0]
        xdotool("windowfocus", "--sync", window)
        # No warm-up key: the very first key typed must reach the input.
        xdotool("type", "--delay", "15", "hello from a real keyboard")
        xdotool("key", "Return")
        event = wait_event(
            watcher,
            lambda e: isinstance(e, MessageReceived) and e.message.kind == "public",
            timeout=20,
        )
        assert event.message.text == "hello from a real keyboard"
        assert event.message.from_ == "smoky"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert b"Traceback" not in out, out.decode(errors="replace")
    assert proc.returncode == 0  # SIGTERM closes the window gracefully
