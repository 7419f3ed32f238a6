"""Unit tests of client/session.py: ClientSession through its public API only.

No sockets, no threads, no clock: frames go in through receive(), events come
back as its return value, and what the session wants sent comes out of
frames_to_send(). Times are plain numbers passed in.
"""

from __future__ import annotations

from typing import Any

import pytest

from parley_chat.client.events import (
    Acked,
    BatchEnded,
    BatchStarted,
    ClientEvent,
    Connected,
    ConversationsListed,
    ErrorReply,
    MessageReceived,
    PresenceChanged,
    ReadMoved,
    RoomJoined,
    RoomLeft,
    RoomsListed,
)
from parley_chat.client.session import (
    E2E_PLACEHOLDER,
    STORE_RETRY_DELAY,
    ClientSession,
    SeenIds,
)
from parley_chat.protocol import (
    Ack,
    Batch,
    Conversations,
    Error,
    Join,
    Keys,
    Link,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    Presence,
    Read,
    RoomList,
    Send,
    Welcome,
)

TS = "2026-11-24T09:30:00.000Z"


def _msg(id: int, text: str = "hi", **kwargs: Any) -> Message:
    kwargs.setdefault("room", "#lobby")
    kwargs.setdefault("from_", "bob")
    kwargs.setdefault("kind", "public")
    return Message(id=id, ts=TS, text=text, **kwargs)


def _welcome(**kwargs: Any) -> Welcome:
    kwargs.setdefault("nick", "Alice")
    kwargs.setdefault("token", "t-1")
    kwargs.setdefault("rooms", ["#lobby"])
    kwargs.setdefault("server", "test")
    return Welcome(version=1, **kwargs)


def _online(session: ClientSession, **welcome: Any) -> list[ClientEvent]:
    return session.welcomed(
        _welcome(**welcome), resumed=False, tls_version="TLSv1.3", fingerprint="ab" * 32
    )


def _feed(session: ClientSession, *frames: Any, now: float = 0.0) -> list[ClientEvent]:
    out: list[ClientEvent] = []
    for frame in frames:
        out.extend(session.receive(frame, now))
    return out


def test_seen_ids_drop_duplicates_and_everything_below_the_floor():
    seen = SeenIds(floor=10, keep=3)
    assert not seen.add(10) and not seen.add(3)
    assert seen.add(11) and not seen.add(11)
    assert seen.add(13) and seen.add(12) and seen.add(14)
    # Only 3 are kept: the oldest (11) folds into the floor and stays "seen".
    assert seen.floor == 11
    assert not seen.add(11) and not seen.add(12) and seen.add(15)


def test_hello_carries_the_requested_nick_last_seen_and_register_only_with_a_password():
    session = ClientSession("alice", last_seen=41, token="tok")
    hello = session.hello(token="tok", register=True, client_name="unit")
    assert (hello.nick, hello.token, hello.password, hello.last_seen) == ("alice", "tok", None, 41)
    assert hello.register is False and hello.client == "unit"
    with_password = session.hello(password="pw", register=True)
    assert with_password.register is True and with_password.password == "pw"


def test_the_welcome_is_adopted_and_reported_as_connected():
    session = ClientSession("alice")
    events = _online(
        session, rooms=["#lobby", "#Dev"], max_text=500, flood={"rate": 5, "burst": 10}
    )
    assert events == [
        Connected("Alice", ("#lobby", "#Dev"), "test", False, False, "TLSv1.3", "ab" * 32)
    ]
    assert session.logged_in and session.nick == "Alice" and session.token == "t-1"
    assert session.joined_rooms == ("#lobby", "#Dev")
    assert (session.max_text, session.flood_rate, session.flood_burst) == (500, 5.0, 10)


def test_live_and_replayed_messages_are_delivered_once_and_move_last_seen():
    session = ClientSession("alice", last_seen=4)
    events = _feed(
        session,
        _msg(4),  # at or below the starting last_seen: already shown
        _msg(5),
        Batch(state="open", kind="replay"),
        _msg(5),
        _msg(6),
        Batch(state="close", kind="replay", count=2),
        _msg(6),
        _msg(7),
    )
    got = [(e.message.id, e.batch) for e in events if isinstance(e, MessageReceived)]
    assert got == [(5, None), (6, "replay"), (7, None)]
    assert [type(e) for e in events if isinstance(e, BatchStarted | BatchEnded)] == [
        BatchStarted,
        BatchEnded,
    ]
    assert session.last_seen == 7
    assert session.hello(password="pw").last_seen == 7  # the next login asks for what follows


def test_history_and_search_pages_always_pass_and_leave_last_seen_alone():
    session = ClientSession("alice")
    events = _feed(session, _msg(9))
    for kind in ("history", "search"):
        events += _feed(
            session,
            Batch(state="open", kind=kind, tag="t"),
            _msg(3),
            _msg(9),
            Batch(state="close", kind=kind, tag="t", count=2),
        )
    got = [(e.message.id, e.batch, e.tag) for e in events if isinstance(e, MessageReceived)]
    assert got == [
        (9, None, None),
        (3, "history", "t"),
        (9, "history", "t"),
        (3, "search", "t"),
        (9, "search", "t"),
    ]
    assert session.last_seen == 9


