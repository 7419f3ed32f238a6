# Moderation rows for the sample chat of tests/server/test_logs.populate, so the
# documented audit and moderation queries (docs/schema.md) find rows. Written
# through server/store/moderation.py, as the server writes them; the texts of
# the sample messages stay as they are (other tests read them).

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from parley_chat.server.store import moderation as mstore
from parley_chat.server.store.models import Message, MessageVersion, User


def add_moderation(
    run: Callable[[Any], Any], ids: dict[str, int], at: Callable[..., datetime]
) -> None:
    """alice is an operator and owns #dev (topic set, bob a moderator); carol is banned
    from #dev until lifted; m4 was edited once; eve's m9 was deleted by alice."""
    d2 = "2026-11-24"
    a, b, c = ids["alice"], ids["bob"], ids["carol"]

    def op(s: Any) -> None:
        s.get(User, a).operator = True
        mstore.record(
            s, now=at(d2, "07:00"), action="op", actor_id=None, target_id=a, detail="parley-admin"
        )
        mstore.set_owner(s, "#dev", a)
        dev = mstore.room_by_name(s, "#dev")
        assert dev is not None
        mstore.set_topic(s, dev, "release planning")
        mstore.record(
            s,
            now=at(d2, "07:05"),
            action="topic",
            actor_id=a,
            room_id=dev.id,
            detail="release planning",
        )
        mstore.set_moderator(s, dev, b, True, a, at(d2, "07:06"))
        mstore.record(s, now=at(d2, "07:06"), action="op", actor_id=a, room_id=dev.id, target_id=b)
        until = None  # until lifted (so the "in force now" example finds it)
        mstore.add_sanction(
            s,
            room_id=dev.id,
            user_id=c,
            kind="ban",
            by_id=a,
            reason="spam",
            now=at(d2, "13:00"),
            until=until,
        )
        mstore.record(
            s,
            now=at(d2, "13:00"),
            action="ban",
            actor_id=a,
            room_id=dev.id,
            target_id=c,
            reason="spam",
            until=until,
        )
        m4 = s.get(Message, ids["m4"])
        s.add(
            MessageVersion(
                message_id=m4.id,
                version=1,
                body="the build is 40% done",
                replaced_at=at(d2, "14:00"),
            )
        )
        m4.edited_at = at(d2, "14:00")
        mstore.record(
            s,
            now=at(d2, "14:00"),
            action="edit",
            actor_id=a,
            room_id=dev.id,
            target_id=a,
            message_id=m4.id,
        )
        m9 = s.get(Message, ids["m9"])
        mstore.delete_message(s, m9, a, at(d2, "12:30"))
        mstore.record(
            s, now=at(d2, "12:30"), action="delete", actor_id=a, room_id=m9.room_id, target_id=m9.sender_id,
            message_id=m9.id, reason="off topic",
        )  # fmt: skip

    run(op)
