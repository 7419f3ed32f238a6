"""`parley-server`: build the config, start the server,
print one "listening" line (then the addresses and fingerprint clients need,
server/announce.py), advertise it by mDNS (server/mdns.py), and shut down
cleanly on SIGINT/SIGTERM. `parley-server invite` prints an invite line.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from . import announce, mdns
from .chat_server import ChatServer
from .config import ServerConfig
from .config_file import command_line_config
from .errors import StartupError
from .store.engine import display_url
from .tls import accepted_versions


def main(argv: list[str] | None = None) -> int:
    """Run the server until a signal; return the process exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["invite"]:
        from .invite import main as invite_main

        return invite_main(args[1:])
    cfg = command_line_config(args)  # exits 0 after --print-config, 2 on a refused setting
    logging.basicConfig(
        level=getattr(logging, cfg.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migration report says it once
    try:
        server = ChatServer(cfg)
        server.start()
    except StartupError as exc:
        print(f"parley: cannot start: {exc}", file=sys.stderr)
        return 2
    from parley_chat.certs import check_server_certificate, fingerprint_sha256

    for warning in check_server_certificate(cfg.cert_file):
        print(f"parley: warning: {warning}", file=sys.stderr)
    report = server.migration
    if report is not None and report.from_revision != report.to_revision:
        backup = f", backup at {report.backup_path}" if report.backup_path else ""
        print(
            f"parley: database upgraded {report.from_revision or 'empty'} -> "
            f"{report.to_revision}{backup}",
            file=sys.stderr,
        )
    host, port = server.address
    fingerprint = fingerprint_sha256(cfg.cert_file.read_bytes())
    versions = ", ".join(accepted_versions(server.ssl_context))
    print(
        f"parley listening on {host}:{port} ({versions}) db {display_url(cfg.db_url)} "
        f"certificate SHA-256 {fingerprint}",
        flush=True,
    )
    for line in announce.banner(host, port, cfg.cert_file, cfg.ca_file):
        print(line, flush=True)
    if server.irc_address is not None:  # after the banner: tests read its first line
        irc_host, irc_port = server.irc_address
        print(f"IRC (TLS only) on {irc_host}:{irc_port}: see docs/irc.md", flush=True)
    advertiser = _advertise(cfg, host, port) if cfg.mdns else None

    def _stop(signum: int, _frame: object) -> None:
        # Stop from another thread: stop() joins threads, which a handler must not do inline.
        threading.Thread(target=server.stop, name="shutdown").start()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.serve_forever()
    if advertiser is not None:
        advertiser.stop()
    return 0


def _advertise(cfg: ServerConfig, host: str, port: int) -> mdns.Advertiser | None:
    # What the banner offers is what goes into the DNS-SD records.
    dns, ips = announce.certificate_names(cfg.cert_file)
    interfaces = mdns.advertised_interfaces(host)
    # The A records: the addresses offered (names left out), else where it listens.
    addresses = [a for a in announce.client_addresses(host, dns, ips) if a in ips]
    if not (addresses or interfaces):
        logging.getLogger("parley.mdns").warning(
            "mDNS advertisement skipped: the certificate covers none of this machine's addresses"
        )
        return None
    anchor = announce.trust_anchor(cfg.cert_file, cfg.ca_file)
    hostname = announce.short_hostname()
    advertiser = mdns.Advertiser(
        name=mdns.instance_name(cfg.server_name, hostname),
        port=port,
        addresses=addresses or interfaces or [],
        txt=mdns.txt_records(anchor.fingerprint, anchor.is_ca),
        interfaces=interfaces,
        hostname=hostname,
    )
    advertiser.start()
    return advertiser


if __name__ == "__main__":
    sys.exit(main())
