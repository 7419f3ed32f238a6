# Rejoin, replay, history paging, rooms and search over the wire: real TLS,
# a real SQLite file. Across any disconnect nothing is missed and nothing
# arrives twice; nobody reads what is not theirs.

from __future__ import annotations

import threading
import time
from itertools import pairwise

from parley_chat.protocol import (
    Ack,
    Batch,
    Error,
    ErrorCode,
    History,
    Join,
    ListRooms,
    Message,
    Presence,
    RoomList,
    Search,
    Send,
    Who,
    encode,
)
from tests.support import RawClient, barrier, messages_in, online
from tests.support import read_batch as _batch_frames


def test_rejoin_receives_exactly_what_was_missed_in_order(server, ca_file):
    bob = online(server, ca_file, "bob")
    alice = online(server, ca_file, "alice")
    bob.send(Send(id="b0", text="before leaving", room="#lobby"))
    last_seen = bob.expect(Ack).id
    bob.close()
    posted = []
    for i in range(30):
        if i % 3 == 0:
            alice.send(Send(id=f"p{i}", text=f"private {i}", to="bob"))
        else:
            alice.send(Send(id=f"m{i}", text=f"public {i}", room="#lobby"))
        posted.append(alice.expect(Ack).id)
    again = RawClient(server.address, ca_file)
    _, frames = again.login("bob", register=False, last_seen=last_seen)
    opening = frames[0]
    assert isinstance(opening, Batch) and opening.kind == "replay" and not opening.gap
    got = messages_in(frames)
    assert [m.id for m in got] == posted  # exactly those 30, in order, none twice
    assert [m.kind for m in got].count("private") == 10
    # Live messages after the replay are not duplicates of it.
    alice.send(Send(id="after", text="live again", room="#lobby"))
    live_id = alice.expect(Ack).id
    later = again.recv_until(lambda f: isinstance(f, Message) and f.id == live_id)
    live = [m for m in messages_in(later) if m.kind != "system"]  # "bob joined" is new
    assert [m.id for m in live] == [live_id]


def test_rejoin_with_the_resume_token(server, ca_file):
    first = RawClient(server.address, ca_file)
    welcome, _ = first.login("bob")
    first.close()
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="x", text="while away", room="#lobby"))
    ack = alice.expect(Ack)
    again = RawClient(server.address, ca_file)
    welcome2, frames = again.login("bob", token=welcome.token, last_seen=ack.id - 1)
    assert welcome2.nick == "bob" and welcome2.token != welcome.token
    assert [m.id for m in messages_in(frames)] == [ack.id]


def test_a_send_killed_before_its_ack_is_stored_once_after_reconnect(server, ca_file):
    alice = online(server, ca_file, "alice")
    alice.send(Send(id="k1", text="did it land?", room="#lobby"))
    alice.close()  # the connection dies before the ack is read
    again = RawClient(server.address, ca_file)
    _, frames = again.login("alice", register=False)
    again.send(Send(id="k1", text="did it land?", room="#lobby"))  # re-sent with its id
    ack = again.expect(Ack)
    replayed = [m for m in messages_in(frames) if m.ref == "k1"]
    # Either the first send was stored (and comes back with ref, and the re-send
    # is a duplicate) or it was not (and the re-send stores it): once, either way.
    assert ack.duplicate == bool(replayed)
    import sqlite3

    con = sqlite3.connect(server.store.database_path)
    try:
        assert con.execute("SELECT count(*) FROM messages WHERE client_msg_id='k1'").fetchone() == (
            1,
        )
    finally:
        con.close()


