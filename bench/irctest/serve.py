"""A parley server for one irctest case, behind a plaintext-to-TLS forwarder.

irctest connects in plaintext; parley's IRC listener speaks TLS only. This runs a
real ChatServer (IRC port on, guests allowed, the default room hidden from IRC
clients, cheap password hashing) in a fresh directory, and forwards a plaintext
loopback port to the TLS IRC port, verifying the server's certificate against the
CA made for the run. Started (and killed with its process group) by
parley_controller.py; not part of the product.

    python serve.py --dir DIR --host 127.0.0.1 --port 6667
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import selectors
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

from parley_chat.certs import generate
from parley_chat.protocol import PROTOCOL_VERSION
from parley_chat.server.chat_server import ChatServer
from parley_chat.server.config import ServerConfig


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pump(plain: socket.socket, ctx: ssl.SSLContext, target: tuple[str, int]) -> None:
    """Copy bytes both ways between *plain* and a new TLS connection to *target*.

    One thread owns both sockets (never a TLS socket shared by two threads)."""
    try:
        raw = socket.create_connection(target, timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
    except OSError:
        plain.close()
        return
    tls.settimeout(10)
    plain.settimeout(10)
    sel = selectors.DefaultSelector()
    sel.register(plain, selectors.EVENT_READ, "plain")
    sel.register(tls, selectors.EVENT_READ, "tls")
    try:
        while True:
            ready = [key.data for key, _ in sel.select(60)]
            if not ready:
                continue
            if "tls" in ready or tls.pending():
                data = tls.recv(65536)
                while tls.pending():
                    data += tls.recv(tls.pending())
                if not data:
                    return
                plain.sendall(data)
            if "plain" in ready:
                data = plain.recv(65536)
                if not data:
                    return
                tls.sendall(data)
    except (OSError, ssl.SSLError):
        return
    finally:
        sel.close()
        for sock in (plain, tls):
            try:
                sock.close()
            except OSError:
                pass


def _template(host: str) -> Path:
    """A migrated database and certificates made once per machine (per schema), copied
    for each case: migrating a fresh database for every one of ~200 cases cost most
    of the gate's time."""
    from filelock import FileLock

    migrations = importlib.import_module("parley_chat.migrations")
    versions = Path(str(migrations.__file__)).parent / "versions"
    key = hashlib.sha256(
        " ".join(sorted(p.name for p in versions.glob("*.py"))).encode()
    ).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"parley-irctest-{key}"
    with FileLock(str(base) + ".lock"):
        if not (base / "done").exists():
            shutil.rmtree(base, ignore_errors=True)
            (base / "certs").mkdir(parents=True)
            generate(base / "certs")
            cfg = ServerConfig.for_tests(
                f"sqlite:///{base / 'parley.db'}", base / "certs", host=host, mdns=False
            )
            server = ChatServer(cfg)
            server.start()
            server.stop()
            (base / "done").write_text("ok\n")
    return base


def main() -> int:
    """Run until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="the plaintext port for irctest")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    template = _template(args.host)
    certs = args.dir / "certs"
    shutil.copytree(template / "certs", certs, dirs_exist_ok=True)
    shutil.copyfile(template / "parley.db", args.dir / "parley.db")
    irc_port = _free_port(args.host)
    cfg = ServerConfig.for_tests(
        f"sqlite:///{args.dir / 'parley.db'}",
        certs,
        host=args.host,
        irc_port=irc_port,
        server_name="My.Little.Server",
        irc_guests=True,
        irc_show_lobby=False,
        mdns=False,
        login_failures=1000,
        login_failures_per_ip=100000,
        max_connections_per_ip=1000,
    )
    server = ChatServer(cfg)
    server.start()
    # For the controller's registerUser: accounts are made over the parley protocol,
    # which has no 512-byte line limit (irctest's passwords can be 800 bytes long).
    (args.dir / "parley.json").write_text(
        json.dumps({"port": server.address[1], "version": PROTOCOL_VERSION})
    )
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    listener = socket.create_server((args.host, args.port), reuse_port=False)
    listener.settimeout(0.5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    target = (args.host, irc_port)
    while not stop.is_set():
        try:
            plain, _ = listener.accept()
        except TimeoutError:
            continue
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pump, args=(plain, ctx, target), daemon=True).start()
    listener.close()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
