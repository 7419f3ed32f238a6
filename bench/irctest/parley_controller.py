"""irctest controller for parley (github.com/progval/irctest; run by run.sh).

Each test case gets a fresh parley server (serve.py) in a temporary directory,
with a plaintext forwarder on the port irctest connects to, in front of the
TLS-only IRC listener. Accounts for SASL tests are made with REGISTER
(draft/account-registration) through that forwarder.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

HERE = Path(__file__).resolve().parent
#: The parley checkout's venv (its python runs serve.py); PARLEY_PYTHON overrides.
PYTHON = os.environ.get("PARLEY_PYTHON", str(HERE.parents[1] / ".venv" / "bin" / "python"))


class ParleyController(BaseServerController, DirectoryBasedController):
    """Runs serve.py for each case."""

    software_name = "parley"
    supported_sasl_mechanisms = {"PLAIN"}
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: str | None,
        ssl: bool,
        run_services: bool,
        faketime: str | None,
        websocket_hostname: str | None,
        websocket_port: int | None,
    ) -> None:
        """Start the server for one case."""
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if password is not None:
            raise NotImplementedByController("server password (PASS is account:password here)")
        if ssl:
            raise NotImplementedByController("TLS tests (the forwarder is plaintext)")
        assert self.proc is None  # type: ignore[has-type]
        self.hostname, self.port = hostname, port
        self.create_config()
        assert self.directory is not None
        cmd = [PYTHON, str(HERE / "serve.py"), "--dir", str(self.directory)]
        cmd += ["--host", hostname, "--port", str(port)]
        if self.debug_mode:
            cmd.append("--debug")
        self.proc = self.execute(cmd, proc_name="parley")
        self.wait_for_port()

    def wait_for_services(self) -> None:
        """Accounts are built in: there are no services to wait for."""

    def registerUser(self, case: Any, username: str, password: str | None = None) -> None:
        """Create an account with REGISTER (before connection registration)."""
        with socket.create_connection((self.hostname, self.port), timeout=10) as c:
            c.sendall(
                f"CAP LS 302\r\nREGISTER {username} * {password or 'password'}\r\nQUIT\r\n".encode()
            )
            data = b""
            deadline = time.monotonic() + 20
            while b"REGISTER SUCCESS" not in data and b"FAIL REGISTER" not in data:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer to REGISTER {username}")
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        if b"REGISTER SUCCESS" not in data:
            print(data.decode(errors="replace"), file=sys.stderr)
            raise RuntimeError(f"could not register {username}")


def get_irctest_controller_class() -> type[ParleyController]:
    """The entry point irctest's --controller looks for."""
    return ParleyController
