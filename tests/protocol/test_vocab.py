"""The protocol's vocabulary (protocol/vocab.py): one StrEnum per set of words.

The words are the wire format, so these tests pin them: each vocabulary's
strings, byte-identical encodings of frames built from members and from the
plain strings a peer sends, parsed frames holding members, and the same
refusals (codes and messages) for a word outside a vocabulary as before.
No sockets: frames and the codec only.
"""

from __future__ import annotations

import json
from enum import StrEnum

import pytest

from parley_chat.protocol import (
    Action,
    Batch,
    BatchKind,
    BatchState,
    ConversationKind,
    Conversations,
    ErrorCode,
    Link,
    LinkOp,
    LocalProtocolError,
    Message,
    MessageKind,
    NoticeKind,
    RemoteProtocolError,
    Role,
    decode_client_line,
    decode_server_line,
    encode,
    parse_client_frame,
    parse_server_frame,
)
from parley_chat.protocol.moderation import (
    ACTION_FIELDS,
    Moderate,
    Notice,
    RoomInfo,
    action_named,
)
from parley_chat.server.store.vocab import EndReason, SanctionKind, sql_in

TS = "2026-11-24T09:30:00.000Z"
KEY = "A" * 43 + "="

#: Every vocabulary and the exact words it stood for before it was an enum.
WORDS: dict[type[StrEnum], tuple[str, ...]] = {
    MessageKind: ("public", "private", "system"),
    BatchKind: ("replay", "history", "search"),
    BatchState: ("open", "close"),
    ConversationKind: ("room", "private"),
    LinkOp: ("offer", "fetch", "answer"),
    Role: ("operator", "owner", "moderator"),
    NoticeKind: ("announce", "invite", "kick", "ban", "unban", "mute", "unmute"),
    Action: (
        "topic",
        "private",
        "public",
        "invite",
        "kick",
        "ban",
        "unban",
        "mute",
        "unmute",
        "op",
        "deop",
        "delete",
        "edit",
        "disconnect",
        "lock",
        "unlock",
        "announce",
    ),
    SanctionKind: ("ban", "mute"),
}


@pytest.mark.parametrize("vocab", list(WORDS), ids=lambda v: v.__name__)
def test_each_vocabulary_holds_exactly_the_words_of_the_wire(vocab: type[StrEnum]):
    assert tuple(member.value for member in vocab) == WORDS[vocab]
    for member in vocab:
        # A member is its string: equal, same hash, same JSON, same text.
        assert member == member.value and hash(member) == hash(member.value)
        assert json.dumps(member) == json.dumps(member.value)
        assert f"{member}" == str(member) == member.value


def test_every_action_has_its_fields_and_nothing_else_does():
    assert set(ACTION_FIELDS) == set(Action)


def test_a_message_built_from_members_encodes_as_the_old_strings_did():
    frame = Message(id=7, ts=TS, kind=MessageKind.PRIVATE, text="hi", from_="alice", to="bob")
    assert encode(frame) == (
        b'{"type":"message","id":7,"ts":"2026-11-24T09:30:00.000Z","kind":"private",'
        b'"text":"hi","from":"alice","to":"bob"}\n'
    )


def test_a_batch_built_from_members_encodes_as_the_old_strings_did():
    frame = Batch(BatchState.CLOSE, BatchKind.HISTORY, tag="t1", target="#lobby", more=True)
    assert encode(frame) == (
        b'{"type":"batch","state":"close","kind":"history","tag":"t1","target":"#lobby",'
        b'"gap":false,"more":true}\n'
    )


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"message","id":1,"ts":"2026-11-24T09:30:00.000Z","kind":"public",'
        b'"text":"hello","from":"alice","room":"#lobby"}\n',
        b'{"type":"message","id":2,"ts":"2026-11-24T09:30:00.000Z","kind":"system",'
        b'"text":"bob joined #lobby","room":"#lobby"}\n',
        b'{"type":"batch","state":"open","kind":"replay","target":"latest","gap":true,'
        b'"more":false}\n',
        b'{"type":"batch","state":"close","kind":"search","gap":false,"more":false,"count":3}\n',
        b'{"type":"link","op":"fetch","code":"AB2C"}\n',
    ],
)
def test_a_parsed_frame_holds_members_and_encodes_back_to_the_same_bytes(line: bytes):
    frame = decode_server_line(line)
    for name in ("kind", "state", "op"):
        value = getattr(frame, name, None)
        if value is not None:
            assert isinstance(value, StrEnum), f"{name} is {type(value).__name__}"
    assert encode(frame) == line


