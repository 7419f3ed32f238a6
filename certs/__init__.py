"""The generate-certs script. A local certificate authority (kept once
made) signs a short-lived server certificate whose names cover every way a
LAN client may reach this machine. Built on `cryptography`, like trustme.

Files (all PEM): ca.pem, ca.key (the CA), server.pem (the server certificate
alone), server.key. Keys are written 0600, atomically.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertPaths",
    "check_server_certificate",
    "default_names",
    "fingerprint_sha256",
    "generate",
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


def _make_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "parley local CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"parley CA on {socket.gethostname()}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {n: out / n for n in ("ca.pem", "ca.key", "server.pem", "server.key")}
    now = datetime.now(UTC)
    created_ca = created_server = False
    if force or not (paths["ca.pem"].exists() and paths["ca.key"].exists()):
        ca_cert, ca_key = _make_ca(now)
        _write_atomic(paths["ca.key"], _key_pem(ca_key), 0o600)
        _write_atomic(paths["ca.pem"], _pem(ca_cert), 0o644)
        created_ca = True
    else:
        ca_cert = x509.load_pem_x509_certificate(paths["ca.pem"].read_bytes())
        loaded = serialization.load_pem_private_key(paths["ca.key"].read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths['ca.key']} is not an EC private key")
        ca_key = loaded
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
