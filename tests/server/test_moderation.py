# Tests of moderation (issue 11, server/moderation.py) over real TLS on a real
# SQLite file: roles, topics, private rooms, kick, ban, mute, delete and edit,
# and the operators' server-wide actions. Permissions are the point: every
# action is tried by someone without the role (refused, with a clear error, and
# nothing changed), a moderator of one room has no power in another, and a
# moderator cannot act on an operator. Every wait is for a sign: the answer
# itself, or a ping barrier.

from __future__ import annotations

import io
import sqlite3
import time
import uuid
from typing import Any

import pytest

from parley_chat.protocol import (
    Ack,
    Batch,
    Bye,
    Conversations,
    Error,
    ErrorCode,
    History,
    Join,
    ListConversations,
    ListRooms,
    Message,
    Presence,
    RoomList,
    Search,
    Send,
    Who,
)
from parley_chat.protocol.moderation import (
    Deleted,
    Edited,
    Moderate,
    Moderated,
    Notice,
    RoomInfo,
)
from parley_chat.server import admin, logs
from parley_chat.server.store import moderation as mstore
from tests.support import RawClient, barrier, online
from tests.support import db_rows as rows


def join(client: RawClient, room: str) -> RoomInfo:
    client.send(Join(room=room))
    return client.expect(RoomInfo, room=room)


def say(client: RawClient, text: str, room: str = "#lobby", to: str | None = None) -> Ack:
    cid = uuid.uuid4().hex
    client.send(Send(id=cid, text=text, room=None if to else room, to=to))
    return client.expect(Ack, ref=cid)


def moderate(client: RawClient, action: str, **fields: Any) -> Moderated | Error:
    """Send one request; its answer (moderated or error, matched by ref)."""
    ref = uuid.uuid4().hex
    client.send(Moderate(action=action, ref=ref, **fields))
    frames = client.recv_until(
        lambda f: isinstance(f, Moderated | Error) and getattr(f, "ref", None) == ref
    )
    return frames[-1]


def ok(client: RawClient, action: str, **fields: Any) -> Moderated:
    answer = moderate(client, action, **fields)
    assert isinstance(answer, Moderated), answer
    return answer


def refused(client: RawClient, action: str, code: str, **fields: Any) -> Error:
    answer = moderate(client, action, **fields)
    assert isinstance(answer, Error), answer
    assert answer.code == code, answer
    assert answer.message  # a clear error, in words
    return answer


def history(client: RawClient, room: str) -> list[Message] | Error:
    client.send(History(room=room, tag="h"))
    frames = client.recv_until(
        lambda f: (isinstance(f, Batch) and f.state == "close" and f.tag == "h")
        or isinstance(f, Error)
    )
    if isinstance(frames[-1], Error):
        return frames[-1]
    return [f for f in frames if isinstance(f, Message)]


def search(client: RawClient, words: str) -> list[Message]:
    client.send(Search(words=words, tag="s"))
    frames = client.recv_until(lambda f: isinstance(f, Batch) and f.state == "close")
    return [f for f in frames if isinstance(f, Message)]


def who(client: RawClient, room: str) -> RoomInfo | Error:
    client.send(Who(room=room, tag="w"))
    frames = client.recv_until(
        lambda f: isinstance(f, Error) or (isinstance(f, RoomInfo) and f.tag == "w")
    )
    return frames[-1]


def make_operator(db_url: str, nick: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        ["--db", db_url, "--scrypt-n", "16", "op", nick], environ={}, stdout=out, stderr=err
    )
    assert code == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture
def trio(server, ca_file):
    """alice owns #a (she created it); bob and carol are members."""
    alice, bob, carol = (online(server, ca_file, n) for n in ("alice", "bob", "carol"))
    info = join(alice, "#a")
    assert info.owner == "alice"
    join(bob, "#a")
    join(carol, "#a")
    return alice, bob, carol


# --- roles and topics -------------------------------------------------------------


