# Reads: replay, history, search and the one visibility rule behind them all.
# A third user must never see another pair's private messages by any path.

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from parley_chat.protocol import UNREAD_CAP
from parley_chat.server.store import queries, writes
from parley_chat.server.store.queries import fts_query, like_pattern, search_terms
from tests.server.store.conftest import NOW, post


def _ids(msgs):
    return [m.id for m in msgs]


@pytest.fixture
def chat(store, users):
    """A little history: lobby and #dev chatter, a private alice<->bob exchange."""
    a, b, c = users["alice"], users["bob"], users["carol"]
    m = {
        "lobby1": post(store, kind="public", body="hello lobby", room="#lobby", sender_id=a),
        "dev1": post(store, kind="public", body="dev talk about C++", room="#dev", sender_id=b),
        "pm1": post(
            store, kind="private", body="secret plan example.com", sender_id=a, recipient_id=b
        ),
        "sys": post(store, kind="system", body="carol joined", room="#lobby"),
        "pm2": post(store, kind="private", body="reply to the secret", sender_id=b, recipient_id=a),
        "lobby2": post(store, kind="public", body='she said "hi" ok', room="#lobby", sender_id=c),
    }
    return m


def test_replay_is_what_the_user_may_see_oldest_first_without_notices(store, users, chat):
    with store.read() as s:
        got, gap = queries.replay_after(s, users["alice"], 0, 500)
        assert _ids(got) == _ids([chat[k] for k in ("lobby1", "dev1", "pm1", "pm2", "lobby2")])
        assert not gap
        carol, _ = queries.replay_after(s, users["carol"], 0, 500)
        assert _ids(carol) == [chat["lobby1"].id, chat["lobby2"].id]


def test_replay_past_the_cap_sends_the_newest_and_reports_the_gap(store, users, chat):
    with store.read() as s:
        got, gap = queries.replay_after(s, users["alice"], 0, 2)
    assert gap and _ids(got) == [chat["pm2"].id, chat["lobby2"].id]


def test_history_pages_back_without_overlap(store, users):
    a = users["alice"]
    posted = [
        post(store, kind="public", body=f"n{i}", room="#lobby", sender_id=a) for i in range(7)
    ]
    seen, before, more = [], None, True
    with store.read() as s:
        while more:
            page, more = queries.history(s, a, room="#lobby", before=before, limit=3)
            seen = page + seen
            before = page[0].id
    assert _ids(seen) == _ids(posted)


def test_history_of_a_private_conversation_is_only_its_two_parties(store, users, chat):
    with store.read() as s:
        mine, _ = queries.history(s, users["alice"], peer="bob")
        assert _ids(mine) == [chat["pm1"].id, chat["pm2"].id]
        nosy, _ = queries.history(s, users["carol"], peer="bob")
        assert nosy == []
        nosy_room, _ = queries.history(s, users["carol"], room="#dev")
        assert nosy_room == []


def test_search_is_substring_and_never_leaks_private_messages(store, users, chat):
    with store.read() as s:
        assert _ids(queries.search(s, users["alice"], "secret")[0]) == [
            chat["pm2"].id,
            chat["pm1"].id,
        ]  # newest first
        assert queries.search(s, users["carol"], "secret")[0] == []
        assert queries.search(s, users["carol"], "C++")[0] == []  # #dev is not carol's
        assert _ids(queries.search(s, users["bob"], "C++")[0]) == [chat["dev1"].id]
        assert _ids(queries.search(s, users["bob"], "example.com")[0]) == [chat["pm1"].id]
        assert _ids(queries.search(s, users["carol"], '"')[0]) == [chat["lobby2"].id]
        assert _ids(queries.search(s, users["carol"], "hi")[0]) == [chat["lobby2"].id]
        assert _ids(queries.search(s, users["alice"], "SECRET plan")[0]) == [chat["pm1"].id]
        assert queries.search(s, users["alice"], "   ")[0] == []
        assert queries.search(s, users["alice"], "OR AND NEAR(")[0] == []  # not FTS syntax


