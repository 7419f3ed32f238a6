"""A real server on a PostgreSQL URL, over real TLS: register, send, search, replay after a
restart; a second server with the same node name is refused, one with its own name is
not; a starting node closes only its own sessions left open."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from parley_chat.protocol import Ack, Message, Search, Send
from parley_chat.server.errors import DatabaseLocked
from tests.support import RawClient, messages_in


@pytest.fixture
def db_url(pg_url: str) -> str:
    """make_server's database: PostgreSQL only here (stopped before it is dropped)."""
    return pg_url


def _rows(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_login_send_search_and_replay_on_postgresql(make_server, ca_file, pg_url):
    first = make_server(db_url=pg_url)
    alice, bob = RawClient(first.address, ca_file), RawClient(first.address, ca_file)
    alice.login("alice")
    bob.login("bob")
    alice.send(Send(id="c1", text="hello from C++ land", room="#lobby"))
    ack = alice.expect(Ack, ref="c1")
    assert bob.expect(Message, id=ack.id).text == "hello from C++ land"
    bob.send(Search(words="c++ LAND", tag="s1"))
    found = bob.recv_until(
        lambda f: f.TYPE == "batch" and f.state == "close" and f.kind == "search"  # type: ignore[attr-defined]
    )
    assert [m.id for m in messages_in(found)] == [ack.id]
    assert _rows(pg_url, "SELECT sender, kind, text FROM chat_log WHERE id = :i", i=ack.id) == [
        ("alice", "public", "hello from C++ land")
    ]
    assert _rows(pg_url, "SELECT DISTINCT node FROM sessions") == [("main",)]
    alice.close()
    bob.close()
    first.stop()

    second = make_server(db_url=pg_url)
    again = RawClient(second.address, ca_file)
    _, batch = again.login("bob", register=False, last_seen=ack.id - 1)
    assert [(m.id, m.text) for m in messages_in(batch)] == [(ack.id, "hello from C++ land")]
    again.close()


def test_a_second_server_with_the_same_node_name_is_refused(make_server, pg_url):
    make_server(db_url=pg_url)
    with pytest.raises(DatabaseLocked, match="node 'main'"):
        make_server(db_url=pg_url)
    other = make_server(db_url=pg_url, node="second")
    assert other.address


def test_a_starting_node_closes_only_its_own_open_sessions(make_server, ca_file, pg_url):
    a = make_server(db_url=pg_url, node="a")
    alice = RawClient(a.address, ca_file)
    alice.login("alice")
    b = make_server(db_url=pg_url, node="b")
    bob = RawClient(b.address, ca_file)
    bob.login("bob")
    # A session node "b" left open in a crash, and one from before nodes existed.
    now = datetime(2026, 12, 1, 12, 0)
    for node in ("b", None):
        _rows(
            pg_url,
            "INSERT INTO sessions (user_id, peer, started_at, last_active_at, node)"
            " SELECT id, 'crashed', :now, :now, :node FROM users WHERE nick = 'bob'"
            " RETURNING id",
            now=now,
            node=node,
        )
    c = make_server(db_url=pg_url, node="c")  # starts up while a and b serve
    assert c.address
    open_ = _rows(
        pg_url,
        "SELECT u.nick, s.node, s.peer FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.ended_at IS NULL ORDER BY u.nick, s.node",
    )
    # Node c closed the node-less one only; a's and b's own sessions stay open.
    assert [(n, node) for n, node, peer in open_ if peer != "crashed"] == [
        ("alice", "a"),
        ("bob", "b"),
    ]
    assert [(n, node) for n, node, peer in open_ if peer == "crashed"] == [("bob", "b")]
    ended = _rows(pg_url, "SELECT node, end_reason FROM sessions WHERE ended_at IS NOT NULL")
    assert ended == [(None, "server restart")]
    alice.close()
    bob.close()