def test_plain_strings_and_members_build_equal_frames_with_equal_bytes():
    from_strings = Message(id=3, ts=TS, kind="public", text="x", room="#a1")  # type: ignore[arg-type]
    from_members = Message(id=3, ts=TS, kind=MessageKind.PUBLIC, text="x", room="#a1")
    assert from_strings == from_members
    assert type(from_strings.kind) is MessageKind
    assert encode(from_strings) == encode(from_members)


def test_a_client_link_frame_parses_its_op_into_a_member():
    frame = decode_client_line(
        json.dumps({"type": "link", "op": "offer", "code": "AB2C", "pub": KEY, "mac": KEY}).encode()
        + b"\n"
    )
    assert isinstance(frame, Link)
    assert frame.op is LinkOp.OFFER


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (
            {"type": "message", "id": 1, "ts": TS, "kind": "shout", "text": "x", "room": "#a1"},
            "message 'kind' is one of ('public', 'private', 'system')",
        ),
        (
            {"type": "batch", "state": "half", "kind": "replay"},
            "batch 'state' is 'open' or 'close'",
        ),
        (
            {"type": "batch", "state": "open", "kind": "everything"},
            "batch 'kind' is one of ('replay', 'history', 'search')",
        ),
        (
            {"type": "link", "op": "steal", "code": "AB2C"},
            "link 'op' is one of ('offer', 'fetch', 'answer')",
        ),
    ],
)
def test_a_word_outside_its_vocabulary_is_a_bad_frame_naming_the_words(wire, message):
    with pytest.raises(RemoteProtocolError) as caught:
        parse_server_frame(wire)
    assert caught.value.code is ErrorCode.BAD_FRAME
    assert caught.value.message == message


def test_a_word_that_is_not_a_string_is_still_a_type_error():
    with pytest.raises(RemoteProtocolError) as caught:
        parse_server_frame({"type": "batch", "state": 1, "kind": "replay"})
    assert caught.value.code is ErrorCode.BAD_FRAME
    assert caught.value.message == "field 'state' of 'batch' must be str"


def test_moderate_parses_its_action_and_refuses_an_unknown_one():
    frame = parse_client_frame({"type": "moderate", "action": "kick", "room": "#a1", "nick": "bob"})
    assert isinstance(frame, Moderate)
    assert frame.action is Action.KICK
    with pytest.raises(RemoteProtocolError) as caught:
        parse_client_frame({"type": "moderate", "action": "smite", "nick": "bob"})
    assert caught.value.code is ErrorCode.BAD_FRAME
    assert caught.value.message.startswith("moderate 'action' is one of topic, private, public")


def test_action_named_turns_a_command_word_into_its_action():
    assert action_named("ban") is Action.BAN
    with pytest.raises(LocalProtocolError) as caught:
        action_named("smite")
    assert caught.value.code is ErrorCode.BAD_FRAME


def test_a_notice_of_a_kind_this_side_does_not_know_still_parses():
    # Notices are for people: a newer server's new kind is shown, not refused.
    frame = parse_server_frame({"type": "notice", "text": "hi", "ts": TS, "kind": "celebrate"})
    assert isinstance(frame, Notice)
    assert frame.kind == "celebrate"
    assert Notice(text="x", ts=TS).kind == NoticeKind.ANNOUNCE


def test_conversation_entries_hold_their_kind_as_a_member():
    frame = parse_server_frame(
        {
            "type": "conversations",
            "items": [
                {"kind": "room", "name": "#lobby", "last": None, "unread": 0, "read": 0},
                {"kind": "private", "name": "bob", "last": None, "unread": 2, "read": 5},
            ],
        }
    )
    assert isinstance(frame, Conversations)
    assert [item["kind"] for item in frame.items] == [
        ConversationKind.ROOM,
        ConversationKind.PRIVATE,
    ]
    assert all(type(item["kind"]) is ConversationKind for item in frame.items)
    with pytest.raises(RemoteProtocolError):
        parse_server_frame(
            {
                "type": "conversations",
                "items": [{"kind": "group", "name": "x", "last": None, "unread": 0, "read": 0}],
            }
        )


def test_roominfo_names_roles_from_the_vocabulary():
    info = RoomInfo(room="#a1", owner="Alice", moderators=["bob"], operators=["carol"])
    assert info.role_of("alice") is Role.OWNER
    assert info.role_of("BOB") is Role.MODERATOR
    assert info.role_of("carol") is Role.OPERATOR
    assert info.role_of("dave") is None


def test_the_store_checks_its_columns_against_the_same_words():
    assert sql_in("kind", MessageKind) == "kind IN ('public', 'private', 'system')"
    assert sql_in("kind", SanctionKind) == "kind IN ('ban', 'mute')"
    assert all(len(reason) <= 30 for reason in EndReason)
