"""The generate-certs script. A local certificate authority (kept once
made) signs a short-lived server certificate whose names cover every way a
LAN client may reach this machine. Built on `cryptography`, like trustme.

Files (all PEM): ca.pem, ca.key (the CA), server.pem (the server certificate
alone), server.key. Keys are written 0600, atomically. For several server
nodes sharing one database, generate_node() issues each node its own
certificate under the same CA, in nodes/NAME/ (server.pem, server.key and a
copy of ca.pem: the directory that node runs with).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertPaths",
    "NodeCertPaths",
    "check_server_certificate",
    "default_names",
    "fingerprint_sha256",
    "generate",
    "generate_node",
    "lan_addresses",
    "short_fingerprint",
]

#: Bytes of a SHA-256 fingerprint a person compares: 16 (128 bits), shown as
#: eight groups of four hex digits. Machines compare all 32 bytes (invites).
SHORT_FINGERPRINT_BYTES = 16

#: The server certificate's lifetime is capped: browsers and good practice
#: both stop at about a year, and --renew makes reissuing cheap.
MAX_SERVER_DAYS = 365
CA_DAYS = 3650


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where the files are, and which of them this call created."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    created_ca: bool
    created_server: bool


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (best effort, no network traffic)."""
    found: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    except OSError:
        pass
    # The address the default route would use: connect() on UDP sends nothing.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        found.add(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def default_names() -> list[str]:
    """The names every server certificate covers: loopback, host names, LAN IPs."""
    host = socket.gethostname().split(".")[0] or "localhost"
    names = ["localhost", "127.0.0.1", "::1", host, f"{host}.local", *lan_addresses()]
    return list(dict.fromkeys(names))


