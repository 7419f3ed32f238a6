# Battery #17, #19, #20 and pending items h and i: what is acked is stored,
# exactly once, and a database that refuses writes costs acks, never data or
# the server. Case #15 (kill -9) and #18 (replay of exactly the missed 30)
# are covered by existing tests: see README.md.

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from parley_chat.protocol import (
    Ack,
    ErrorCode,
    Frame,
    History,
    Message,
    Search,
    Send,
    encode,
)
from parley_chat.server.chat_server import ChatServer
from tests.battery.helpers import (
    Client,
    barrier,
    chattr,
    chattr_works,
    wait_for,
)
from tests.support import messages_in, request_batch


def _page(client: Client, frame: History | Search) -> list[Message]:
    """The messages of one history or search batch (the request must carry a tag)."""
    return request_batch(client, frame)[0]


def _texts(client: Client, room: str, tag: str) -> list[str]:
    """The texts of the public messages of *room* (one page of 200)."""
    return [
        m.text for m in _page(client, History(room=room, limit=200, tag=tag)) if m.kind == "public"
    ]


def _varied_text(seed: int, size: int = 3000) -> str:
    # Varied text: its trigram index entries need new pages (a run of one letter would not).
    return "".join(random.Random(seed).choices(string.ascii_lowercase + string.digits, k=size))


def _until_answer(client: Client, ref: str, timeout: float = 10) -> list[Frame]:
    """Frames up to the ack or error that answers the send *ref*."""
    return client.recv_until(
        lambda f: f.TYPE in ("ack", "error") and getattr(f, "ref", None) == ref, timeout
    )


# --- a database that refuses writes ---------------------------------------------------------


def cap_database(server: ChatServer) -> None:
    """Disk full: cap the database at its current size (on the writer's own connection)."""

    def cap(s) -> None:
        conn = s.connection()
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    server.store.submit(cap).result(10)


def uncap_database(server: ChatServer) -> None:
    """Disk space again."""
    server.store.submit(
        lambda s: s.connection().exec_driver_sql("PRAGMA max_page_count = 1073741823")
    ).result(10)


@dataclass
class Immutable:
    """chattr +i on files while a case runs; always undone at teardown."""

    locked: list[Path] = field(default_factory=list)

    def lock(self, server: ChatServer) -> None:
        """Make the database file and its WAL immutable (root ignores chmod, not this)."""
        db = server.store.database_path
        assert db is not None
        files = [db, Path(f"{db}-wal")]
        assert all(p.exists() for p in files), "expected a WAL-mode database"
        chattr(files, "+i")
        self.locked.extend(files)

    def unlock(self) -> None:
        if self.locked:
            chattr(self.locked, "-i")
            self.locked.clear()


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Immutable]:
    """Immutable database files for one case (skipped where chattr +i cannot work)."""
    if not chattr_works(tmp_path):
        pytest.skip("chattr +i does not work on this filesystem or without root")
    files = Immutable()
    yield files
    files.unlock()


# --- the cases ------------------------------------------------------------------------


def test_sends_caught_by_a_dropped_connection_are_stored_once_after_resending(server, battery):
    """Battery #17: 20 sends in flight when the connection drops; re-sent with their ids after login: each stored exactly once."""
    alice = battery.online(server, "alice")
    barrier(alice, "ready")
    texts = {f"r{i}": f"resend {i}" for i in range(20)}
    batch = b"".join(encode(Send(id=ref, text=t, room="#lobby")) for ref, t in texts.items())
    alice.send(batch)
    alice.close()  # gone before a single ack could be read
    again = battery.connect(server)
    _, replay = again.login("alice", register=False)
    replayed = {m.ref for m in messages_in(replay) if m.ref is not None}
    again.send(batch)
    acks: dict[str, Ack] = {}
    while len(acks) < len(texts):
        frame = again.recv(10)
        assert frame.TYPE != "error", frame
        if isinstance(frame, Ack):
            acks[frame.ref] = frame
    # What the replay showed was stored before: its re-send must be a duplicate.
    assert all(acks[ref].duplicate for ref in replayed)
    assert len({a.id for a in acks.values()}) == len(texts)
    assert sorted(_texts(again, "#lobby", "h")) == sorted(texts.values())  # once each
    battery.finish(server)


