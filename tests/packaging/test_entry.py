"""The installed commands: a missing extra or a Python without Tk is one clear line.

Each case runs in a subprocess that hides the module (as an install without the extra
has it), then calls the command's entry point as the console script does.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

# argv: the entry function, the modules to hide (comma-separated), the command's arguments.
_CALL = """
import sys
function, hidden, args = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in filter(None, hidden.split(",")):
    sys.modules[name] = None  # not installed
sys.argv = [function, *args]
from parley_chat import entry
sys.exit(getattr(entry, function)())
"""


def _entry(
    tmp_path: Path, function: str, hidden: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CALL, function, ",".join(hidden), *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("function", "command", "hidden", "extra"),
    [
        ("server", "parley-server", "sqlalchemy", "server"),
        ("admin", "parley-admin", "sqlalchemy", "server"),
        ("logs", "parley-logs", "tqdm", "server"),
        ("desktop", "parley", "customtkinter", "gui"),
    ],
)
def test_a_missing_extra_is_named_not_a_traceback(tmp_path, function, command, hidden, extra):
    done = _entry(tmp_path, function, [hidden])
    assert done.returncode == 1
    assert done.stderr.startswith(f"{command}: needs {hidden}, which comes with parley-chat's")
    assert f"[{extra}]" in done.stderr and "Traceback" not in done.stderr
    assert f"parley_chat-{version('parley-chat')}-py3-none-any.whl" in done.stderr


def test_the_namespace_reads_its_version_only_when_asked():
    # importlib.metadata (and the email package under it) cost every command ~30 ms.
    probe = (
        "import sys, parley_chat\n"
        "print('importlib.metadata' in sys.modules, parley_chat.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", version("parley-chat")]


def test_a_python_without_tk_says_what_to_install(tmp_path):
    done = _entry(tmp_path, "desktop", ["tkinter", "_tkinter"])
    assert done.returncode == 1
    assert done.stderr.startswith("parley: this Python has no Tk (tkinter)"), done.stderr
    assert "python3-tk" in done.stderr and "Traceback" not in done.stderr


def test_the_terminal_client_needs_no_extra(tmp_path):
    # Everything the extras bring is hidden: parley-cli still starts (and answers --help).
    hidden = ["sqlalchemy", "alembic", "filelock", "tqdm", "customtkinter"]
    done = _entry(tmp_path, "terminal", hidden, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: parley-cli ")
