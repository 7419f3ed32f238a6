"""client: everything a person runs to chat, on one network library.

session (ClientSession: the protocol's client side, sans-IO), connection
(ChatClient: the I/O shell around it: TLS, one I/O thread, events, reconnect
and failover), addresses (server lists), commands (the slash commands of both
clients), tls (the client SSLContext and the display-only certificate probe),
trust (what trust on first use pins), discovery (servers found by mDNS), errors,
events, and cli (the terminal client). The desktop app lives in client.gui and
nothing here imports it.
"""

from .connection import ChatClient, backoff_delay
from .errors import (
    CertificateExpired,
    CertificateNotTrusted,
    ClientError,
    ConnectionLost,
    HostnameMismatch,
    InviteMismatch,
    LoginRefused,
    ServerUnreachable,
    TLSVerificationFailed,
    TrustStoreError,
)
from .events import (
    Acked,
    BatchEnded,
    BatchStarted,
    ClientEvent,
    Connected,
    ConversationsListed,
    ConversationSummary,
    Disconnected,
    ErrorReply,
    MessageReceived,
    PresenceChanged,
    ReadMoved,
    Reconnecting,
    RoomJoined,
    RoomLeft,
    RoomsListed,
)
from .session import ClientSession
from .tls import (
    ProbedCertificate,
    client_context,
    fingerprint_sha256,
    probe_server_certificate,
)

__all__ = [
    "Acked",
    "BatchEnded",
    "BatchStarted",
    "CertificateExpired",
    "CertificateNotTrusted",
    "ChatClient",
    "ClientError",
    "ClientEvent",
    "ClientSession",
    "Connected",
    "ConnectionLost",
    "ConversationSummary",
    "ConversationsListed",
    "Disconnected",
    "ErrorReply",
    "HostnameMismatch",
    "InviteMismatch",
    "LoginRefused",
    "MessageReceived",
    "PresenceChanged",
    "ProbedCertificate",
    "ReadMoved",
    "Reconnecting",
    "RoomJoined",
    "RoomLeft",
    "RoomsListed",
    "ServerUnreachable",
    "TLSVerificationFailed",
    "TrustStoreError",
    "backoff_delay",
    "client_context",
    "fingerprint_sha256",
    "probe_server_certificate",
]