def test_replay_past_the_cap_reports_the_gap_and_history_fills_it(make_server, ca_file):
    server = make_server(replay_cap=10)
    bob = online(server, ca_file, "bob")
    bob.send(Send(id="b", text="mark", room="#lobby"))
    last_seen = bob.expect(Ack).id
    bob.close()
    alice = online(server, ca_file, "alice")
    posted = []
    for i in range(25):
        alice.send(Send(id=f"m{i}", text=f"n{i}", room="#lobby"))
        posted.append(alice.expect(Ack).id)
    again = RawClient(server.address, ca_file)
    _, frames = again.login("bob", register=False, last_seen=last_seen)
    assert frames[0].gap is True
    replayed = [m.id for m in messages_in(frames)]
    assert replayed == posted[-10:]
    # Page back from the oldest replayed message until reaching what bob had seen.
    before, filled = replayed[0], []
    while True:
        again.send(History(room="#lobby", before=before, limit=7, tag=f"h{before}"))
        _, page, close = _batch_frames(again, "history", f"h{before}")
        ids = [m.id for m in page if m.kind != "system"]
        filled = ids + filled
        if not close.more or (page and page[0].id <= last_seen):
            break
        before = page[0].id
    missed = [i for i in filled if i > last_seen]
    assert missed == posted[:-10]  # the gap, exactly, no overlap with the replay


def test_fresh_login_shows_recent_history_marked_as_such(server, ca_file):
    alice = online(server, ca_file, "alice")
    for i in range(3):
        alice.send(Send(id=f"m{i}", text=f"hello {i}", room="#lobby"))
        alice.expect(Ack)
    newcomer = RawClient(server.address, ca_file)
    _, frames = newcomer.login("zed")
    assert frames[0].target == "latest"
    assert [m.text for m in messages_in(frames)] == ["hello 0", "hello 1", "hello 2"]


def test_history_never_shows_other_peoples_private_messages_or_rooms(server, ca_file):
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    carol = online(server, ca_file, "carol")
    alice.send(Send(id="p", text="for bob only", to="bob"))
    pm = alice.expect(Ack).id
    alice.send(Join(room="#secret"))
    alice.expect(Presence, room="#secret")
    alice.send(Send(id="s", text="secret room talk", room="#secret"))
    alice.expect(Ack)
    barrier(carol)
    carol.send(History(with_="bob", tag="t1"))
    _, page, _ = _batch_frames(carol, "history", "t1")
    assert page == []
    carol.send(History(with_="alice", before=pm + 1, tag="t2"))
    _, page, _ = _batch_frames(carol, "history", "t2")
    assert page == []
    carol.send(History(room="#secret", tag="t3"))
    assert carol.expect(Error).code == ErrorCode.NOT_IN_ROOM
    carol.send(Search(words="for bob", tag="t4"))
    _, found, _ = _batch_frames(carol, "search", "t4")
    assert found == []
    carol.send(Search(words="secret room", tag="t5"))
    _, found, _ = _batch_frames(carol, "search", "t5")
    assert found == []
    bob.send(History(with_="alice", tag="t6"))
    _, page, _ = _batch_frames(bob, "history", "t6")
    assert [m.id for m in page] == [pm]


def test_search_quotes_what_the_user_typed(server, ca_file):
    alice = online(server, ca_file, "alice")
    texts = ["see example.com today", "I write C++ daily", 'she said "hi"', "ok go"]
    for i, t in enumerate(texts):
        alice.send(Send(id=f"s{i}", text=t, room="#lobby"))
        alice.expect(Ack)
    for words, expected in [
        ("example.com", texts[0]),
        ("C++", texts[1]),
        ('"', texts[2]),
        ("go", texts[3]),
        ("EXAMPLE", texts[0]),
    ]:
        alice.send(Search(words=words, tag=words))
        _, found, _ = _batch_frames(alice, "search", words)
        assert [m.text for m in found] == [expected], words


