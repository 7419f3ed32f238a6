"""Error codes carried by `error` frames, and the exceptions
the protocol layer raises.

Exception hierarchy (who is at fault decides the class):

* ProtocolError               never raised directly
  x LocalProtocolError        *we* tried to build or send something invalid (a bug here)
  x RemoteProtocolError       the *peer* sent something invalid; `.code` goes on the wire
    + StreamError             ...and the byte stream cannot be delimited any more: close it
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable codes for `error` frames. Clients branch on these, never on the message text."""

    #: The line is not valid UTF-8.
    BAD_UTF8 = "bad-utf8"
    #: The line is not a JSON object.
    BAD_JSON = "bad-json"
    #: A line exceeded MAX_LINE_BYTES; the connection is closed after this error.
    LINE_TOO_LONG = "line-too-long"
    #: The frame's `type` is missing or not one this side accepts.
    UNKNOWN_TYPE = "unknown-type"
    #: A field is missing, has the wrong type, or the combination is invalid.
    BAD_FRAME = "bad-frame"
    #: The `hello` asked for a protocol version this server does not speak.
    BAD_VERSION = "unsupported-version"
    #: Message text is empty or longer than the server's limit.
    TEXT_TOO_LONG = "text-too-long"
    #: Message text contains a control character other than newline and tab.
    BAD_TEXT = "bad-text"
    #: A nick is not 1 to 24 letters, digits, `_` or `-`.
    BAD_NICK = "bad-nick"
    #: A room name is not `#` followed by 1 to 32 letters, digits, `_` or `-`.
    BAD_ROOM = "bad-room"
    #: The frame needs a logged-in session (send `hello` first).
    NOT_LOGGED_IN = "not-logged-in"
    #: A second `hello` on a connection that is already logged in.
    ALREADY_LOGGED_IN = "already-logged-in"
    #: Wrong password for an existing account.
    AUTH_FAILED = "auth-failed"
    #: No account has this nick; log in with `register: true` to create one.
    NO_SUCH_ACCOUNT = "no-such-account"
    #: `register: true` for a nick that is already registered, with a different password.
    NICK_TAKEN = "nick-taken"
    #: The operator has closed registration; ask them for an account.
    REGISTRATION_CLOSED = "registration-closed"
    #: The resume token is unknown, expired or revoked; log in with the password.
    BAD_TOKEN = "bad-token"
    #: Too many failed logins from this address for this nick; wait and retry.
    THROTTLED = "throttled"
    #: The private message's recipient has no account.
    NO_SUCH_NICK = "no-such-nick"
    #: The room does not exist.
    NO_SUCH_ROOM = "no-such-room"
    #: The user is not a member of the room named (send or history in it).
    NOT_IN_ROOM = "not-in-room"
    #: The default room cannot be left.
    CANNOT_LEAVE = "cannot-leave"
    #: Sending faster than the flood limit allows.
    FLOOD = "flood"
    #: The message could not be stored (disk full, read-only database); it was NOT
    #: accepted, no ack follows, and the client may retry later with the same id.
    STORE_FAILED = "store-failed"
    #: A `send` reused a client id of an earlier message with another text or
    #: target; the new message was NOT stored. Use a fresh id for a new message.
    ID_REUSED = "id-reused"
    #: A cap on rooms was reached (rooms per user, or rooms on the server).
    TOO_MANY_ROOMS = "too-many-rooms"
    #: Too many connections from this address.
    TOO_MANY_CONNECTIONS = "too-many-connections"
    #: The connection was silent or unauthenticated past a deadline.
    TIMEOUT = "timeout"
    #: The server is shutting down.
    SHUTDOWN = "shutdown"
    #: `keys_put` for an account whose keys are already published and differ
    #: (link this device instead, or publish with `replace: true` to reset them).
    KEYS_EXIST = "keys-exist"
    #: A `link` names a code no device of this account offered (or it expired).
    NO_SUCH_LINK = "no-such-link"
    #: A bug on the server; the request was not carried out.
    INTERNAL = "internal"
    #: Moderation: the user lacks the role the action needs; nothing changed.
    NOT_PERMITTED = "not-permitted"
    #: The user is banned from the room (join refused; until the ban ends or is lifted).
    BANNED = "banned"
    #: The user is muted in the room: the message was NOT stored.
    MUTED = "muted"
    #: The room is private (invite-only) and the user has no invitation.
    INVITE_ONLY = "invite-only"
    #: The account is locked by an operator: no login until it is unlocked.
    ACCOUNT_LOCKED = "account-locked"
    #: An operator ended this connection (the error's message says why).
    DISCONNECTED = "disconnected"
    #: The message named does not exist, is not visible to the user, or is deleted.
    NO_SUCH_MESSAGE = "no-such-message"


class ProtocolError(Exception):
    """Base of the protocol's exceptions. Never raised directly: raise a subclass."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("tried to directly instantiate ProtocolError")
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class LocalProtocolError(ProtocolError):
    """We tried to build or send a frame that breaks the protocol: a bug on this side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol. `.code` is what to answer with.

    `frame_type` names the frame's type when it was known (a recognised `type`
    with bad fields), so a receiver can treat, say, a broken `hello` as a
    refused login.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        ref: str | None = None,
        *,
        frame_type: str | None = None,
    ) -> None:
        super().__init__(code, message, ref)
        self.frame_type = frame_type


class StreamError(RemoteProtocolError):
    """The peer broke framing itself (for example a line over the cap): the stream must close."""
