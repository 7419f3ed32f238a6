"""Trust on first use, as both clients decide it: what to pin
from what a server offers, how an invite's fingerprint settles the first
connection without a person, and how a pin of a server certificate (older
clients pinned that) becomes a pin of the CA that signed it.

The policy (docs/security.md, "Trust on first use"):
1. The pin is the server's local CA when the server sends it (server/tls.py),
   else the server's own certificate. The CA outlives every `certs --renew`,
   so a renewed server is still trusted; a different CA is refused loudly.
2. An invite names the fingerprint to expect: the first connection pins the
   certificate with that fingerprint, and refuses (InviteMismatch) when the
   server offers none. No invite: a person compares the short fingerprint.
3. A pinned server certificate is replaced by the CA the server now sends
   only when that CA signed the pinned certificate: whoever holds that CA's
   key could have issued any certificate the user trusted, so nothing is
   trusted that was not before.
Everything here works on what the unverified probe returned; the connection
that carries credentials then verifies against the pin (client/tls.py).
"""

from __future__ import annotations

from parley_chat.certs import short_fingerprint

from .errors import InviteMismatch
from .tls import ProbedCertificate, is_ca_certificate, issued_by

__all__ = ["anchor_for_invite", "describe_anchor", "short_fingerprint", "upgraded_pin"]


def anchor_for_invite(probed: ProbedCertificate, expected: str, where: str) -> str:
    """The PEM to pin for a first connection to *where* from an invite naming *expected*.

    *expected* may be the fingerprint of the CA or of the server certificate
    (both sent by the server); the CA is pinned either way when there is one.
    Raises InviteMismatch, with the fingerprint offered, when neither matches.
    """
    wanted = expected.strip().lower()
    if wanted in (probed.fingerprint, probed.ca_fingerprint):
        return probed.anchor_pem
    raise InviteMismatch(
        f"{where} is not the server in the invite: the invite names the certificate "
        f"{short_fingerprint(wanted)}, the server offered {short_fingerprint(probed.anchor_fingerprint)}; "
        "nothing was sent. Ask the server's operator for a new invite.",
        probed.anchor_fingerprint,
    )


def upgraded_pin(pinned_pem: str, probed: ProbedCertificate) -> str | None:
    """The CA to pin instead of *pinned_pem*, a pinned server certificate, or None.

    Only when the server now sends a CA and that CA signed the pinned
    certificate (rule 3 above); None when the pin is a CA already, or the CA
    is missing or did not sign it (the pin then stays, and decides).
    """
    if is_ca_certificate(pinned_pem) or probed.ca_pem is None:
        return None
    return probed.ca_pem if issued_by(pinned_pem, probed.ca_pem) else None


def describe_anchor(probed: ProbedCertificate) -> str:
    """What the fingerprint a person compares belongs to: "CA" or "server certificate"."""
    return "CA" if probed.anchor_is_ca else "server certificate"
