"""What the client library tells its user, as frozen dataclasses put on ChatClient.events.

The terminal client, the desktop client and the benchmarks all consume this
one stream (a queue.Queue). Events are made by the sans-IO ClientSession
(client/session.py) and by ChatClient's I/O thread (connection state);
consumers read them on their own thread (the GUI drains the queue with after()).
"""

from __future__ import annotations

from dataclasses import dataclass

from parley_chat.protocol import Message
from parley_chat.protocol.vocab import Role


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in. `resumed` is True when the login used the resume token.

    `tls_version` is e.g. "TLSv1.3"; `fingerprint` the SHA-256 of the server
    certificate as 64 lowercase hex digits.
    """

    nick: str
    rooms: tuple[str, ...]
    server: str
    created: bool
    resumed: bool
    tls_version: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message to show. `batch` is None for live messages, else "replay",
    "history" or "search" (the batch it arrived in). Live and replayed messages
    are de-duplicated by id before they get here; history and search results
    are not (the user asked for them).

    An end-to-end encrypted message arrives decrypted (`message.text` is the
    plaintext, `message.e2e` None) with `secure` True; one this device cannot
    read has `secure` True, `e2e_error` the reason and a placeholder text.
    """

    message: Message
    batch: str | None = None
    tag: str | None = None
    secure: bool = False
    e2e_error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchStarted:
    """A batch of messages begins. `gap` (replay only): older missed messages were
    left out past the server's cap; page back with history() to fill it."""

    kind: str
    tag: str | None
    target: str | None
    gap: bool


@dataclass(frozen=True, slots=True)
class BatchEnded:
    """A batch ends. `more`: older history exists before the first message sent.
    `count`: messages in the batch."""

    kind: str
    tag: str | None
    target: str | None
    more: bool
    count: int


@dataclass(frozen=True, slots=True)
class Acked:
    """The server committed a message this client sent (`client_id` from send_text)."""

    client_id: str
    id: int
    ts: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """Who is online in `room`: `online` is the full list (sorted, case-insensitively)
    after the change; `joined` / `left` name who changed, when one did. `tag` is
    the one given to who(), when this answers it."""

    room: str
    online: tuple[str, ...]
    joined: str | None = None
    left: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class RoomsListed:
    """Answer to rooms(): (name, member count, whether this user is a member)."""

    rooms: tuple[tuple[str, int, bool], ...]
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One of the user's conversations, as the server lists it.

    `kind` is "room" or "private"; `name` the room (with its `#`) or the peer's
    nick; `last` the latest message the user may see (None if there is none),
    its text cut to a preview of protocol.MAX_PREVIEW_CHARS when `cut` is True;
    `unread` how many messages from others came after `read`, the user's read
    marker (a message id, 0 when nothing was marked read).
    """

    kind: str
    name: str
    last: Message | None
    unread: int
    read: int
    cut: bool = False


@dataclass(frozen=True, slots=True)
class ConversationsListed:
    """The user's conversations: every room they are in and every private peer.

    Sent right after every Connected (reconnects too, before the replay), and in answer to
    ChatClient.conversations() (with its `tag`).
    """

    items: tuple[ConversationSummary, ...]
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ReadMoved:
    """The user's read marker moved on another of their connections (a second device).

    `kind` is "room" or "private", `name` the room or the peer's nick, `id` the
    message id read up to.
    """

    kind: str
    name: str
    id: int


@dataclass(frozen=True, slots=True)
class RoomJoined:
    """This user is now a member of `room` (after join(), on any of its connections)."""

    room: str


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """This user left `room`."""

    room: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The server answered a request with an `error` frame (it refused it, or announces
    it is closing the connection). `code` is a protocol.ErrorCode value; `ref`
    the client id of the send (or moderation request) it refers to, if any.

    Not to be confused with server/errors.py's exceptions: this is what a client
    is told, on its event queue.
    """

    code: str
    message: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is gone. `will_retry`: an automatic reconnect follows
    (Reconnecting events announce each attempt). `by_user`: close() or /exit."""

    reason: str
    will_retry: bool
    by_user: bool = False


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Attempt number `attempt` starts in `delay` seconds (exponential backoff with jitter)."""

    attempt: int
    delay: float


# --- moderation (issue 11) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomInfoChanged:
    """A room's topic, privacy or roles (at login, on join, on change, or for `who`)."""

    room: str
    topic: str | None
    private: bool
    owner: str | None
    moderators: tuple[str, ...]
    operators: tuple[str, ...]
    tag: str | None = None

    def role_of(self, nick: str) -> Role | None:
        """The strongest role of *nick* here: "operator", "owner", "moderator" or None."""
        key = nick.lower()
        if any(n.lower() == key for n in self.operators):
            return Role.OPERATOR
        if self.owner is not None and self.owner.lower() == key:
            return Role.OWNER
        if any(n.lower() == key for n in self.moderators):
            return Role.MODERATOR
        return None


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """Message `id` was deleted (by its author or a moderator `by`): remove it everywhere."""

    id: int
    room: str | None
    by: str | None


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """Message `id` now reads `text`; `edited` is when (UTC, wire form)."""

    id: int
    text: str
    edited: str
    room: str | None


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    """Words from the server or an operator: `kind` is announce, invite, kick, ban, mute, unmute..."""

    kind: str
    text: str
    ts: str
    sender: str | None
    room: str | None


@dataclass(frozen=True, slots=True)
class ModerationDone:
    """A moderation request (`ref`, from ChatClient.moderate) succeeded; `message` says what."""

    action: str
    message: str
    ref: str | None


ModerationEvent = RoomInfoChanged | MessageDeleted | MessageEdited | NoticeReceived | ModerationDone

ClientEvent = (
    Connected
    | MessageReceived
    | BatchStarted
    | BatchEnded
    | Acked
    | PresenceChanged
    | RoomsListed
    | ConversationsListed
    | ReadMoved
    | RoomJoined
    | RoomLeft
    | ErrorReply
    | Disconnected
    | Reconnecting
    | ModerationEvent
)
