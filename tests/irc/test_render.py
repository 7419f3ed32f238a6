"""Unit tests of server/irc/render.py: parley frames as IRC lines for one connection."""

from __future__ import annotations

import json

from parley_chat.server.irc.render import E2E_NOTICE, Renderer, View, split_text


def _renderer(caps: set[str], shown: dict[str, str], echoes: set[str] = frozenset()) -> Renderer:  # type: ignore[assignment]
    return Renderer(
        View(
            nick="me",
            server="srv.irc",
            has_cap=caps.__contains__,
            shows=lambda room: shown.get(room.lower()),
            show=lambda room: shown.__setitem__(room.lower(), room),
            hide=lambda room: shown.pop(room.lower(), None),
            is_echo=lambda ref: ref in echoes,
            is_online=lambda nick: nick != "gone",
            mask=lambda nick: f"{nick}!{nick}@parley",
            is_notice=lambda mid: False,
            part_reason=lambda room, nick: None,
            quit_reason=lambda nick: "Quit: offline",
        )
    )


def _wire(**fields: object) -> bytes:
    base: dict[str, object] = {"type": "message", "id": 7, "ts": "2026-01-02T03:04:05.678Z"}
    return json.dumps({**base, **fields}).encode() + b"\n"


def test_multi_line_message_becomes_several_privmsgs_with_tags() -> None:
    r = _renderer({"server-time", "message-tags"}, {"#a": "#a"})
    out = r.render(_wire(kind="public", room="#a", text="one\ntwo", **{"from": "bob"}))
    assert [(m.command, m.params, m.tags["msgid"]) for m, _ in out] == [
        ("PRIVMSG", ("#a", "one"), "7"),
        ("PRIVMSG", ("#a", "two"), "7-1"),
    ]
    assert out[0][0].tags["time"] == "2026-01-02T03:04:05.678Z"
    assert r.last_id == 7


def test_channels_not_shown_are_dropped() -> None:
    r = _renderer(set(), {})
    assert r.render(_wire(kind="public", room="#a", text="x", **{"from": "bob"})) == []


def test_e2e_private_message_is_a_notice() -> None:
    r = _renderer(set(), {})
    out = r.render(_wire(kind="private", to="me", text="", e2e="opaque", **{"from": "bob"}))
    assert [(m.command, m.params) for m, _ in out] == [("NOTICE", ("me", E2E_NOTICE))]


def test_own_echo_only_with_echo_message() -> None:
    frame = _wire(kind="public", room="#a", text="hi", ref="r1", **{"from": "me"})
    without = _renderer(set(), {"#a": "#a"}, {"r1"}).render(frame)
    assert [m.command for m, _ in without] == [""]  # only the place of a label's ACK
    with_echo = _renderer({"echo-message"}, {"#a": "#a"}, {"r1"}).render(frame)
    assert [(m.command, own) for m, own in with_echo] == [("PRIVMSG", True)]


def test_system_messages_become_irc_verbs() -> None:
    r = _renderer(set(), {"#a": "#a"})
    topic = r.render(_wire(kind="system", room="#a", text="bob set the topic of #a: hello"))
    assert [(m.command, m.params, m.source) for m, _ in topic] == [
        ("TOPIC", ("#a", "hello"), "bob!bob@parley")
    ]
    kick = r.render(_wire(kind="system", room="#a", text="eve was kicked from #a by bob: spam"))
    assert [(m.command, m.params) for m, _ in kick] == [("KICK", ("#a", "eve", "spam"))]
    left = b'{"type":"presence","room":"#a","left":"eve"}\n'
    assert r.render(left) == []  # the KICK said it
    assert r.render(_wire(kind="system", room="#a", text="eve joined #a")) == []


def test_presence_join_part_quit() -> None:
    r = _renderer(set(), {"#a": "#a", "#b": "#b"})
    joined = r.render(b'{"type":"presence","room":"#a","joined":"bob"}\n')
    assert [(m.command, m.params) for m, _ in joined] == [("JOIN", ("#a",))]
    part = r.render(b'{"type":"presence","room":"#a","left":"bob"}\n')
    assert [m.command for m, _ in part] == ["PART"]
    quits = r.render(
        b'{"type":"presence","room":"#a","left":"gone"}\n{"type":"presence","room":"#b","left":"gone"}\n'
    )
    assert [m.command for m, _ in quits] == ["QUIT"]  # once, however many channels


def test_split_text_keeps_characters_whole() -> None:
    pieces = split_text("é" * 300, 101)
    assert all(len(p.encode()) <= 101 for p in pieces)
    assert "".join(pieces) == "é" * 300
