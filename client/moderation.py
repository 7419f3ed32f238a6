"""The client library's side of moderation (issue 11).

Turns the server's moderation frames into events (client/events.py) and
builds `moderate` requests, so ChatClient only forwards: its I/O thread
calls event_for() for frames it does not know itself, and its moderate()
sends what request() builds. No GUI import, no socket.
"""

from __future__ import annotations

import uuid

from parley_chat.protocol import Frame
from parley_chat.protocol.moderation import (
    Deleted,
    Edited,
    Moderate,
    Moderated,
    Notice,
    RoomInfo,
    action_named,
)

from .events import (
    MessageDeleted,
    MessageEdited,
    ModerationDone,
    ModerationEvent,
    NoticeReceived,
    RoomInfoChanged,
)

#: The server frames this module turns into events.
FRAMES = (RoomInfo, Deleted, Edited, Notice, Moderated)


def event_for(frame: Frame) -> ModerationEvent | None:
    """The event for a moderation frame from the server, or None for any other frame."""
    if isinstance(frame, RoomInfo):
        return RoomInfoChanged(
            room=frame.room,
            topic=frame.topic,
            private=frame.private,
            owner=frame.owner,
            moderators=tuple(frame.moderators or ()),
            operators=tuple(frame.operators or ()),
            tag=frame.tag,
        )
    if isinstance(frame, Deleted):
        return MessageDeleted(frame.id, frame.room, frame.by)
    if isinstance(frame, Edited):
        return MessageEdited(frame.id, frame.text, frame.edited, frame.room)
    if isinstance(frame, Notice):
        return NoticeReceived(frame.kind, frame.text, frame.ts, frame.from_, frame.room)
    if isinstance(frame, Moderated):
        return ModerationDone(frame.action, frame.message, frame.ref)
    return None


def request(
    action: str,
    *,
    room: str | None = None,
    nick: str | None = None,
    message_id: int | None = None,
    text: str | None = None,
    reason: str | None = None,
    minutes: int | None = None,
) -> Moderate:
    """A `moderate` frame with a fresh `ref`. Raises LocalProtocolError for a bad request
    (unknown action, a field it needs missing, a bad name, text or duration)."""
    return Moderate(
        action=action_named(action),
        room=room,
        nick=nick,
        id=message_id,
        text=text,
        reason=reason or None,
        minutes=minutes,
        ref=uuid.uuid4().hex,
    )