def test_a_full_disk_refuses_sends_without_ack_keeps_reads_and_recovers(server, battery):
    """Battery #19: SQLITE_FULL: `store-failed` with the ref and no ack; history and search still served; the same id is stored once space returns."""
    alice = battery.online(server, "alice")
    alice.send(Send(id="before", text="stored before the disk filled", room="#lobby"))
    assert alice.expect(Ack).ref == "before"
    cap_database(server)
    body = _varied_text(19)
    alice.send(Send(id="full", text=body, room="#lobby"))
    answer = _until_answer(alice, "full")[-1]
    assert (answer.TYPE, answer.code) == ("error", ErrorCode.STORE_FAILED)
    assert not any(isinstance(f, Ack) for f in barrier(alice, "no-late-ack"))
    assert _texts(alice, "#lobby", "h1") == ["stored before the disk filled"]
    found = _page(alice, Search(words="disk filled", tag="s1"))
    assert [m.text for m in found] == ["stored before the disk filled"]
    uncap_database(server)
    alice.send(Send(id="full", text=body, room="#lobby"))
    ack = _until_answer(alice, "full")[-1]
    assert isinstance(ack, Ack) and not ack.duplicate, "the refused send had been stored after all"
    assert _texts(alice, "#lobby", "h2") == ["stored before the disk filled", body]
    battery.finish(server, errors_expected=True)


def test_a_read_only_database_refuses_sends_without_ack_keeps_reads_and_recovers(
    server, battery, immutable
):
    """Battery #20: `chattr +i` on the database and its WAL: `store-failed`, no ack; reads served; the same id is stored once writable."""
    alice = battery.online(server, "alice")
    alice.send(Send(id="before", text="stored while writable", room="#lobby"))
    assert alice.expect(Ack).ref == "before"
    immutable.lock(server)
    alice.send(Send(id="ro", text="sent while read-only", room="#lobby"))
    answer = _until_answer(alice, "ro")[-1]
    assert (answer.TYPE, answer.code) == ("error", ErrorCode.STORE_FAILED)
    assert not any(isinstance(f, Ack) for f in barrier(alice, "no-late-ack"))
    assert _texts(alice, "#lobby", "h1") == ["stored while writable"]
    found = _page(alice, Search(words="writable", tag="s1"))
    assert [m.text for m in found] == ["stored while writable"]
    immutable.unlock()
    alice.send(Send(id="ro", text="sent while read-only", room="#lobby"))
    ack = _until_answer(alice, "ro")[-1]
    assert isinstance(ack, Ack) and not ack.duplicate
    assert _texts(alice, "#lobby", "h2") == ["stored while writable", "sent while read-only"]
    battery.finish(server, errors_expected=True)


# --- pending items ------------------------------------------------------------------------


def test_a_client_id_reused_for_another_message_is_refused(server, battery):
    """Battery #17, item h: the same id with another text or target gets `id-reused`; the same message again gets its original ack."""
    alice = battery.online(server, "alice")
    bob = battery.online(server, "bob")
    alice.send(Send(id="same", text="the original", room="#lobby"))
    first = _until_answer(alice, "same")[-1]
    assert isinstance(first, Ack) and not first.duplicate
    for other in (
        Send(id="same", text="something else", room="#lobby"),
        Send(id="same", text="the original", to="bob"),
    ):
        alice.send(other)
        answer = _until_answer(alice, "same")[-1]
        assert (answer.TYPE, getattr(answer, "code", None)) == ("error", ErrorCode.ID_REUSED)
    alice.send(Send(id="same", text="the original", room="#lobby"))
    again = _until_answer(alice, "same")[-1]
    assert isinstance(again, Ack) and (again.id, again.duplicate) == (first.id, True)
    assert _texts(alice, "#lobby", "h") == ["the original"]
    assert _page(bob, History(with_="alice", tag="dm")) == []
    battery.finish(server)