#: One label of a host name (RFC 1123), in its ASCII form.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def san_name(name: str) -> str:
    """*name* as a server certificate can cover it: an IP address as given, a host
    name in ASCII (an international name in its xn-- form, a leading "*." kept).
    ValueError, saying why, for anything else (a space, a "!", an empty label)."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    host = name.strip().rstrip(".")
    wildcard = host.startswith("*.")
    try:
        ascii_host = host.removeprefix("*.").encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{name!r} is neither an IP address nor a host name (letters, digits and '-' "
            "between dots, like chat.school.lan)"
        )
    return ("*." if wildcard else "") + ascii_host.lower()


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def fingerprint_sha256(cert: x509.Certificate | bytes | str) -> str:
    """SHA-256 of the DER certificate as 64 lowercase hex digits: the one fingerprint.

    The server prints it at start, invites and mDNS carry it, both clients pin it.
    A certificate object, PEM (str or bytes) or DER bytes; DER is hashed as given,
    unparsed (what a TLS socket's getpeercert(binary_form=True) returns).
    """
    if isinstance(cert, str):
        cert = cert.encode()
    if isinstance(cert, bytes):
        if not cert.lstrip().startswith(b"-----"):
            return hashlib.sha256(cert).hexdigest()
        cert = x509.load_pem_x509_certificate(cert)
    return cert.fingerprint(hashes.SHA256()).hex()


def short_fingerprint(fingerprint: str) -> str:
    """The first 16 bytes of a hex SHA-256 fingerprint as 4-digit groups, for people.

    `short_fingerprint("9f86d081884c7d65...")` is "9f86 d081 884c 7d65 9a2f eaa0 c55a d015".
    Colons, spaces and case in *fingerprint* are ignored. 128 bits is far past
    what anyone could match by making certificates, and short enough to read
    aloud; invites carry the whole fingerprint for the software to check.
    """
    digits = "".join(ch for ch in fingerprint.lower() if ch in "0123456789abcdef")
    head = digits[: 2 * SHORT_FINGERPRINT_BYTES]
    return " ".join(head[i : i + 4] for i in range(0, len(head), 4))


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # Write beside the target then rename: a crash never leaves half a key, and
    # the key is 0600 from its first byte (mkstemp creates files 0600).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # A CA signs certificates; the server key only signs handshakes (ECDHE).
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    # What every certificate here shares (trustme's _cert_builder_common): a random
    # serial, an hour of slack for clocks behind ours, the basic constraints and the
    # key usage of its role, and its own key identifier.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            # path_length=0: the CA signs server certificates only, never another CA.
            x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
            critical=True,
        )
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "parley local CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"parley CA on {socket.gethostname()}"),
        ]
    )
    cert = _builder(name, name, key.public_key(), now, CA_DAYS, ca=True).sign(key, hashes.SHA256())
    return cert, key


def _make_server(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    days: int,
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, days, ca=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def generate(
    out_dir: Path | str,
    extra_sans: Iterable[str] = (),
    *,
    force: bool = False,
    renew: bool = False,
    days: int = MAX_SERVER_DAYS,
) -> CertPaths:
    """Make (or keep) the CA and server certificate in *out_dir*.

    Idempotent: existing files are kept. `renew` reissues the server certificate
    signed by the existing CA (clients keep trusting it); `force` replaces the
    CA too (every client must then get the new ca.pem).
    """
    if not 1 <= days <= MAX_SERVER_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_SERVER_DAYS}")
    extra_sans = [san_name(n) for n in extra_sans]  # before any file is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {n: out / n for n in ("ca.pem", "ca.key", "server.pem", "server.key")}
    now = datetime.now(UTC)
    created_server = False
    ca_cert, ca_key, created_ca = _ca(paths["ca.pem"], paths["ca.key"], force, now)
    server_missing = not (paths["server.pem"].exists() and paths["server.key"].exists())
    if created_ca or renew or server_missing:
        names = list(dict.fromkeys([*default_names(), *extra_sans]))
        cert, key = _make_server(ca_cert, ca_key, names, days, now)
        _write_atomic(paths["server.key"], _key_pem(key), 0o600)
        # The leaf alone. The server sends ca.pem after it in every handshake
        # (server/tls.py), so clients trusting on first use can pin the CA.
        _write_atomic(paths["server.pem"], _pem(cert), 0o644)
        created_server = True
    return CertPaths(
        ca_cert=paths["ca.pem"],
        ca_key=paths["ca.key"],
        server_cert=paths["server.pem"],
        server_key=paths["server.key"],
        created_ca=created_ca,
        created_server=created_server,
    )


def _ca(
    cert_path: Path, key_path: Path, force: bool, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """The CA kept at these paths, or a new one (when missing, or *force*); True if new."""
    if force or not (cert_path.exists() and key_path.exists()):
        ca_cert, ca_key = _make_ca(now)
        _write_atomic(key_path, _key_pem(ca_key), 0o600)
        _write_atomic(cert_path, _pem(ca_cert), 0o644)
        return ca_cert, ca_key, True
    ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return ca_cert, loaded, False


# --- one certificate per node (several servers sharing a database) --------------------------

#: Where generate_node() puts node NAME's files, below the CA's directory.
NODES_DIR = "nodes"

#: A node name: what `parley-server --node` takes, a directory name, and the
#: certificate's first DNS name. DNS label characters, at most 63.
_NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class NodeCertPaths:
    """A node's certificate directory: what its machine runs with (`--certs DIR`).

    It holds the node's server.pem and server.key and a copy of the shared ca.pem
    (so the node sends the CA after its certificate, as a single server does);
    never ca.key, which stays where the CA was made.
    """

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    created_ca: bool
    created_server: bool


def generate_node(
    out_dir: Path | str,
    node: str,
    names: Iterable[str] = (),
    *,
    renew: bool = False,
    days: int = MAX_SERVER_DAYS,
) -> NodeCertPaths:
    """Issue node *node* its own certificate under the shared CA in *out_dir*.

    The files go to `<out_dir>/nodes/<node>/`. The CA is the one in *out_dir* (made
    if missing, never replaced here): every node's certificate chains to the same
    ca.pem, so a client that trusts one node trusts all of them, and fails over
    between them without a question. The certificate covers *node* and *names*
    (the node machine's host names and addresses: this machine's are not its).
    Idempotent like generate(): an existing node certificate is kept unless
    *renew*; the node key is new each time the certificate is.
    """
    if not _NODE_NAME.fullmatch(node):
        raise ValueError(
            f"{node!r} is not a node name: 1 to 63 letters, digits or '-' (ASCII), "
            "not starting or ending with '-'"
        )
    if not 1 <= days <= MAX_SERVER_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_SERVER_DAYS}")
    names = [san_name(n) for n in names]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_cert, ca_key, created_ca = _ca(out / "ca.pem", out / "ca.key", False, now)
    directory = out / NODES_DIR / node
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_copy = (
        directory / "server.pem",
        directory / "server.key",
        directory / "ca.pem",
    )
    created_server = False
    if created_ca or renew or not _issued_by(cert_path, key_path, ca_cert):
        all_names = list(dict.fromkeys([node, *names]))
        cert, key = _make_server(ca_cert, ca_key, all_names, days, now)
        _write_atomic(key_path, _key_pem(key), 0o600)
        _write_atomic(cert_path, _pem(cert), 0o644)
        created_server = True
    # Always the current CA, so the node's chain and the clients' ca.pem agree.
    _write_atomic(ca_copy, _pem(ca_cert), 0o644)
    return NodeCertPaths(
        directory=directory,
        ca_cert=ca_copy,
        server_cert=cert_path,
        server_key=key_path,
        created_ca=created_ca,
        created_server=created_server,
    )


def _issued_by(cert_path: Path, key_path: Path, ca_cert: x509.Certificate) -> bool:
    # False when the node has no certificate yet, or one a replaced CA signed (it
    # would no longer verify against the ca.pem copied beside it).
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_server_certificate(
    cert_path: Path | str,
    *,
    now: datetime | None = None,
    warn_days: int = 30,
    addresses: Iterable[str] | None = None,
) -> list[str]:
    """Warnings about the server certificate: expiring soon, or not covering a LAN address."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    now = now or datetime.now(UTC)
    warnings: list[str] = []
    left = cert.not_valid_after_utc - now
    if left <= timedelta(0):
        warnings.append(
            f"the server certificate EXPIRED on {cert.not_valid_after_utc:%Y-%m-%d}: "
            "clients will refuse it; run `parley-certs --out certs --renew`"
        )
    elif left <= timedelta(days=warn_days):
        warnings.append(
            f"the server certificate expires in {left.days} day(s) "
            f"({cert.not_valid_after_utc:%Y-%m-%d}); run `parley-certs --out certs --renew`"
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        covered = set()
    for addr in lan_addresses() if addresses is None else addresses:
        if addr not in covered:
            warnings.append(
                f"the server certificate does not cover this machine's address {addr}: clients "
                f"using it will fail verification; run `parley-certs --out certs --renew` "
                f"(or --san {addr})"
            )
    return warnings
