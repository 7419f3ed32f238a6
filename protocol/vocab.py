"""The protocol's vocabulary: every fixed word a frame field can hold, defined once.

Each is a StrEnum, so a member *is* its wire string: `MessageKind.PRIVATE ==
"private"`, it encodes to the same JSON, hashes as the string and keys a dict
as it would. Frames turn the words they parse into members (protocol/frames.py),
so code on both sides compares and builds with names, never with literals, and
a misspelt word is an AttributeError (and a mypy error), not a silent mismatch.

The store keeps the same words in its columns (server/store/models.py builds its
CHECK constraints from these), so the wire and the database cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    """What a `message` is: in a room, between two people, or a notice in a room."""

    PUBLIC = "public"
    PRIVATE = "private"
    SYSTEM = "system"


#: A message text starting with this is an emote, what the sender does ("/me
#: waves": shown as "* bob waves"). A convention of the text, not a kind: the
#: server stores and searches it as any text, and IRC clients get it as a CTCP
#: ACTION (and send theirs as one).
EMOTE_PREFIX = "/me "


def is_emote(text: str) -> bool:
    """True when *text* is an emote: EMOTE_PREFIX, then something done."""
    return text.startswith(EMOTE_PREFIX) and bool(text[len(EMOTE_PREFIX) :].strip())


class BatchKind(StrEnum):
    """What a `batch` of messages answers: the replay at login, a history page, a search."""

    REPLAY = "replay"
    HISTORY = "history"
    SEARCH = "search"


class BatchState(StrEnum):
    """Which end of a batch a `batch` frame is."""

    OPEN = "open"
    CLOSE = "close"


class ConversationKind(StrEnum):
    """What a `conversations` entry (or a `read` marker) names: a room or a private peer."""

    ROOM = "room"
    PRIVATE = "private"


class LinkOp(StrEnum):
    """The steps of device linking (`link` frames; docs/security.md)."""

    OFFER = "offer"
    FETCH = "fetch"
    ANSWER = "answer"


class Action(StrEnum):
    """What a `moderate` request asks for (and a `moderated` answer did)."""

    # room settings (owner, moderator or operator; privacy: owner or operator)
    TOPIC = "topic"
    PRIVATE = "private"
    PUBLIC = "public"
    INVITE = "invite"
    # actions on a member of a room
    KICK = "kick"
    BAN = "ban"
    UNBAN = "unban"
    MUTE = "mute"
    UNMUTE = "unmute"
    # room moderators (owner or operator)
    OP = "op"
    DEOP = "deop"
    # messages (the author, or a moderator of the message's room)
    DELETE = "delete"
    EDIT = "edit"
    # server-wide (operators only)
    DISCONNECT = "disconnect"
    LOCK = "lock"
    UNLOCK = "unlock"
    ANNOUNCE = "announce"


class Role(StrEnum):
    """A role a `roominfo` frame gives, strongest first."""

    OPERATOR = "operator"
    OWNER = "owner"
    MODERATOR = "moderator"


class NoticeKind(StrEnum):
    """What a `notice` tells its reader."""

    #: An operator's broadcast to everyone online.
    ANNOUNCE = "announce"
    #: The reader was invited to the notice's room.
    INVITE = "invite"
    #: The reader was put out of the room (the text says why).
    KICK = "kick"
    BAN = "ban"
    #: The reader's ban or mute in the room was lifted, or the reader was muted there.
    UNBAN = "unban"
    MUTE = "mute"
    UNMUTE = "unmute"


__all__ = [
    "Action",
    "BatchKind",
    "BatchState",
    "ConversationKind",
    "LinkOp",
    "MessageKind",
    "NoticeKind",
    "Role",
]