def test_the_creator_owns_the_room_and_sets_its_topic_a_member_cannot(server, trio):
    alice, bob, carol = trio
    refused(bob, "topic", ErrorCode.NOT_PERMITTED, room="#a", text="bob's topic")
    assert rows(server, "SELECT topic FROM rooms WHERE name = '#a'") == [(None,)]
    ok(alice, "topic", room="#a", text="Weekly sync")
    info = bob.expect(RoomInfo, room="#a")
    assert info.topic == "Weekly sync" and info.owner == "alice"
    note = carol.recv_until(lambda f: isinstance(f, Message) and "topic" in f.text)[-1]
    assert "Weekly sync" in note.text and "alice" in note.text
    assert who(carol, "#a").topic == "Weekly sync"  # type: ignore[union-attr]


def test_a_moderator_of_one_room_has_no_power_in_another(server, ca_file, trio):
    alice, bob, carol = trio
    join(alice, "#b")
    join(carol, "#b")
    refused(bob, "op", ErrorCode.NOT_PERMITTED, room="#a", nick="carol")  # only the owner grants
    ok(alice, "op", room="#a", nick="bob")
    assert who(carol, "#a").moderators == ["bob"]  # type: ignore[union-attr]
    join(bob, "#b")
    # In #a bob moderates; in #b he is nobody.
    ok(bob, "topic", room="#a", text="set by bob")
    refused(bob, "topic", ErrorCode.NOT_PERMITTED, room="#b", text="nope")
    refused(bob, "kick", ErrorCode.NOT_PERMITTED, room="#b", nick="carol")
    refused(bob, "mute", ErrorCode.NOT_PERMITTED, room="#b", nick="carol")
    assert rows(server, "SELECT topic FROM rooms WHERE name = '#b'") == [(None,)]
    # A moderator cannot grant the role: only the owner (or an operator).
    refused(bob, "op", ErrorCode.NOT_PERMITTED, room="#a", nick="carol")
    ok(alice, "deop", room="#a", nick="bob")
    refused(bob, "topic", ErrorCode.NOT_PERMITTED, room="#a", text="not any more")


def test_roles_persist_and_come_at_login(server, ca_file, trio):
    alice, _, _ = trio
    ok(alice, "op", room="#a", nick="bob")
    again = RawClient(server.address, ca_file)
    again.login("carol")
    info = again.expect(RoomInfo, room="#a")
    assert info.owner == "alice" and info.moderators == ["bob"]
    # The login's batched read says what the one-room read says.
    with server.store.read() as s:
        many = mstore.rooms_settings(s, ["#a", "#lobby", "#none"])
        assert many == [mstore.room_settings(s, "#a"), mstore.room_settings(s, "#lobby")]


# --- kick ---------------------------------------------------------------------------


def test_kick_puts_every_connection_of_the_user_out_and_says_why(server, ca_file, trio):
    alice, bob, carol = trio
    carol2 = online(server, ca_file, "carol")
    refused(bob, "kick", ErrorCode.NOT_PERMITTED, room="#a", nick="carol")
    assert rows(
        server,
        "SELECT count(*) FROM room_members m JOIN rooms r ON r.id = m.room_id WHERE r.name = '#a'",
    ) == [(3,)]
    ok(alice, "kick", room="#a", nick="carol", reason="spam")
    for conn in (carol, carol2):
        notice = conn.expect(Notice, kind="kick")
        assert "spam" in notice.text and notice.room == "#a"
        conn.expect(Presence, room="#a", left="carol")
    # Neither connection can post there any more.
    cid = uuid.uuid4().hex
    carol2.send(Send(id=cid, text="still here?", room="#a"))
    assert carol2.expect(Error, ref=cid).code == ErrorCode.NOT_IN_ROOM
    # A kick is not a ban: carol may come back.
    assert join(carol, "#a").room == "#a"


