"""`parley-certs` — make the local CA and server certificate (and, with --node, one
certificate per server node under the same CA)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import MAX_SERVER_DAYS, fingerprint_sha256, generate, generate_node


def main(argv: list[str] | None = None) -> int:
    """Parse flags, generate (or keep) the files, print where they are and their fingerprints."""
    parser = argparse.ArgumentParser(
        prog="parley-certs",
        description="Create parley's local CA and a server certificate it signs. Existing "
        "files are kept: run again safely. Copy ca.pem (never ca.key) to each client machine.",
    )
    parser.add_argument("--out", type=Path, default=Path("certs"), help="directory (certs)")
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="an extra name or address the server certificate covers (repeatable)",
    )
    parser.add_argument(
        "--renew",
        action="store_true",
        help="reissue the server certificate, keeping the CA (clients keep trusting it)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the CA too (every client then needs the new ca.pem)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=MAX_SERVER_DAYS,
        help=f"server certificate lifetime (max {MAX_SERVER_DAYS})",
    )
    parser.add_argument(
        "--node",
        metavar="NAME",
        help="issue node NAME (one of several servers sharing a database) its own "
        "certificate under the CA in --out, in OUT/nodes/NAME/ with a copy of ca.pem: the "
        "directory that node runs with (--certs). It covers NAME and every --san (give the "
        "node machine's names and addresses); the CA and server.pem are left as they are",
    )
    args = parser.parse_args(argv)
    if args.node is not None:
        if args.force:
            print("certs: --force replaces the CA; it does not go with --node", file=sys.stderr)
            return 2
        return _node(args)
    try:
        paths = generate(
            args.out, args.san, force=args.force, renew=args.renew or bool(args.san), days=args.days
        )
    except (ValueError, OSError) as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 1
    ca_state = "created" if paths.created_ca else "kept"
    server_state = "created" if paths.created_server else "kept"
    print(f"CA certificate     ({ca_state}): {paths.ca_cert}")
    print(f"  SHA-256 {fingerprint_sha256(paths.ca_cert.read_bytes())}")
    print(f"CA key             ({ca_state}): {paths.ca_key}  (keep private, mode 0600)")
    print(f"server certificate ({server_state}): {paths.server_cert}")
    print(f"  SHA-256 {fingerprint_sha256(paths.server_cert.read_bytes())}")
    print(f"server key         ({server_state}): {paths.server_key}  (mode 0600)")
    print(f"Copy {paths.ca_cert} to each client machine.")
    return 0


def _node(args: argparse.Namespace) -> int:
    try:
        node = generate_node(
            args.out, args.node, args.san, renew=args.renew or bool(args.san), days=args.days
        )
    except (ValueError, OSError) as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 1
    ca_state = "created" if node.created_ca else "kept"
    state = "created" if node.created_server else "kept"
    print(f"CA certificate     ({ca_state}): {args.out / 'ca.pem'}")
    print(f"  SHA-256 {fingerprint_sha256(node.ca_cert.read_bytes())}")
    print(f"node {args.node} certificate ({state}): {node.server_cert}")
    print(f"  SHA-256 {fingerprint_sha256(node.server_cert.read_bytes())}")
    print(f"node {args.node} key         ({state}): {node.server_key}  (mode 0600)")
    print(
        f"Copy {node.directory}/ to node {args.node}'s machine and start it with "
        f"--certs <that directory>. Clients keep the one {args.out / 'ca.pem'}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
