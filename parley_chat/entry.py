"""The installed commands (pyproject.toml's [project.scripts]) and what they need.

Each command runs the main() of its module. The modules are imported only when the
command runs, so a missing optional dependency (a client-only install has no SQLAlchemy,
a server has no customtkinter, a Python without Tk) ends in one line naming the extra
to install instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys

import parley_chat

#: Which extra brings each third-party top-level module a command may import.
_EXTRA_OF = {
    "sqlalchemy": "server",
    "alembic": "server",
    "filelock": "server",
    "tqdm": "server",
    "customtkinter": "gui",
    "darkdetect": "gui",
    "PIL": "gui",
    "bidi": "gui",
    "arabic_reshaper": "gui",
    "desktop_notifier": "gui",
}


def _run(command: str, module: str) -> int:
    """Return *module*'s main()'s exit code, or 1 when a dependency is missing.

    main() is inside the try too: the desktop client imports customtkinter (and with it
    Tk) only once its arguments are parsed.
    """
    try:
        return importlib.import_module(module).main()
    except ModuleNotFoundError as exc:
        message = _missing(command, (exc.name or "").split(".")[0])
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1


def _missing(command: str, module: str) -> str | None:
    """What to tell the user when *module* is not installed (None: not ours to explain)."""
    if module in _EXTRA_OF:
        extra = _EXTRA_OF[module]
        wheel = f"parley_chat-{parley_chat.__version__}-py3-none-any.whl"
        return (
            f"{command}: needs {module}, which comes with parley-chat's '{extra}' extra; "
            f"reinstall with it, e.g. pipx install --force './{wheel}[{extra}]' "
            f"(from a checkout: pip install -e '.[{extra}]')"
        )
    if module in ("tkinter", "_tkinter"):
        return (
            f"{command}: this Python has no Tk (tkinter); install it "
            "(Debian/Ubuntu: sudo apt-get install python3-tk; Fedora: sudo dnf install "
            "python3-tkinter; the python.org installers for Windows and macOS include it)"
        )
    return None


def server() -> int:
    """parley-server: run the chat server."""
    return _run("parley-server", "parley_chat.server.__main__")


def desktop() -> int:
    """parley: the desktop client."""
    return _run("parley", "parley_chat.client.gui.__main__")


def terminal() -> int:
    """parley-cli: the terminal client."""
    return _run("parley-cli", "parley_chat.client.cli")


def certs() -> int:
    """parley-certs: make the local CA and the server certificate."""
    return _run("parley-certs", "parley_chat.certs.__main__")


def admin() -> int:
    """parley-admin: the operator's account tool."""
    return _run("parley-admin", "parley_chat.server.admin")


def logs() -> int:
    """parley-logs: the operator's chat-logs tool."""
    return _run("parley-logs", "parley_chat.server.logs")
