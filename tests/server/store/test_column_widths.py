"""Text the store writes is cut to its column's width, one named width each.

SQLite keeps a longer string in a VARCHAR(n) column; PostgreSQL refuses it. So every
write of operator prose (reasons) and of what a client says about itself (peer,
client name) cuts to the width its column is declared with: the same name
(store/models.py) in the model and in the cut, checked here against the schema and
the stored rows.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from parley_chat.protocol import MAX_CLIENT_NAME_CHARS
from parley_chat.server.store import Store, writes
from parley_chat.server.store import moderation as mstore
from parley_chat.server.store.models import (
    CLIENT_CHARS,
    PEER_CHARS,
    REASON_CHARS,
    ChatSession,
    ModerationAction,
    RoomSanction,
    User,
)

from .conftest import NOW


def _rows(store: Store, sql: str) -> list[tuple]:
    """What the database holds, read back by plain SQL (either dialect)."""
    with store.read() as s:
        return [tuple(row) for row in s.execute(text(sql)).all()]


def test_the_models_declare_the_named_widths():
    assert ChatSession.__table__.c.peer.type.length == PEER_CHARS
    assert ChatSession.__table__.c.client.type.length == CLIENT_CHARS
    for column in (
        ChatSession.__table__.c.end_reason,
        User.__table__.c.lock_reason,
        RoomSanction.__table__.c.reason,
        ModerationAction.__table__.c.reason,
    ):
        assert column.type.length == REASON_CHARS, column


def test_the_migrated_schema_has_the_same_widths(store, db_url):
    with store.read() as s:
        columns = {c["name"]: c["type"] for c in inspect(s.connection()).get_columns("sessions")}
    assert columns["peer"].length == PEER_CHARS
    assert columns["client"].length == CLIENT_CHARS
    assert columns["end_reason"].length == REASON_CHARS


def test_long_session_fields_and_reasons_are_stored_cut_to_their_columns(store, users, db_url):
    # hello.client may be longer than the column keeps: the cut is what makes it fit.
    assert MAX_CLIENT_NAME_CHARS > CLIENT_CHARS
    session_id = store.submit(
        lambda s: writes.open_session(
            s,
            user_id=users["alice"],
            peer="p" * 100,
            client="c" * MAX_CLIENT_NAME_CHARS,
            token_id=None,
            now=NOW,
        )
    ).result(5)
    store.submit(lambda s: writes.end_session(s, session_id, "r" * 500, NOW)).result(5)
    store.submit(lambda s: mstore.set_locked(s, "bob", True, "x" * 500, NOW)).result(5)
    ((peer, client, reason),) = _rows(
        store, f"SELECT peer, client, end_reason FROM sessions WHERE id = {session_id}"
    )
    assert (len(peer), len(client), len(reason)) == (PEER_CHARS, CLIENT_CHARS, REASON_CHARS)
    ((lock_reason,),) = _rows(store, "SELECT lock_reason FROM users WHERE nick = 'bob'")
    assert lock_reason == "x" * REASON_CHARS