def test_a_complete_replay_for_a_fresh_client_sets_last_seen_to_zero():
    fresh = ClientSession("alice")
    _feed(fresh, Batch(state="open", kind="replay"), Batch(state="close", kind="replay"))
    assert fresh.last_seen == 0
    cut = ClientSession("alice")
    _feed(cut, Batch(state="open", kind="replay", gap=True))
    assert cut.last_seen is None  # a gap: the next login must not claim it saw everything


def test_sends_wait_while_logged_out_then_go_first_with_their_original_ids():
    session = ClientSession("alice")
    first = session.send_text("one")
    second = session.send_text("two", to="bob")
    session.request(Join(room="#dev"))
    session.ping("p1")  # a ping means nothing for a later connection: dropped
    assert list(session.pending) == [first, second]
    assert session.frames_to_send() == [] and not session.has_outgoing
    _online(session)
    out = session.frames_to_send()
    assert [type(f) for f in out] == [Send, Send, Join]
    assert [f.id for f in out[:2]] == [first, second]  # type: ignore[attr-defined]
    assert out[0] == Send(id=first, text="one", room="#lobby")
    assert session.frames_to_send() == []
    # Lost again: pending sends stay and go out again after the next login.
    session.connection_lost()
    assert not session.logged_in
    _online(session)
    assert [f.id for f in session.frames_to_send()] == [first, second]  # type: ignore[attr-defined]


def test_the_outgoing_callback_fires_when_the_outbox_turns_non_empty_while_logged_in():
    calls: list[int] = []
    session = ClientSession("alice", on_outgoing=lambda: calls.append(1))
    session.send_text("offline")
    assert calls == []
    _online(session)
    session.frames_to_send()
    session.send_text("a")
    session.send_text("b")  # the outbox was not empty: no second nudge
    assert calls == [1]
    session.frames_to_send()
    session.ping("p")
    assert calls == [1, 1]


def test_a_send_is_resolved_once_by_its_echo_or_its_ack():
    session = ClientSession("alice")
    first = session.send_text("one")
    second = session.send_text("two", to="bob")
    # The echo (message with ref) arrives before the ack, e.g. in a replay.
    events = _feed(
        session,
        _msg(20, "one", from_="alice", ref=first),
        Ack(ref=first, id=20, ts=TS, duplicate=True),
        Ack(ref=second, id=21, ts=TS),
    )
    acked = [e for e in events if isinstance(e, Acked)]
    assert [(a.client_id, a.id, a.duplicate) for a in acked] == [
        (first, 20, False),
        (second, 21, False),
    ]
    assert session.pending == {}


def test_an_acked_send_settles_only_once_its_echo_arrived():
    # A graceful close waits for both the ack and the echo, whatever their order.
    session = ClientSession("alice")
    assert session.settled
    ref = session.send_text("mine")
    assert not session.settled
    _feed(session, Ack(ref=ref, id=30, ts=TS))
    assert session.pending == {} and not session.settled
    _feed(session, _msg(30, "mine", from_="alice", ref=ref))
    assert session.settled


def test_refused_sends_leave_pending_but_store_failures_are_retried_later():
    session = ClientSession("alice")
    _online(session)
    refused = session.send_text("x", room="#nowhere")
    kept = session.send_text("y")
    session.frames_to_send()
    events = _feed(
        session,
        Error(code="not-in-room", message="join first", ref=refused),
        Error(code="store-failed", message="disk full", ref=kept),
        now=100.0,
    )
    assert list(session.pending) == [kept]
    assert [(e.code, e.ref) for e in events if isinstance(e, ErrorReply)] == [
        ("not-in-room", refused),
        ("store-failed", kept),
    ]
    assert session.next_deadline() == 100.0 + STORE_RETRY_DELAY
    session.tick(100.0 + STORE_RETRY_DELAY - 0.1)
    assert session.frames_to_send() == []
    session.tick(100.0 + STORE_RETRY_DELAY)
    assert [f.id for f in session.frames_to_send()] == [kept]  # type: ignore[attr-defined]
    assert session.next_deadline() is None


def test_an_error_announcing_the_close_is_kept_until_the_next_login():
    session = ClientSession("alice")
    _online(session)
    _feed(session, Error(code="flood", message="slow down"))
    assert session.closing_reason == "flood: slow down"
    _feed(session, Error(code="not-in-room", message="no"))
    assert session.closing_reason == "flood: slow down"
    _online(session)
    assert session.closing_reason is None


def test_restored_sends_go_out_at_the_next_login_with_their_ids():
    session = ClientSession("alice")
    kept = Send(id="lost-ack-1", room="#lobby", text="exactly once")
    session.restore_pending([kept])
    assert session.pending == {"lost-ack-1": kept}
    _online(session)
    assert session.frames_to_send() == [kept]


def test_send_text_refuses_what_the_protocol_refuses():
    session = ClientSession("alice")
    with pytest.raises(LocalProtocolError):
        session.send_text("   ")
    with pytest.raises(LocalProtocolError):
        session.send_text("bell\x07")
    with pytest.raises(LocalProtocolError):
        session.send_text("x" * (session.max_text + 1))
    assert session.pending == {}