def _sessions_of(server: ChatServer, nick: str) -> int:
    with server.store.read() as s:
        return int(
            s.execute(
                text(
                    "SELECT count(*) FROM sessions JOIN users ON users.id = sessions.user_id"
                    " WHERE users.nick_key = :nick"
                ),
                {"nick": nick},
            ).scalar()
            or 0
        )


def test_logins_keep_working_while_the_database_is_read_only(server, battery, immutable):
    """Battery #20, item i: read-only database: a known user logs in, reads history and search; sends fail with `store-failed`; the session row catches up."""
    alice = battery.online(server, "alice")
    alice.send(Send(id="before", text="stored while writable", room="#lobby"))
    assert alice.expect(Ack).ref == "before"
    alice.close()
    immutable.lock(server)
    again = battery.connect(server)
    welcome, _ = again.login("alice", register=False)
    assert welcome.nick == "alice"
    assert _texts(again, "#lobby", "h1") == ["stored while writable"]
    assert [m.text for m in _page(again, Search(words="writable", tag="s1"))] == [
        "stored while writable"
    ]
    again.send(Send(id="ro", text="sent while read-only", room="#lobby"))
    answer = _until_answer(again, "ro")[-1]
    assert (answer.TYPE, answer.code) == ("error", ErrorCode.STORE_FAILED)
    immutable.unlock()
    again.send(Send(id="ro", text="sent while read-only", room="#lobby"))
    assert isinstance(_until_answer(again, "ro")[-1], Ack)
    wait_for(
        lambda: True if _sessions_of(server, "alice") == 2 else None,
        10,
        "the read-only login's session row to be written",
    )
    battery.finish(server, errors_expected=True)


def test_logins_keep_working_while_the_disk_is_full(server, battery):
    """Battery #19, item i: disk full: a known user logs in and reads; sends fail with `store-failed`; the session row catches up.

    Passes today: a full disk is full at page granularity, and the login's
    small session and token rows still fit in pages SQLite already has (the
    read-only variant above is the one that needs the pending work).
    """
    alice = battery.online(server, "alice")
    alice.send(Send(id="before", text="stored before the disk filled", room="#lobby"))
    assert alice.expect(Ack).ref == "before"
    alice.close()
    cap_database(server)
    again = battery.connect(server)
    welcome, _ = again.login("alice", register=False)
    assert welcome.nick == "alice"
    assert _texts(again, "#lobby", "h1") == ["stored before the disk filled"]
    body = _varied_text(20)
    again.send(Send(id="full", text=body, room="#lobby"))
    answer = _until_answer(again, "full")[-1]
    assert (answer.TYPE, answer.code) == ("error", ErrorCode.STORE_FAILED)
    uncap_database(server)
    again.send(Send(id="full", text=body, room="#lobby"))
    assert isinstance(_until_answer(again, "full")[-1], Ack)
    wait_for(
        lambda: True if _sessions_of(server, "alice") == 2 else None,
        10,
        "the session row of the login made while full",
    )
    battery.finish(server, errors_expected=True)


def test_a_full_disk_is_named_as_such_in_the_server_log(server, battery):
    """Battery #19: the operator's log names the cause of a refused write: the disk is full."""
    alice = battery.online(server, "alice")
    cap_database(server)
    alice.send(Send(id="full", text=_varied_text(21), room="#lobby"))
    answer = _until_answer(alice, "full")[-1]
    assert (answer.TYPE, answer.code) == ("error", ErrorCode.STORE_FAILED)
    errors = [r.getMessage() for r in battery.server_records() if r.levelname == "ERROR"]
    assert errors and all("full" in e for e in errors), errors
    uncap_database(server)
    battery.finish(server, errors_expected=True)
