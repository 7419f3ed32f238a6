"""ngIRCd, the reference server the load benchmark compares
parley against, set up, started and stopped here.

Owns: installing ngIRCd (apt-get, only when root and it is missing), its
TLS-only loopback configuration (the project's generated certificates, no
plaintext port, relaxed limits), the process (started in the foreground with
-n, so the PID we hold is the server's, for /proc figures) and its stop by PID.

  python -m bench.peer                  the load matrix against ngIRCd alone (make bench-peer)
  python -m bench.peer --serve          start it and wait (Ctrl-C stops it), for manual runs
  python -m bench.loadgen matrix        both servers side by side (make bench-load)
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.loadgen_stats import log_tail, terminate

#: Relaxed so the benchmark measures delivery, not policy: no per-address cap
#: (1000 clients come from loopback), no penalty time (ngIRCd's flood control:
#: with MaxPenaltyTime = 0 a client's commands are never delayed), no channel
#: cap, long nicks, no DNS/IDENT/PAM lookups on connect, pings rarely.
CONFIG = """\
[Global]
Name = bench.parley.local
Info = parley load benchmark peer
AdminInfo1 = parley benchmark
AdminInfo2 = loopback only
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports =
MotdPhrase = "parley bench"
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 120
[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = {include}
[SSL]
CertFile = {cert}
KeyFile = {key}
Ports = {port}
"""


def ensure_installed() -> str:
    """The ngircd binary's path; installs the Debian package when root and missing."""
    found = shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("ngIRCd is not installed: sudo apt-get install -y ngircd")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing ngircd (apt-get) ...", file=sys.stderr, flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ngircd"],
        check=True,
        env=env,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which("ngircd") or "/usr/sbin/ngircd"
    if not Path(found).exists():
        raise RuntimeError("apt-get installed ngircd but no binary was found")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (ngIRCd cannot be told port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    # Runs in the child before exec: 1000 clients need more than 1024 descriptors.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class NgircdServer:
    """ngIRCd on 127.0.0.1, TLS only, in a temp dir. Use as a context manager."""

    dialect = "irc"
    name = "ngIRCd"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.pid = 0
        self.ca_file = ""
        self.version = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NgircdServer:
        self.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Write certs and the config, start `ngircd -n`, wait until the TLS port accepts."""
        from parley_chat.certs import generate

        binary = ensure_installed()
        self._tmp = tempfile.TemporaryDirectory(prefix="parley-ngircd-")
        root = Path(self._tmp.name)
        paths = generate(root / "certs")
        self.ca_file = str(paths.ca_cert)
        (root / "conf.d").mkdir()
        self.port = free_port(self.host)
        conf = root / "ngircd.conf"
        conf.write_text(
            CONFIG.format(
                include=root / "conf.d",
                cert=paths.server_cert,
                key=paths.server_key,
                port=self.port,
            )
        )
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        self.version = out.stdout.split("\n", 1)[0].split("-", 1)[0].strip()
        self._log = open(root / "ngircd.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [binary, "-n", "-f", str(conf)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile,
        )
        self.pid = self._proc.pid
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
                except OSError:
                    time.sleep(0.1)
            raise RuntimeError(f"ngIRCd did not start listening:\n{self.log_tail()}")
        except BaseException:
            self.stop()  # never leave a server behind, not even on Ctrl-C
            raise

    def log_tail(self, lines: int = 20) -> str:
        """The end of ngIRCd's log (for failure reports)."""
        return "" if self._tmp is None else log_tail(Path(self._tmp.name) / "ngircd.log", lines)

    def stop(self) -> None:
        """SIGTERM ngIRCd's PID, wait (bounded), SIGKILL if needed; remove the temp dir."""
        proc = self._proc
        if proc is not None:
            terminate(proc, 15)
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def main(argv: list[str] | None = None) -> int:
    """`make bench-peer`: the load matrix against ngIRCd alone (or --serve it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--install-only" in args:
        print(ensure_installed())
        return 0
    if "--serve" in args:
        with NgircdServer() as server:
            print(f"{server.version} TLS on {server.host}:{server.port} pid {server.pid}")
            print(f"CA: {server.ca_file} (Ctrl-C stops it)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    from bench.loadgen import matrix_main

    return matrix_main(args, targets=("ngircd",))


if __name__ == "__main__":
    raise SystemExit(main())