def test_a_server_ping_is_answered_with_a_pong_while_logged_in():
    session = ClientSession("alice")
    assert _feed(session, Ping(token="s1")) == []
    assert session.frames_to_send() == []
    _online(session)
    assert _feed(session, Ping(token="s2"), Pong(token="c1")) == []
    assert session.frames_to_send() == [Pong(token="s2")]


def test_own_presence_changes_become_room_events():
    session = ClientSession("alice")
    _online(session)
    events = _feed(
        session,
        Presence(room="#dev", online=["alice"], joined="alice"),
        Presence(room="#dev", online=["alice", "bob"], joined="bob"),
        Presence(room="#DEV", online=["alice"], joined="ALICE"),  # again: no event
        Presence(room="#dev", online=["bob"], left="alice"),
    )
    assert [type(e) for e in events if isinstance(e, RoomJoined | RoomLeft)] == [
        RoomJoined,
        RoomLeft,
    ]
    assert sum(isinstance(e, PresenceChanged) for e in events) == 4
    assert session.joined_rooms == ("#lobby",)


def test_presence_deltas_and_pages_keep_a_full_online_list():
    session = ClientSession("alice")
    events = _feed(
        session,
        Presence(room="#lobby", online=["alice", "bob"], more=True),
        Presence(room="#lobby", online=["carol"]),
        Presence(room="#lobby", joined="Dave"),
        Presence(room="#lobby", left="bob"),
    )
    changes = [e for e in events if isinstance(e, PresenceChanged)]
    # A paged list is reported once, whole; each delta then gives the new full list.
    assert [c.online for c in changes] == [
        ("alice", "bob", "carol"),
        ("alice", "bob", "carol", "Dave"),
        ("alice", "carol", "Dave"),
    ]
    assert (changes[1].joined, changes[2].left) == ("Dave", "bob")


def test_paged_room_and_conversation_lists_are_reported_once_whole():
    session = ClientSession("alice")
    events = _feed(
        session,
        RoomList(rooms=[{"name": "#a", "members": 2, "joined": True}], more=True),
        RoomList(rooms=[{"name": "#b", "members": 1, "joined": False}], tag="r"),
    )
    assert events == [RoomsListed(rooms=(("#a", 2, True), ("#b", 1, False)), tag="r")]
    item = {"kind": "room", "name": "#a", "last": None, "unread": 3, "read": 7}
    events = _feed(
        session,
        Conversations(items=[item], more=True),
        Conversations(items=[{**item, "name": "#b"}], tag="c"),
    )
    assert len(events) == 1 and isinstance(events[0], ConversationsListed)
    assert [(s.name, s.unread, s.read) for s in events[0].items] == [("#a", 3, 7), ("#b", 3, 7)]
    assert events[0].tag == "c"


def test_read_markers_from_other_devices_are_reported():
    session = ClientSession("alice")
    events = _feed(session, Read(id=5, room="#lobby"), Read(id=6, with_="bob"))
    assert events == [ReadMoved("room", "#lobby", 5), ReadMoved("private", "bob", 6)]


class _Hooks:
    """End-to-end hooks that record what they are given (a fake for this unit only)."""

    def __init__(self) -> None:
        self.frames: list[object] = []
        self.errors: list[Error] = []

    def open(self, m: Message) -> tuple[Message, str | None]:
        return Message(id=m.id, ts=m.ts, kind=m.kind, text="plain", to=m.to, from_=m.from_), None

    def on_frame(self, frame: Keys | Link) -> None:
        self.frames.append(frame)

    def on_error(self, frame: Error) -> None:
        self.errors.append(frame)

    def preview(self, message_id: int) -> str | None:
        return f"preview {message_id}"


def _sealed(id: int) -> Message:
    return _msg(id, "", kind="private", room=None, to="alice", e2e="x" * 40)


def test_encrypted_messages_show_a_placeholder_without_hooks_and_plaintext_with_them():
    session = ClientSession("alice")
    (without,) = _feed(session, _sealed(1))
    assert isinstance(without, MessageReceived) and without.secure
    assert without.message.text == E2E_PLACEHOLDER and without.e2e_error
    hooks = _Hooks()
    session.e2e = hooks
    (opened,) = _feed(session, _sealed(2))
    assert isinstance(opened, MessageReceived) and opened.secure and opened.e2e_error is None
    assert opened.message.text == "plain"
    _feed(session, Error(code="bad-key", message="no"))
    assert [e.code for e in hooks.errors] == ["bad-key"]


def test_an_encrypted_conversation_preview_comes_from_the_hooks():
    session = ClientSession("alice")
    session.e2e = _Hooks()
    last = {"id": 9, "ts": TS, "kind": "private", "text": "", "from": "bob", "to": "alice"}
    item = {"kind": "private", "name": "bob", "last": last, "unread": 1, "read": 0}
    (listed,) = _feed(session, Conversations(items=[item]))
    assert isinstance(listed, ConversationsListed)
    assert listed.items[0].last is not None and listed.items[0].last.text == "preview 9"