def test_a_moderator_cannot_kick_ban_or_mute_an_operator_or_the_owner(
    server, ca_file, db_url, trio
):
    alice, bob, carol = trio
    make_operator(db_url, "carol")
    ok(alice, "op", room="#a", nick="bob")
    for action in ("kick", "ban", "mute"):
        error = refused(bob, action, ErrorCode.NOT_PERMITTED, room="#a", nick="carol")
        assert "operator" in error.message
        refused(bob, action, ErrorCode.NOT_PERMITTED, room="#a", nick="alice")
    assert rows(server, "SELECT count(*) FROM room_sanctions") == [(0,)]
    say(carol, "still a member", room="#a")


# --- ban ------------------------------------------------------------------------------


def test_a_banned_user_cannot_rejoin_nor_read_the_room_until_unbanned(server, ca_file, trio):
    alice, bob, carol = trio
    say(alice, "before the ban", room="#a")
    carol2 = online(server, ca_file, "carol")
    refused(bob, "ban", ErrorCode.NOT_PERMITTED, room="#a", nick="carol")
    ok(alice, "ban", room="#a", nick="carol", minutes=60, reason="flooding")
    for conn in (carol, carol2):
        conn.expect(Notice, kind="ban")
        conn.expect(Presence, room="#a", left="carol")
    say(alice, "after the ban secretword", room="#a")
    for conn in (carol, carol2):
        conn.send(Join(room="#a"))
        error = conn.expect(Error)
        assert error.code == ErrorCode.BANNED and "flooding" in error.message
        assert isinstance(history(conn, "#a"), Error)
        assert search(conn, "secretword") == []
        assert [f for f in barrier(conn) if isinstance(f, Message) and f.room == "#a"] == []
    # A fresh login (replay of everything) has nothing of #a either.
    later = RawClient(server.address, ca_file)
    _, replay = later.login("carol", last_seen=0)
    assert not [m for m in replay if isinstance(m, Message) and m.room == "#a"]
    refused(bob, "unban", ErrorCode.NOT_PERMITTED, room="#a", nick="carol")
    ok(alice, "unban", room="#a", nick="carol")
    assert join(carol, "#a").room == "#a"


def test_a_timed_ban_ends_by_itself(server, ca_file, trio):
    alice, _, carol = trio
    ok(alice, "ban", room="#a", nick="carol", minutes=5)
    carol.send(Join(room="#a"))
    assert carol.expect(Error).code == ErrorCode.BANNED
    # Move the ban's end into the past, as time would.
    con = sqlite3.connect(str(server.store.database_path))
    con.execute("UPDATE room_sanctions SET until = '2000-01-01 00:00:00.000000'")
    con.commit()
    con.close()
    assert join(carol, "#a").room == "#a"


# --- mute -----------------------------------------------------------------------------


def test_a_muted_user_cannot_post_and_nothing_is_stored(server, ca_file, trio):
    alice, bob, carol = trio
    refused(carol, "mute", ErrorCode.NOT_PERMITTED, room="#a", nick="bob")
    ok(alice, "mute", room="#a", nick="bob", reason="calm down")
    bob.expect(Notice, kind="mute")
    cid = uuid.uuid4().hex
    bob.send(Send(id=cid, text="can you hear me", room="#a"))
    assert bob.expect(Error, ref=cid).code == ErrorCode.MUTED
    assert rows(server, "SELECT count(*) FROM messages WHERE body = 'can you hear me'") == [(0,)]
    say(bob, "the lobby is fine")  # a mute is per room
    ok(alice, "unmute", room="#a", nick="bob")
    say(bob, "back", room="#a")


# --- delete and edit --------------------------------------------------------------------


