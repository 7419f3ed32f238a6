# Tests for server/commands.py: the handlers through their public entry point,
# Commands.dispatch, with a fake connection (the Client protocol) and the real
# store, hub and worker pools. No sockets: the wire is tested in tests/integration.

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parley_chat.protocol import (
    PROTOCOL_VERSION,
    Error,
    Frame,
    Hello,
    Join,
    ListRooms,
    Ping,
    Send,
    encode,
)
from parley_chat.server.auth import PasswordHasher
from parley_chat.server.commands import Commands
from parley_chat.server.config import ServerConfig
from parley_chat.server.hub import Hub
from parley_chat.server.store import Store, upgrade_to_head
from parley_chat.server.workers import WorkerPool


class FakeClient:
    """A connection as the handlers see it: what it was sent, and whether it was closed."""

    #: No I/O loop: the hub hands deliveries over at once, on the calling thread.
    loop = None

    def __init__(self, ip: str = "10.0.0.9") -> None:
        self.peer_ip, self.peer = ip, f"{ip}:40000"
        self.user_id: int | None = None
        self.nick: str | None = None
        self.session_id: int | None = None
        self.tls_version = "TLSv1.3"
        self.lines: list[dict[str, Any]] = []
        self.closed: str | None = None
        self.jobs = 0
        self._cond = threading.Condition()

    @property
    def logged_in(self) -> bool:
        return self.user_id is not None

    def _add(self, data: bytes) -> None:
        with self._cond:
            self.lines += [json.loads(line) for line in data.splitlines() if line]
            self._cond.notify_all()

    def send_frame(self, frame: Frame) -> None:
        self._add(encode(frame))

    def send_bytes(self, data: bytes) -> None:
        self._add(data)

    def send_replay(self, parts: list[bytes], replayed_up_to: int) -> None:
        for part in parts:
            self._add(part)

    def hold_live(self) -> None:
        pass

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        self._add(data)

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        for _, data in chunks:
            self._add(data)

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        self._add(data)

    def close_after_flush(self, reason: str, error: Error | None = None) -> None:
        if error is not None:
            self.send_frame(error)
        with self._cond:
            self.closed = reason
            self._cond.notify_all()

    def begin_job(self) -> None:
        with self._cond:
            self.jobs += 1

    def end_job(self) -> None:
        with self._cond:
            self.jobs -= 1
            self._cond.notify_all()

    def wait_for(self, done: Callable[[FakeClient], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not reached in {timeout} s; got {self.lines}")
                self._cond.wait(left)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.lines if f["type"] == kind]


@pytest.fixture
def make_commands(tmp_path: Path) -> Iterator[Callable[..., Commands]]:
    made: list[tuple[Store, WorkerPool, WorkerPool]] = []

    def _make(**overrides: Any) -> Commands:
        url = f"sqlite:///{tmp_path / f'chat{len(made)}.db'}"
        upgrade_to_head(url, backup=False)
        cfg = ServerConfig.for_tests(url, tmp_path, **overrides)
        hub = Hub()
        store = Store(url, callback_scope=hub.batch)
        store.start()
        login, request = WorkerPool("login", 2), WorkerPool("request", 2)
        login.start()
        request.start()
        made.append((store, login, request))
        return Commands(
            cfg, store, hub, PasswordHasher(n=16), login_pool=login, request_pool=request
        )

    yield _make
    for store, login, request in made:
        login.stop()
        request.stop()
        store.close()


def _login(commands: Commands, nick: str, **client: Any) -> FakeClient:
    conn = FakeClient(**client)
    commands.dispatch(
        conn, Hello(version=PROTOCOL_VERSION, nick=nick, password="pw-" + nick, register=True)
    )
    conn.wait_for(lambda c: c.logged_in and c.jobs == 0 and bool(c.of_type("presence")))
    return conn


def test_frames_that_need_a_login_are_refused_before_one(make_commands):
    commands = make_commands()
    conn = FakeClient()
    commands.dispatch(conn, Send(id="c1", text="hi", room="#lobby"))
    commands.dispatch(conn, Ping(token="t"))
    assert conn.lines[0] == {
        "type": "error",
        "code": "not-logged-in",
        "message": "log in first with a hello frame",
        "ref": "c1",
    }
    assert conn.lines[1] == {"type": "pong", "token": "t"}


def test_hello_runs_off_the_loop_as_one_job_and_answers_welcome_replay_then_presence(
    make_commands,
):
    commands = make_commands()
    conn = _login(commands, "alice")
    assert [f["type"] for f in conn.lines] == [
        "welcome",
        "conversations",
        "batch",
        "batch",
        "presence",
        "roominfo",  # moderation: each room's topic and roles, after its list
    ]
    assert conn.lines[1]["items"] == [
        {"kind": "room", "name": "#lobby", "last": None, "unread": 0, "read": 0}
    ]
    assert conn.lines[4] == {"type": "presence", "room": "#lobby", "online": ["alice"]}
    assert conn.jobs == 0


def test_a_second_user_coming_online_is_a_delta_for_the_first(make_commands):
    commands = make_commands()
    alice = _login(commands, "alice")
    before = len(alice.lines)
    _login(commands, "bob")
    alice.wait_for(lambda c: len(c.lines) > before)
    assert alice.lines[before:] == [{"type": "presence", "room": "#lobby", "joined": "bob"}]


def test_a_user_cannot_join_more_rooms_than_the_cap(make_commands):
    commands = make_commands(max_rooms_per_user=3)
    alice = _login(commands, "alice")
    for room in ("#a", "#b"):
        commands.dispatch(alice, Join(room=room))
        alice.wait_for(
            lambda c, r=room: any(f.get("joined") == "alice" and f["room"] == r for f in c.lines)
        )
    commands.dispatch(alice, Join(room="#c"))
    alice.wait_for(lambda c: bool(c.of_type("error")))
    assert alice.of_type("error")[0]["code"] == "too-many-rooms"


def test_the_server_holds_no_more_rooms_than_its_cap(make_commands):
    commands = make_commands(max_rooms=2)  # #lobby and one more
    alice = _login(commands, "alice")
    commands.dispatch(alice, Join(room="#one"))
    alice.wait_for(lambda c: any(f.get("room") == "#one" for f in c.of_type("presence")))
    commands.dispatch(alice, Join(room="#two"))
    alice.wait_for(lambda c: bool(c.of_type("error")))
    assert alice.of_type("error")[0]["code"] == "too-many-rooms"


def test_joins_beyond_the_burst_are_refused_as_flood(make_commands):
    commands = make_commands(join_burst=2, join_rate=0.001)
    alice = _login(commands, "alice")
    for room in ("#a", "#b", "#c"):
        commands.dispatch(alice, Join(room=room))
    alice.wait_for(lambda c: bool(c.of_type("error")))
    assert [e["code"] for e in alice.of_type("error")] == ["flood"]


def test_the_room_list_is_paged_so_every_frame_fits_the_line_cap(make_commands):
    commands = make_commands(rooms_page=2)
    alice = _login(commands, "alice")
    for room in ("#a", "#b", "#c", "#d"):
        commands.dispatch(alice, Join(room=room))
    alice.wait_for(lambda c: sum(f.get("joined") == "alice" for f in c.of_type("presence")) >= 4)
    commands.dispatch(alice, ListRooms(tag="r"))
    alice.wait_for(lambda c: bool(c.of_type("rooms")) and c.jobs == 0)
    pages = alice.of_type("rooms")
    assert [len(p["rooms"]) for p in pages] == [2, 2, 1]
    assert [p.get("more") for p in pages] == [True, True, None]
    assert [r["name"] for p in pages for r in p["rooms"]] == ["#a", "#b", "#c", "#d", "#lobby"]


def test_a_reused_client_id_with_other_text_is_refused(make_commands):
    commands = make_commands()
    alice = _login(commands, "alice")
    commands.dispatch(alice, Send(id="same", text="first", room="#lobby"))
    alice.wait_for(lambda c: bool(c.of_type("ack")))
    commands.dispatch(alice, Send(id="same", text="second", room="#lobby"))
    alice.wait_for(lambda c: bool(c.of_type("error")))
    assert alice.of_type("error")[0]["code"] == "id-reused"
    assert alice.of_type("error")[0]["ref"] == "same"


def test_accounts_created_per_address_are_throttled(make_commands):
    commands = make_commands(registrations_per_ip=2)
    _login(commands, "u1")
    _login(commands, "u2")
    third = FakeClient()
    commands.dispatch(
        third, Hello(version=PROTOCOL_VERSION, nick="u3", password="pw-u3", register=True)
    )
    third.wait_for(lambda c: c.closed is not None)
    assert third.of_type("error")[0]["code"] == "throttled"
    # Another address may still register, and existing accounts still log in.
    _login(commands, "u4", ip="10.0.0.10")
    _login(commands, "u1")


def test_a_senders_private_message_after_room_ones_in_one_turn_is_stored_after_them(
    make_commands,
):
    # The I/O loop gathers a turn's room messages and commits them when the
    # turn's reads end; a private send runs on the request pool (it looks the
    # recipient up). The sender's messages must still get ids in the order
    # sent: history shows them in id order, and a client's last_seen is the
    # greatest id it was given.
    commands = make_commands()
    alice = _login(commands, "alice")
    _login(commands, "bob")
    with commands.store.gathering():  # as the I/O loop wraps a turn's reads
        commands.dispatch(alice, Send(id="r1", text="room first", room="#lobby"))
        commands.dispatch(alice, Send(id="r2", text="room second", room="#lobby"))
        commands.dispatch(alice, Send(id="p3", text="private third", to="bob"))
        # The private message is committed before the turn ends.
        alice.wait_for(lambda c: any(a["ref"] == "p3" for a in c.of_type("ack")))
    alice.wait_for(lambda c: len(c.of_type("ack")) == 3)
    ids = {a["ref"]: a["id"] for a in alice.of_type("ack")}
    assert ids["r1"] < ids["r2"] < ids["p3"]
