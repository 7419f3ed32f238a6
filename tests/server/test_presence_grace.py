# The presence grace and the reasons stored for a session's end, against a real
# TLS server on loopback and a real SQLite file. Waits are for signs: a session
# row that has ended, a grace deadline that has fired, a ping answered after
# everything queued before it.

from __future__ import annotations

import time

from parley_chat.protocol import Bye, Presence
from parley_chat.server.reasons import STORED_REASONS, stored_reason
from tests.support import RawClient, barrier, online
from tests.support import db_rows as _rows

GRACE = 1.0
DEADLINE = 15.0


def presence_until_pong(client: RawClient, token: str) -> list[Presence]:
    """The presence frames queued for *client* before the answer to a new ping."""
    return [f for f in barrier(client, token) if isinstance(f, Presence)]


def wait_session_ended(server, nick: str, count: int = 1) -> list[str]:
    """Wait (with a deadline) until *count* of *nick*'s sessions have ended; their reasons."""
    deadline = time.monotonic() + DEADLINE
    sql = (
        "SELECT s.end_reason FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.nick = ? AND s.ended_at IS NOT NULL ORDER BY s.id"
    )
    while True:
        reasons = [r for (r,) in _rows(server, sql, nick)]
        if len(reasons) >= count:
            return reasons
        assert time.monotonic() < deadline, f"{nick}'s session did not end in time"
        # The end is written by the store's writer: ask again once it had a turn.
        server.store.submit(lambda s: None).result(DEADLINE)


def test_a_reconnect_within_the_grace_makes_no_presence_noise(make_server, ca_file):
    server = make_server(presence_grace=GRACE)
    alice = online(server, ca_file, "alice")
    bob = online(server, ca_file, "bob")
    alice.expect(Presence, joined="bob")
    bob.close()  # dropped, no bye
    wait_session_ended(server, "bob")
    assert presence_until_pong(alice, "p1") == []  # bob still listed: no left
    bob = online(server, ca_file, "bob")
    assert presence_until_pong(alice, "p2") == []  # back: no joined
    # The grace that was running ends with nothing to say either.
    assert server._grace.wait_fired(1, DEADLINE)
    assert presence_until_pong(alice, "p3") == []
    bob.send(Bye())
    bob.expect_closed()


def test_a_user_who_does_not_come_back_is_told_as_left_after_the_grace(make_server, ca_file):
    server = make_server(presence_grace=GRACE)
    alice = online(server, ca_file, "alice")
    bob = online(server, ca_file, "bob")
    alice.expect(Presence, joined="bob")
    bob.close()
    wait_session_ended(server, "bob")
    gone_at = time.monotonic()
    assert presence_until_pong(alice, "p1") == []
    left = alice.expect(Presence, timeout=GRACE + DEADLINE, left="bob")
    assert left.room == "#lobby"
    assert time.monotonic() - gone_at >= GRACE * 0.9  # not before the grace
    # A new login then is a real "came online" again.
    online(server, ca_file, "bob")
    assert alice.expect(Presence, joined="bob").room == "#lobby"


def test_a_restart_within_the_grace_makes_no_noise_and_the_missing_are_told_later(
    make_server, ca_file
):
    server = make_server(presence_grace=GRACE * 3)
    before = [online(server, ca_file, nick) for nick in ("alice", "bob", "carol")]
    server.stop()
    for client in before:
        client.expect_closed()
    server = make_server(presence_grace=GRACE * 3)
    alice = RawClient(server.address, ca_file)
    alice.login("alice")
    # bob and carol are listed as online: the restart did not take them away.
    listing = alice.expect(Presence, room="#lobby")
    assert listing.online == ["alice", "bob", "carol"]
    online(server, ca_file, "bob")
    assert presence_until_pong(alice, "p1") == []  # bob's return: no joined
    # carol does not come back: left once the grace after the restart is over.
    alice.expect(Presence, timeout=GRACE * 3 + DEADLINE, left="carol")
    assert presence_until_pong(alice, "p2") == []  # and nothing about bob


def test_session_end_reasons_are_short_and_human(server, ca_file):
    aborted = online(server, ca_file, "alice")
    aborted.close()  # the socket closed without a TLS close_notify
    polite = online(server, ca_file, "bob")
    polite.send(Bye(reason="lunch: EOF occurred in violation of protocol (_ssl.c:2427)"))
    polite.expect_closed()
    (alice_reason,) = wait_session_ended(server, "alice")
    (bob_reason,) = wait_session_ended(server, "bob")
    assert alice_reason in ("network error", "connection closed")
    assert bob_reason == "signed out"
    stored = [r for (r,) in _rows(server, "SELECT end_reason FROM sessions")]
    assert all(r in STORED_REASONS for r in stored)
    assert not any("ssl" in r.lower() or "EOF" in r for r in stored)


def test_every_known_ending_maps_to_a_phrase_and_raw_text_never_passes():
    assert stored_reason("network error: EOF occurred in violation of protocol (_ssl.c:2427)") == (
        "network error"
    )
    assert stored_reason("the peer hung up without a TLS close") == "network error"
    assert stored_reason("the peer closed the connection") == "connection closed"
    assert stored_reason("ping timeout") == stored_reason("login timed out") == "timed out"
    assert stored_reason("bye: rejoin") == stored_reason("bye") == "signed out"
    assert stored_reason("server shutdown") == "server shutdown"
    assert stored_reason("send queue exceeded") == "not reading"
    assert stored_reason("[Errno 104] Connection reset by peer") == "connection ended"
    assert all(len(r) <= 30 for r in STORED_REASONS)
