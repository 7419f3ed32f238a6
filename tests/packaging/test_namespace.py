"""Everything lives under parley_chat, and it imports where POSIX-only modules do not exist.

The old top-level names (server, client, protocol, ...) must not come back: with the
repository root on sys.path (pytest's pythonpath, `python -m` from the checkout) an
`import server` would still work and load a second copy of every module under another
name. And the server and both clients must import on Windows, which has no fcntl,
resource, termios or pwd: a subprocess here hides them and imports every command.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OLD_TOP_LEVEL = {"server", "client", "protocol", "transport", "certs", "migrations"}
SKIP_DIRS = {".git", "build", "dist", "__pycache__"}


def _python_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        if any(part in SKIP_DIRS or part.startswith(".venv") for part in rel[:-1]):
            continue
        files.append(path)
    return sorted(files)


def test_no_module_imports_an_old_top_level_name():
    offenders = []
    files = _python_files()
    assert len(files) > 50  # the walk found the project
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in OLD_TOP_LEVEL:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == [], "import these as parley_chat.<name>:\n" + "\n".join(offenders)


_WITHOUT_POSIX = textwrap.dedent(
    """
    import sys
    for name in ("fcntl", "resource", "termios", "tty", "pwd", "grp"):
        sys.modules[name] = None  # what Windows has: importing any of them fails
    import importlib
    for module in sys.argv[1:]:
        importlib.import_module(module)
    print("imported", len(sys.argv) - 1)
    """
)


def test_every_command_imports_without_posix_only_modules(tmp_path: Path):
    modules = [
        "parley_chat.entry",
        "parley_chat.server.__main__",
        "parley_chat.server.chat_server",
        "parley_chat.server.admin",
        "parley_chat.server.logs",
        "parley_chat.certs.__main__",
        "parley_chat.client.cli",
        "parley_chat.client.gui.__main__",
        "parley_chat.client.gui.app",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_POSIX, *modules],
        cwd=tmp_path,  # not the checkout: the installed (editable) package, as a user has it
        capture_output=True,
        text=True,
        timeout=60,
        # A home of its own: importing customtkinter rewrites ~/.fonts, which the
        # desktop tests' windows have mapped (test_wheel.py: Installed.env).
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(modules)}"
