"""`parley-server invite`: print the one line a user pastes
into the connect screen or gives the terminal client (protocol/invite.py).

It takes the server's own --host, --port and --certs (and their PARLEY_*
variables), so `parley-server invite` beside `python -m parley_chat.server --host
0.0.0.0` names an address the running server is reachable at and its
certificate covers. It reads certificates only: no server needs to run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from parley_chat.protocol.invite import format_invite

from .announce import certificate_names, client_addresses, invite_host, trust_anchor
from .config import DEFAULT_PORT


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print the invite line on stdout; exit 0, or 2 with a reason on stderr."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="parley-server invite",
        description="Print an invite: one line with the server's address, port and the "
        "fingerprint of the certificate clients pin, to paste into a parley client.",
    )
    parser.add_argument(
        "--host",
        default=env.get("PARLEY_HOST", "127.0.0.1"),
        help="the address the server listens on, as given to `parley-server`; with "
        "0.0.0.0 the invite names this machine's first LAN address its certificate "
        "covers; any other address is used as it is (env PARLEY_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("PARLEY_PORT", DEFAULT_PORT)),
        help=f"the server's TCP port (default {DEFAULT_PORT}, env PARLEY_PORT)",
    )
    parser.add_argument(
        "--certs",
        default=env.get("PARLEY_CERTS", "certs"),
        help="directory holding server.pem and ca.pem (default certs, env PARLEY_CERTS)",
    )
    args = parser.parse_args(argv)
    certs = Path(args.certs)
    cert_file, ca_file = certs / "server.pem", certs / "ca.pem"
    if not 0 < args.port < 65536:
        print("parley invite: the port is a number from 1 to 65535", file=sys.stderr)
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
    addresses = client_addresses(args.host, dns, ips)
    if not addresses:
        print(
            f"parley invite: warning: the certificate does not cover {args.host}; clients "
            "will fail its host name check (run `parley-certs --renew` or --san ADDRESS)",
            file=sys.stderr,
        )
    print(format_invite(invite_host(addresses, args.host), args.port, anchor.fingerprint))
    return 0