def test_a_deleted_message_is_gone_from_every_path_but_the_operators_sql(server, ca_file, trio):
    alice, bob, carol = trio
    say(bob, "first words", room="#a")
    ack = say(bob, "regrettable zebra", room="#a")
    carol2 = online(server, ca_file, "carol")
    refused(carol, "delete", ErrorCode.NOT_PERMITTED, id=ack.id)  # someone else's
    ok(alice, "delete", id=ack.id, reason="rude")  # the owner moderates
    for conn in (bob, carol, carol2):
        assert conn.expect(Deleted, id=ack.id).room == "#a"
    for conn in (bob, carol):
        page = history(conn, "#a")
        assert isinstance(page, list) and ack.id not in [m.id for m in page]
        assert search(conn, "zebra") == []
        conn.send(ListConversations(tag="c"))
        listing = conn.expect(Conversations, tag="c")
        (room,) = [i for i in listing.items if i["name"] == "#a"]
        assert room["last"]["text"] == "first words"
    fresh = RawClient(server.address, ca_file)
    _, replay = fresh.login("carol", last_seen=0)
    assert ack.id not in [m.id for m in replay if isinstance(m, Message)]
    marked = rows(
        server, "SELECT text, deleted_at IS NOT NULL, deleted_by FROM chat_log WHERE id = ?", ack.id
    )
    assert marked == [("regrettable zebra", 1, "alice")]
    refused(alice, "delete", ErrorCode.NO_SUCH_MESSAGE, id=ack.id)  # once is enough


def test_anyone_deletes_their_own_messages_private_ones_for_both(server, trio):
    alice, bob, carol = trio
    ack = say(bob, "private oops", to="carol")
    carol.expect(Message, id=ack.id)
    refused(carol, "delete", ErrorCode.NOT_PERMITTED, id=ack.id)  # the recipient cannot
    refused(alice, "delete", ErrorCode.NO_SUCH_MESSAGE, id=ack.id)  # nor a stranger
    ok(bob, "delete", id=ack.id)
    carol.expect(Deleted, id=ack.id)
    assert search(carol, "oops") == [] and search(bob, "oops") == []


def test_an_edit_is_a_new_version_and_the_log_keeps_every_one(server, trio):
    alice, bob, carol = trio
    ack = say(bob, "teh typo", room="#a")
    refused(alice, "edit", ErrorCode.NOT_PERMITTED, id=ack.id, text="not yours")
    ok(bob, "edit", id=ack.id, text="the typo")
    ok(bob, "edit", id=ack.id, text="no typo")
    edited = carol.expect(Edited, id=ack.id, text="the typo")
    assert edited.room == "#a"
    carol.expect(Edited, id=ack.id, text="no typo")
    page = history(carol, "#a")
    assert isinstance(page, list)
    (shown,) = [m for m in page if m.id == ack.id]
    assert shown.text == "no typo" and shown.edited is not None
    assert [m.id for m in search(carol, "typo")] == [ack.id]
    assert search(carol, "teh") == []
    assert rows(
        server,
        "SELECT version, body FROM message_versions WHERE message_id = ? ORDER BY version",
        ack.id,
    ) == [(1, "teh typo"), (2, "the typo")]


# --- private rooms ----------------------------------------------------------------------


def test_a_private_room_is_seen_and_joined_by_its_members_and_invitees_only(server, ca_file, trio):
    alice, bob, carol = trio
    join(alice, "#secret")
    refused(bob, "private", ErrorCode.NO_SUCH_ROOM, room="#nothere")
    ok(alice, "private", room="#secret")
    bob.send(ListRooms(tag="r"))
    listed = bob.expect(RoomList, tag="r")
    assert "#secret" not in [r["name"] for r in listed.rooms]
    assert isinstance(who(bob, "#secret"), Error)
    bob.send(Join(room="#secret"))
    assert bob.expect(Error).code == ErrorCode.INVITE_ONLY
    refused(bob, "topic", ErrorCode.NO_SUCH_ROOM, room="#secret", text="x")
    refused(bob, "invite", ErrorCode.NO_SUCH_ROOM, room="#secret", nick="carol")
    ok(alice, "invite", room="#secret", nick="bob")
    assert bob.expect(Notice, kind="invite").room == "#secret"
    info = join(bob, "#secret")
    assert info.private
    carol.send(ListRooms(tag="r2"))
    assert "#secret" not in [r["name"] for r in carol.expect(RoomList, tag="r2").rooms]


# --- operators --------------------------------------------------------------------------


