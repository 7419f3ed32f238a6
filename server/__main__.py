# server/__main__.py: `python -m parley_chat.server`: build the config, start the server,
# print one "listening" line, and shut down cleanly on SIGINT/SIGTERM.

from __future__ import annotations

import logging
import signal
import sys
import threading

from .app import ChatServer
from .config import ServerConfig
from .errors import StartupError
from .tls import accepted_versions


def main(argv: list[str] | None = None) -> int:
    """Run the server until a signal; return the process exit code."""
    cfg = ServerConfig.from_args(argv)
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
        f"parley listening on {host}:{port} ({versions}) db {cfg.db_url} "
        f"certificate SHA-256 {fingerprint}",
        flush=True,
    )

    def _stop(signum: int, _frame: object) -> None:
        # Stop from another thread: stop() joins threads, which a handler must not do inline.
        threading.Thread(target=server.stop, name="shutdown").start()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
