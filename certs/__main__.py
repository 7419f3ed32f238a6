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
    if args.node is not None and args.force:
        print("certs: --force replaces the CA; it does not go with --node", file=sys.stderr)
        return 2
    renew = args.renew or bool(args.san)  # new names need a new certificate
    try:
        if args.node is None:
            paths = generate(args.out, args.san, force=args.force, renew=renew, days=args.days)
        else:
            node = generate_node(args.out, args.node, args.san, renew=renew, days=args.days)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"certs: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 1
    if args.node is None:
        _show("CA certificate", paths.created_ca, paths.ca_cert)
        _show("CA key", paths.created_ca, paths.ca_key, "keep private, mode 0600")
        _show("server certificate", paths.created_server, paths.server_cert)
        _show("server key", paths.created_server, paths.server_key, "mode 0600")
        print(f"Copy {paths.ca_cert} to each client machine.")
    else:
        _show("CA certificate", node.created_ca, args.out / "ca.pem")
        _show(f"node {args.node} certificate", node.created_server, node.server_cert)
        _show(f"node {args.node} key", node.created_server, node.server_key, "mode 0600")
        print(
            f"Copy {node.directory}/ to node {args.node}'s machine and start it with "
            f"--certs <that directory>. Clients keep the one {args.out / 'ca.pem'}."
        )
    return 0


def _show(what: str, created: bool, path: Path, note: str | None = None) -> None:
    """One file's line: created or kept, where; a certificate's fingerprint under it."""
    state = "created" if created else "kept"
    print(f"{what:<18} ({state}): {path}" + (f"  ({note})" if note else ""))
    if note is None:  # a certificate (keys get a note instead)
        print(f"  SHA-256 {fingerprint_sha256(path.read_bytes())}")


if __name__ == "__main__":
    sys.exit(main())
