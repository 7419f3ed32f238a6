# GUI fixtures: the real desktop window on a virtual X display, in-process,
# against a real server (tests/conftest.py: certs_dir, ca_file, make_server).
#
# Rules (shared/reference/gui-testing.md):
# - never mainloop(): pump() drives Tk with update() until a predicate holds
#   or its deadline passes; every wait in these tests has a deadline;
# - every window is closed at teardown, its after() callbacks cancelled;
# - appearance is always set explicitly ("system" would poll gsettings).

from __future__ import annotations

import gc
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id
import pytest

from parley_chat.client import ChatClient
from parley_chat.client.e2e import keystore
from parley_chat.client.e2e.files import PASSPHRASE_ENV
from parley_chat.server import memory
from tests.client.gui.helpers import pump

#: The end-to-end key passphrase windows get unless a test asks otherwise (so no
#: window stops at the passphrase dialog on a machine without an OS keyring).
GUI_KEY_PASSPHRASE = "gui test key passphrase"


class _NoCollect:
    """server/memory.py's `gc` during a GUI test: collect() frees nothing (the fixture
    below collects on the Tk thread once the windows are shut), and freeze() and
    unfreeze() do nothing either: a window's garbage frozen now would be freed by
    some later server's full settle, on that server's thread."""

    @staticmethod
    def collect(generation: int = 2) -> int:
        return 0

    @staticmethod
    def freeze() -> None:
        pass

    @staticmethod
    def unfreeze() -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(gc, name)


@pytest.fixture(autouse=True)
def tk_garbage_on_main_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Free the windows a test made on this (the Tk) thread, never on another.

    Closed windows leave reference cycles behind. If the cyclic garbage
    collector happened to run on a server or client thread, it would free Tk
    objects there, and Tcl aborts the process when an interpreter is deleted by
    the wrong thread. So automatic collection is off during a GUI test and the
    garbage is collected here, after the windows are shut down. A server in this
    process collects explicitly too (its heap trim, server/memory.py, on its
    maintenance thread: a worker once died of it in a Tk call): during a GUI test
    that collection is left to this fixture as well.
    """
    if "ctk" not in request.fixturenames:  # no window in this test
        yield
        return
    request.getfixturevalue("monkeypatch").setattr(memory, "gc", _NoCollect())
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.enable()


@pytest.fixture(autouse=True)
def key_passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows made without open_app protect their end-to-end keys with
    GUI_KEY_PASSPHRASE too, rather than stopping at the key dialog."""
    monkeypatch.setenv(PASSPHRASE_ENV, GUI_KEY_PASSPHRASE)


@pytest.fixture(autouse=True)
def cheap_key_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key files written during a desktop test are sealed with argon2id at libsodium's
    minimum cost, not the interactive one (0.09 s of CPU each time a window protects
    its keys, and again each time one opens them), as the test servers hash passwords
    with a cheap scrypt: the same derivation, the same file (which records its cost,
    so opening it is as cheap). The function's own keyword defaults are replaced, so
    every module that imported it gets them. tests/client/test_e2e_crypto.py tests
    the key files themselves; the terminal client's processes keep the default cost."""
    monkeypatch.setattr(
        keystore.encrypt_keys,
        "__kwdefaults__",
        {"ops": nacl.pwhash.argon2id.OPSLIMIT_MIN, "mem": nacl.pwhash.argon2id.MEMLIMIT_MIN},
    )


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """The X display: pytest-xvfb's (DISPLAY is set), else an Xvfb of our own."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is missing: run `make sysdeps` (apt-get install xvfb xdotool)")
    r, w = os.pipe()  # -displayfd: Xvfb picks a free :N and writes it once ready
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as fh:
        os.environ["DISPLAY"] = ":" + fh.readline().strip()
    yield os.environ["DISPLAY"]
    del os.environ["DISPLAY"]
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="session")
def ctk(display: str) -> Any:
    """customtkinter, configured for reproducible tests."""
    import customtkinter

    customtkinter.set_appearance_mode("light")
    customtkinter.set_widget_scaling(1.0)
    customtkinter.set_window_scaling(1.0)
    return customtkinter


@pytest.fixture
def gui_server(make_server: Callable[..., Any]) -> Any:
    """A running server for GUI tests."""
    return make_server()


@pytest.fixture
def open_app(
    ctk: Any, gui_server: Any, ca_file: Path, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Open desktop windows: open_app(nick, ...) returns a logged-in App (or, with
    connected=False, one that is still on the connect screen). The keys are
    protected by *key_passphrase* (PARLEY_KEY_PASSPHRASE in the window's
    environment); None leaves it out, so the window asks in its key dialog (or
    uses the OS keyring, unless *prefer_passphrase*: the setting of that name)."""
    from parley_chat.client.gui.app import App
    from parley_chat.client.settings import Settings, SettingsStore

    apps: list[Any] = []

    def _open(
        nick: str,
        *,
        password: str | None = "secret-pw",
        server: Any = None,
        ca: str | None = None,
        config: Path | None = None,
        connected: bool = True,
        appearance: str = "light",
        geometry: str = "1100x700",
        title: str | None = None,
        register: bool = True,
        key_passphrase: str | None = GUI_KEY_PASSPHRASE,
        prefer_passphrase: bool = False,
    ) -> Any:
        srv = server or gui_server
        host, port = srv.address
        store = SettingsStore(config or tmp_path / f"config-{nick}")
        settings = store.load()
        settings = Settings(
            host=host,
            port=port,
            ca_file=str(ca_file) if ca is None else ca,
            nick=nick,
            register=register,
            appearance=appearance,
            geometry=geometry if config is None else settings.geometry,
            key_passphrase=prefer_passphrase,
        )
        environ = {PASSPHRASE_ENV: key_passphrase} if key_passphrase is not None else {}
        app = App(
            store,
            settings=settings,
            title=title or f"parley-{nick}",
            password=password,
            environ=environ,
        )
        app.geometry(f"+{40 * len(apps)}+{30 * len(apps)}")
        apps.append(app)
        if connected:
            pump(
                app,
                lambda: app.statusbar.state == "connected" and app.model.current_conversation,
                what=f"{nick} connected",
            )
            # Settled: the end-to-end keys too (their note is in the conversation).
            pump(app, lambda: app.jobs.pending == 0, what=f"{nick}'s start-up jobs")
        return app

    yield _open
    for app in apps:
        try:
            app.shutdown(timeout=0.5)
        except Exception:
            pass
    for app in apps:
        assert app.wait_closed(10), "a window's connection was not closed"
    # A callback that raised is a bug even when what the test checks came out right.
    errors = [e for app in apps for e in app.callback_errors]
    assert errors == [], f"window callbacks failed: {errors}"


@pytest.fixture
def chat_client(gui_server: Any, ca_file: Path) -> Iterator[Callable[..., ChatClient]]:
    """Connected ChatClients (not windows): chat_client(nick)."""
    clients: list[ChatClient] = []

    def _make(nick: str, password: str = "secret-pw", server: Any = None) -> ChatClient:
        host, port = (server or gui_server).address
        client = ChatClient(
            host, port, nick=nick, password=password, ca_file=ca_file, register=True
        )
        client.connect()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.close(timeout=0.5)