def test_operators_disconnect_lock_and_announce_others_cannot(server, ca_file, db_url, trio):
    alice, bob, carol = trio
    for action, fields in (
        ("disconnect", {"nick": "bob"}),
        ("lock", {"nick": "bob"}),
        ("announce", {"text": "hello all"}),
    ):
        refused(alice, action, ErrorCode.NOT_PERMITTED, **fields)
    assert "operator" in make_operator(db_url, "alice")
    assert who(bob, "#a").operators == ["alice"]  # type: ignore[union-attr]
    ok(alice, "announce", text="maintenance at noon")
    for conn in (bob, carol):
        notice = conn.expect(Notice, kind="announce")
        assert notice.text == "maintenance at noon" and notice.from_ == "alice"
    bob2 = online(server, ca_file, "bob")
    ok(alice, "disconnect", nick="bob", reason="go home")
    for conn in (bob, bob2):
        frames = conn.expect_closed()
        assert any(isinstance(f, Error) and f.code == ErrorCode.DISCONNECTED for f in frames)
    ok(alice, "lock", nick="carol", reason="abuse")
    frames = carol.expect_closed()
    assert any(isinstance(f, Error) and f.code == ErrorCode.DISCONNECTED for f in frames)
    locked = RawClient(server.address, ca_file)
    with pytest.raises(AssertionError, match="account-locked"):
        locked.login("carol")
    ok(alice, "unlock", nick="carol")
    online(server, ca_file, "carol")
    # An operator cannot be put out by another operator, nor act on themselves.
    refused(alice, "lock", ErrorCode.NOT_PERMITTED, nick="alice")


def test_every_action_is_in_the_audit_log_and_the_logs_tool_shows_it(server, db_url, trio):
    alice, bob, _ = trio
    ok(alice, "topic", room="#a", text="t")
    ok(alice, "kick", room="#a", nick="bob", reason="testing")
    refused(
        bob, "kick", ErrorCode.NOT_PERMITTED, room="#a", nick="alice"
    )  # refusals change nothing
    audit = rows(
        server,
        "SELECT u.nick, a.action, t.nick, a.reason FROM moderation_actions a "
        "JOIN users u ON u.id = a.actor_id LEFT JOIN users t ON t.id = a.target_id ORDER BY a.id",
    )
    assert audit == [("alice", "topic", None, None), ("alice", "kick", "bob", "testing")]
    out, err = io.StringIO(), io.StringIO()
    assert (
        logs.main(["--db", db_url, "audit", "--room", "a"], environ={}, stdout=out, stderr=err) == 0
    )
    assert "kick" in out.getvalue() and "testing" in out.getvalue()
    # A negative --limit meant no limit at all to SQLite: a usage error now.
    with pytest.raises(SystemExit):
        logs.build_parser().parse_args(["audit", "--limit", "-5"])


def test_bad_requests_get_clear_errors_not_internal_ones(server, trio):
    alice, _, _ = trio
    refused(alice, "kick", ErrorCode.NO_SUCH_NICK, room="#a", nick="nobody")
    refused(alice, "delete", ErrorCode.NO_SUCH_MESSAGE, id=999_999)
    refused(alice, "kick", ErrorCode.NOT_PERMITTED, room="#a", nick="alice")
    alice.send(b'{"type":"moderate","action":"explode"}\n')
    assert alice.expect(Error).code == ErrorCode.BAD_FRAME
    alice.send(b'{"type":"moderate","action":"kick","room":"#a"}\n')
    assert "nick" in alice.expect(Error).message


def test_a_client_that_was_away_learns_of_deletions_and_edits_when_it_comes_back(
    server, ca_file, trio
):
    alice, bob, carol = trio
    gone = say(bob, "soon gone", room="#a")
    changed = say(bob, "soon changed", room="#a")
    carol.expect(Message, id=changed.id)
    carol.send(Bye())
    carol.expect_closed()
    deadline = time.monotonic() + 10
    while not rows(
        server,
        "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.nick = 'carol' AND s.ended_at IS NOT NULL",
    ):  # the server records the end of carol's session: a sign, with a deadline
        assert time.monotonic() < deadline, "carol's session end was never recorded"
        barrier(alice)
    ok(alice, "delete", id=gone.id)
    ok(bob, "edit", id=changed.id, text="changed indeed")
    back = RawClient(server.address, ca_file)
    back.login("carol", last_seen=changed.id)
    assert back.expect(Deleted, id=gone.id).room == "#a"
    assert back.expect(Edited, id=changed.id).text == "changed indeed"