def test_search_pages_with_before(store, users):
    a = users["alice"]
    for i in range(5):
        post(store, kind="public", body=f"needle {i}", room="#lobby", sender_id=a)
    with store.read() as s:
        first, more = queries.search(s, a, "needle", limit=3)
        rest, more2 = queries.search(s, a, "needle", before=first[-1].id, limit=3)
    assert more and not more2
    assert [m.body for m in first + rest] == [f"needle {i}" for i in range(4, -1, -1)]


def test_latest_for_a_fresh_login(store, users, chat):
    with store.read() as s:
        got = queries.latest_for_user(s, users["alice"], per_room=1, private_limit=1)
    assert _ids(got) == [chat["dev1"].id, chat["pm2"].id, chat["lobby2"].id]


def _bulk(store, count, *, body="m", **kw):
    """Store *count* messages in one transaction; their ids, oldest first."""
    return store.submit(
        lambda s: [
            writes.add_message(s, now=NOW, body=f"{body} {i}", **kw)[0].id for i in range(count)
        ]
    ).result(30)


def _hide(store, message_id):
    """Mark one message deleted, as a moderator's delete does."""
    store.submit(
        lambda s: s.execute(
            text("UPDATE messages SET deleted_at = :now WHERE id = :id"),
            {"now": NOW, "id": message_id},
        )
    ).result(5)


def test_latest_for_a_fresh_login_is_the_newest_of_each_room_and_of_the_private_ones(store, users):
    a, b = users["alice"], users["bob"]
    lobby = _bulk(store, 120, kind="public", room="#lobby", sender_id=b)
    dev = _bulk(store, 5, kind="public", room="#dev", sender_id=b)
    sent = _bulk(store, 30, kind="private", sender_id=a, recipient_id=b)
    post(store, kind="system", body="bob joined", room="#lobby")  # never listed
    got_back = _bulk(store, 30, kind="private", sender_id=b, recipient_id=a)
    _hide(store, lobby[-1])
    with store.read() as s:
        got = _ids(queries.latest_for_user(s, a, per_room=50, private_limit=40))
    private = sorted(sent + got_back)[-40:]
    assert got == sorted(lobby[-51:-1] + dev + private)


def test_replay_far_behind_is_the_newest_window_of_everything_visible(store, users):
    a, b, c = users["alice"], users["bob"], users["carol"]
    lobby = _bulk(store, 400, kind="public", room="#lobby", sender_id=b)
    dev = _bulk(store, 50, kind="public", room="#dev", sender_id=b)
    theirs = _bulk(store, 40, kind="private", sender_id=b, recipient_id=c)  # not alice's
    mine = _bulk(store, 60, kind="private", sender_id=b, recipient_id=a)
    _hide(store, mine[-1])
    visible = sorted(lobby + dev + mine[:-1])
    with store.read() as s:
        got, gap = queries.replay_after(s, a, lobby[10], 100)
        assert gap and _ids(got) == visible[-100:]
        # From near the end: everything after, no gap.
        rest, gap2 = queries.replay_after(s, a, visible[-7], 100)
        assert not gap2 and _ids(rest) == visible[-6:]
        assert not set(_ids(got)) & set(theirs)


def test_unread_counts_stop_at_the_cap(store, users):
    a, b = users["alice"], users["bob"]
    _bulk(store, UNREAD_CAP + 5, kind="public", room="#lobby", sender_id=b)
    _bulk(store, 3, kind="public", room="#dev", sender_id=b)
    _bulk(store, UNREAD_CAP + 2, kind="private", sender_id=b, recipient_id=a)
    with store.read() as s:
        listed = {(c.kind, c.name): c.unread for c in queries.conversations(s, a)}
    assert listed == {
        ("room", "#dev"): 3,
        ("room", "#lobby"): UNREAD_CAP,
        ("private", "bob"): UNREAD_CAP,
    }


def test_search_terms_are_quoted_never_parsed():
    assert search_terms('a "b" example.com C++') == (['"b"', "example.com", "C++"], ["a"])
    assert fts_query(['say "x"']) == '"say ""x"""'
    assert like_pattern("50%_off") == "%50\\%\\_off%"


