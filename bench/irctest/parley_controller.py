"""irctest controller for parley (github.com/progval/irctest; run by run.sh).

Each test case gets a fresh parley server (serve.py) in a temporary directory,
with a plaintext forwarder on the port irctest connects to, in front of the
TLS-only IRC listener. Accounts for SASL tests are made over the parley
protocol (a `hello` with register), which has no IRC line limit.
"""

from __future__ import annotations

import json
import os
import socket
import ssl as ssl_module
import sys
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
    #: ISUPPORT values the gateway promises (server/irc/gateway.py), checked by isupport.py.
    isupport = {
        "CASEMAPPING": "ascii",
        "CHANTYPES": "#",
        "CHATHISTORY": "1000",
        "CLIENTTAGDENY": "*",
        "MSGREFTYPES": "msgid,timestamp",
        "NICKLEN": "24",
        "PREFIX": "(ov)@+",
    }

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
        """Create an account: a parley `hello` with register, on the parley port (TLS)."""
        assert self.directory is not None
        info = json.loads((self.directory / "parley.json").read_text())
        ctx = ssl_module.create_default_context(cafile=str(self.directory / "certs" / "ca.pem"))
        hello = {
            "type": "hello",
            "version": info["version"],
            "nick": username,
            "password": password or "password",
            "register": True,
        }
        raw = socket.create_connection((self.hostname, info["port"]), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as c:
            c.sendall(json.dumps(hello).encode() + b"\n")
            data = b""
            while b"\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        first = json.loads(data.split(b"\n", 1)[0] or b"{}")
        if first.get("type") != "welcome":
            print(data.decode(errors="replace"), file=sys.stderr)
            raise RuntimeError(f"could not register {username}: {first}")


def get_irctest_controller_class() -> type[ParleyController]:
    """The entry point irctest's --controller looks for."""
    return ParleyController