def run_admin(db_url: str, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        ["--db", db_url, "--scrypt-n", "16", *argv], environ={}, stdout=out, stderr=err
    )
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_the_admin_tool_locks_and_unlocks_an_account_while_the_server_runs(server, ca_file, db_url):
    carol = online(server, ca_file, "carol")
    assert "locked carol" in run_admin(db_url, "lock", "carol", "--reason", "abuse")
    frames = carol.expect_closed(timeout=30)  # the server's revocation check ends it
    assert any(isinstance(f, Error) for f in frames)
    with pytest.raises(AssertionError, match=r"account-locked.*abuse"):
        RawClient(server.address, ca_file).login("carol")
    listed = run_admin(db_url, "operators")
    assert listed.startswith("carol: locked ") and listed.endswith(" (abuse)\n"), listed
    run_admin(db_url, "unlock", "carol")
    online(server, ca_file, "carol")
    assert rows(server, "SELECT actor_id, action, detail FROM moderation_actions ORDER BY id") == [
        (None, "lock", "parley-admin"),
        (None, "unlock", "parley-admin"),
    ]


def snapshot(server) -> list:
    """Everything moderation can change, to show that a refusal changed nothing."""
    return (
        [
            rows(server, f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in (
                "rooms",
                "room_members",
                "room_moderators",
                "room_invites",
                "room_sanctions",
                "moderation_actions",
                "message_versions",
            )
        ]
        + [rows(server, "SELECT id, body, edited_at, deleted_at FROM messages ORDER BY id")]
        + [rows(server, "SELECT id, operator, locked_at FROM users ORDER BY id")]
    )


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        ("topic", {"room": "#a", "text": "mine now"}),
        ("private", {"room": "#a"}),
        ("public", {"room": "#a"}),
        ("invite", {"room": "#a", "nick": "carol"}),
        ("kick", {"room": "#a", "nick": "carol"}),
        ("ban", {"room": "#a", "nick": "carol", "minutes": 5}),
        ("unban", {"room": "#a", "nick": "carol"}),
        ("mute", {"room": "#a", "nick": "carol"}),
        ("unmute", {"room": "#a", "nick": "carol"}),
        ("op", {"room": "#a", "nick": "carol"}),
        ("deop", {"room": "#a", "nick": "carol"}),
        ("disconnect", {"nick": "carol"}),
        ("lock", {"nick": "carol"}),
        ("unlock", {"nick": "carol"}),
        ("announce", {"text": "hear me"}),
    ],
)
def test_a_member_without_the_role_is_refused_and_nothing_changes(server, trio, action, fields):
    _, bob, carol = trio
    before = snapshot(server)
    error = refused(bob, action, ErrorCode.NOT_PERMITTED, **fields)
    assert "only" in error.message and "nothing was changed" in error.message
    assert snapshot(server) == before
    # And nobody was told of anything: carol's stream holds no moderation frame.
    assert not [f for f in barrier(carol) if isinstance(f, Notice | RoomInfo | Deleted)]


def test_a_moderator_cannot_delete_in_a_room_they_do_not_moderate(server, trio):
    alice, bob, carol = trio
    join(alice, "#b")
    join(bob, "#b")
    join(carol, "#b")
    ok(alice, "op", room="#a", nick="bob")
    in_a = say(carol, "in a", room="#a")
    in_b = say(carol, "in b", room="#b")
    before = snapshot(server)
    refused(bob, "delete", ErrorCode.NOT_PERMITTED, id=in_b.id)
    assert snapshot(server) == before
    ok(bob, "delete", id=in_a.id)
    # Nor can he delete the owner's words in his own room.
    owners = say(alice, "the owner speaks", room="#a")
    refused(bob, "delete", ErrorCode.NOT_PERMITTED, id=owners.id)
