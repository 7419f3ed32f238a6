"""`parley-server invite`: print the one line a user pastes
into the connect screen or gives the terminal client (protocol/invite.py).

It reads the server's own configuration, exactly as `parley-server` does
(defaults < parley.toml or --config < PARLEY_* variables < flags such as
--host, --port and --certs), so the invite names the port and certificate the
server really uses, and an address its certificate covers when it listens on
0.0.0.0. It reads certificates only: no server needs to run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from parley_chat.protocol.invite import format_invite

from .announce import certificate_names, client_addresses, invite_host, trust_anchor
from .config_file import load
from .config_schema import ConfigError

HELP = """usage: parley-server invite [--config FILE] [--host HOST] [--port PORT] [--certs DIR] [...]

Print an invite: one line with the server's address, port and the fingerprint
of the certificate clients pin, to paste into a parley client.

It takes the server's own settings, the same way `parley-server` does: its
configuration file (parley.toml here, or --config FILE, or PARLEY_CONFIG), the
PARLEY_* variables and the same flags. Give it what you give the server. With
--host 0.0.0.0 the invite names this machine's first LAN address the
certificate covers; any other address is used as it is.
"""


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print the invite line on stdout; exit 0, or 2 with a reason on stderr."""
    args = list(sys.argv[2:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(HELP, end="")
        return 0
    try:
        cfg = load(args, environ).config
    except ConfigError as exc:
        print(f"parley invite: config error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse refused a flag and printed why
        return int(exc.code or 2)
    cert_file, ca_file, certs = cfg.cert_file, cfg.ca_file, cfg.certs_dir
    if not 0 < cfg.port < 65536:
        print(
            f"parley invite: the server's port is {cfg.port}: an invite needs a fixed port "
            "from 1 to 65535 (--port, or port in the configuration file)",
            file=sys.stderr,
        )
        return 2
    try:
        dns, ips = certificate_names(cert_file)
        anchor = trust_anchor(cert_file, ca_file)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM certificate"
        print(
            f"parley invite: cannot read the server certificate {cert_file}: {reason}. "
            f"Create it with: parley-certs --out {certs}",
            file=sys.stderr,
        )
        return 2
    addresses = client_addresses(cfg.host, dns, ips)
    if not addresses:
        print(
            f"parley invite: warning: the certificate does not cover {cfg.host}; clients "
            "will fail its host name check (run `parley-certs --renew` or --san ADDRESS)",
            file=sys.stderr,
        )
    print(format_invite(invite_host(addresses, cfg.host), cfg.port, anchor.fingerprint))
    return 0
