"""`parley` (make client): the desktop client.

Command-line values override the remembered ones for this run (and are
remembered once used to connect). The password is never a command-line
argument (other users could read it in the process list): PARLEY_PASSWORD,
when set, makes the app connect at once, for scripts and tests.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from ..settings import CONFIG_DIR_ENV, DATA_DIR_ENV, SettingsStore, valid_geometry

PASSWORD_ENV = "PARLEY_PASSWORD"
#: How long the process waits, after the window closed, for the goodbye to the
#: server (App.shutdown gives the close 2 s; a little more for the thread).
CLOSE_WAIT = 3.0


def _geometry(text: str) -> str:
    if not valid_geometry(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a window size like 1200x760")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="parley",
        description="parley desktop client. Values given here fill the connect form.",
        epilog="Settings live in the user's config folder and pinned certificates in the "
        "data folder (Linux: ~/.config/parley, ~/.local/share/parley; see docs/gui.md); "
        f"{CONFIG_DIR_ENV} puts both in one folder, {DATA_DIR_ENV} the data alone. "
        f"With {PASSWORD_ENV} set, the app connects at once (for scripts and tests).",
    )
    parser.add_argument("--host", help="server address")
    parser.add_argument("--port", type=int, help="server port (parley's default is 5555)")
    parser.add_argument(
        "--ca", help="the server's CA certificate; an empty value means trust on first use"
    )
    parser.add_argument("--nick", help="your nick")
    parser.add_argument(
        "--register", action="store_true", help="create the account if the nick is free"
    )
    parser.add_argument("--title", default="parley", help="window title (default parley)")
    parser.add_argument("--appearance", choices=("light", "dark"), help="light or dark")
    parser.add_argument("--geometry", type=_geometry, help="window size, e.g. 1200x760")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the desktop client until its window closes; return the exit code."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    store = SettingsStore.for_user(env)
    for old, new in store.migrated:
        print(f"parley: moved {old} to {new}", file=sys.stderr)
    settings = store.load()
    if args.host is not None:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    if args.ca is not None:
        settings.ca_file = args.ca
    if args.nick is not None:
        settings.nick = args.nick
    if args.register:
        settings.register = True
    if args.appearance is not None:
        settings.appearance = args.appearance
    if args.geometry is not None:
        settings.geometry = args.geometry

    from .app import App  # customtkinter needs a display only from here on

    try:
        app = App(
            store,
            settings=settings,
            title=args.title,
            password=env.get(PASSWORD_ENV) or None,
            environ=env,
        )
    except Exception as exc:  # no display, most likely
        print(f"parley: cannot open the window: {exc}", file=sys.stderr)
        return 1

    def _graceful(_signum: int, _frame: object) -> None:
        # Runs on the main (Tk) thread between Tk events: close as the window would.
        app.after(0, app.on_close)

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    app.mainloop()
    # The window is gone already; the connection says goodbye before the process ends.
    app.wait_closed(CLOSE_WAIT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