def test_rooms_persist_and_list_member_counts(server, ca_file):
    alice = online(server, ca_file, "alice")
    alice.send(Join(room="#Dev"))
    alice.expect(Presence, room="#Dev")
    alice.close()
    again = RawClient(server.address, ca_file)
    welcome, _ = again.login("alice", register=False)
    assert welcome.rooms == ["#Dev", "#lobby"]
    bob = online(server, ca_file, "bob")
    bob.send(Join(room="#dev"))  # case-insensitive: the same room
    assert bob.expect(Presence, room="#Dev").joined == "bob"
    bob.send(ListRooms(tag="r"))
    listing = bob.expect(RoomList, tag="r")
    assert {r["name"]: r["members"] for r in listing.rooms} == {"#Dev": 2, "#lobby": 2}
    bob.send(Who(room="#dev", tag="w"))
    assert bob.expect(Presence, tag="w").online == ["alice", "bob"]
    bob.send(b'{"type":"join","room":"#no spaces"}\n')
    assert bob.expect(Error).code in (ErrorCode.BAD_ROOM, ErrorCode.BAD_FRAME)


def test_a_replay_is_written_as_one_coalesced_write(make_server, ca_file, monkeypatch):
    from parley_chat.server.connection import Connection

    server = make_server(replay_cap=50)
    alice = online(server, ca_file, "alice")
    for i in range(60):
        alice.send(Send(id=f"m{i}", text=f"n{i}", room="#lobby"))
        alice.expect(Ack)
    writes: list[bytes] = []
    original = Connection.send_replay

    def recording(self, parts, up_to):
        writes.extend(parts)
        return original(self, parts, up_to)

    monkeypatch.setattr(Connection, "send_replay", recording)
    bob = RawClient(server.address, ca_file)
    _, frames = bob.login("bob", last_seen=1)
    assert len(messages_in(frames)) == 50
    assert len(writes) == 1 and writes[0].count(b'"type":"message"') == 50


def test_a_member_of_two_busy_rooms_and_a_private_chat_gets_every_id_in_order(server, ca_file):
    # A client's last_seen is the greatest id it was given, and a rejoin asks for
    # what came after it: a newer id that overtook an older one on the way would
    # make a dropped client skip the older one for good. So one connection gets
    # its rooms' and private messages in id (commit) order, whichever path each
    # took (groups the loop commits itself, the writer thread's, direct copies).
    carol = online(server, ca_file, "carol")
    carol.send(Join(room="#dev"))
    carol.expect(Presence, room="#dev")
    alice = online(server, ca_file, "alice")  # #lobby
    bob = online(server, ca_file, "bob")
    bob.send(Join(room="#dev"))
    bob.expect(Presence, room="#dev")
    dave = online(server, ca_file, "dave")  # writes to carol privately
    per_sender = 150
    plans = [
        (alice, [Send(id=f"a{i}", text=f"lobby {i}", room="#lobby") for i in range(per_sender)]),
        (bob, [Send(id=f"b{i}", text=f"dev {i}", room="#dev") for i in range(per_sender)]),
        (dave, [Send(id=f"d{i}", text=f"private {i}", to="carol") for i in range(per_sender)]),
    ]
    acked: list[int] = []
    a_ids: set[int] = set()  # alice's (#lobby)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def pour(client: RawClient, frames: list[Send]) -> None:
        # A few at a time, each few on its acks: the three senders' groups interleave.
        try:
            for start in range(0, len(frames), 5):
                chunk = frames[start : start + 5]
                client.send(b"".join(encode(f) for f in chunk))
                ids = [client.expect(Ack, timeout=30).id for _ in chunk]
                if client is alice:
                    a_ids.update(ids)
                with lock:
                    acked.extend(ids)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=pour, args=plan) for plan in plans]
    for t in threads:
        t.start()
    got: list[int] = []
    deadline = time.monotonic() + 30
    while len(got) < 3 * per_sender:
        frame = carol.recv(max(0.0, deadline - time.monotonic()))
        if isinstance(frame, Message) and frame.kind != "system":
            got.append(frame.id)
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert got == sorted(got) and len(set(got)) == len(got)  # ascending, none twice
    assert set(got) == set(acked)
    # The senders did interleave (else the order above would prove little).
    assert sum((x in a_ids) != (y in a_ids) for x, y in pairwise(got)) >= 10