def test_tokens_expire_and_are_revoked_by_a_password_reset(store, users):
    a = users["alice"]
    store.submit(lambda s: writes.issue_token(s, a, "h1", NOW, NOW + timedelta(days=1))).result(5)
    with store.read() as s:
        assert queries.user_by_token(s, "h1", NOW)[0].nick == "alice"
        assert queries.user_by_token(s, "h1", NOW + timedelta(days=2)) is None
    store.submit(lambda s: writes.set_password(s, "alice", "new", NOW)).result(5)
    with store.read() as s:
        assert queries.user_by_token(s, "h1", NOW) is None


def test_deleted_user_frees_the_nick_and_keeps_messages(store, users, chat):
    store.submit(lambda s: writes.delete_user(s, "carol", NOW)).result(5)
    with store.read() as s:
        assert queries.get_user(s, "carol") is None
        rows = (
            s.connection()
            .execute(text("SELECT sender FROM chat_log WHERE id = :id"), {"id": chat["lobby2"].id})
            .all()
        )
    assert rows == [("carol (removed)",)]
    again = store.submit(lambda s: writes.create_user(s, "Carol", "h", NOW)).result(5)
    assert again.nick == "Carol"


def test_rooms_and_members(store, users):
    with store.read() as s:
        assert queries.rooms_of(s, users["alice"]) == ["#dev", "#lobby"]
        infos = {r.name: r.members for r in queries.list_rooms(s)}
        assert infos == {"#dev": 2, "#lobby": 3}
        assert queries.room_exists(s, "#DEV") == "#dev"
    assert store.submit(lambda s: writes.leave_room(s, users["bob"], "#Dev")).result(5)
    assert not store.submit(lambda s: writes.leave_room(s, users["bob"], "#dev")).result(5)


def test_a_replay_is_one_sql_statement(store, users):
    from sqlalchemy import event

    a = users["alice"]
    for i in range(30):
        post(store, kind="public", body=f"r{i}", room="#lobby", sender_id=a)
    selects: list[str] = []

    def record(_conn, _cursor, statement, *_rest):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    engine = store._reader_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with store.read() as s:
            got, gap = queries.replay_after(s, users["bob"], 0, 20)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(got) == 20 and gap
    assert len(selects) == 1


def test_ids_at_the_64_bit_limit_never_overflow(store, users, chat):
    top = 2**63 - 1
    a = users["alice"]
    with store.read() as s:
        assert queries.replay_after(s, a, top, 10) == ([], False)
        assert queries.replay_after(s, a, top + 1, 10) == ([], False)
        assert queries.replay_after(s, a, -(2**70), 500)[0] == queries.replay_after(s, a, 0, 500)[0]
        for before in (top, top + 1, 2**80):
            page, _ = queries.history(s, a, room="#lobby", before=before)
            assert [m.id for m in page] == [chat["lobby1"].id, chat["sys"].id, chat["lobby2"].id]
            found, _ = queries.search(s, a, "secret", before=before)
            assert len(found) == 2
        assert queries.history(s, a, room="#lobby", before=-(2**70)) == ([], False)
        assert queries.search(s, a, "secret", before=0) == ([], False)
        assert queries.get_message(s, top) is None
        assert queries.user_by_id(s, top) is None and queries.user_by_id(s, 2**64) is None
        assert queries.user_by_id(s, a).nick == "alice"


def test_search_folds_case_beyond_ascii_and_escapes_like_wildcards(store, users):
    a = users["alice"]
    apples = post(store, kind="public", body="Äpfel und Öl kaufen", room="#lobby", sender_id=a)
    sale = post(store, kind="public", body="50% off_today", room="#lobby", sender_id=a)
    post(store, kind="public", body="500 offers", room="#lobby", sender_id=a)
    with store.read() as s:
        # Three or more letters: FTS5's trigrams and PostgreSQL's ILIKE both fold Unicode case.
        assert _ids(queries.search(s, a, "äpfel")[0]) == [apples.id]
        assert _ids(queries.search(s, a, "ÖL KAUFEN")[0]) == [apples.id]
        # % and _ are literal characters, never wildcards.
        assert _ids(queries.search(s, a, "0%")[0]) == [sale.id]
        assert _ids(queries.search(s, a, "f_t")[0]) == [sale.id]
