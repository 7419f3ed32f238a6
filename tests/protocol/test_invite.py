# protocol/invite.py: the invite line round-trips, and every malformed one is
# refused with a message that says what is wrong.

from __future__ import annotations

import pytest

from parley_chat.protocol.invite import (
    DEFAULT_INVITE_PORT,
    Invite,
    InviteError,
    format_invite,
    looks_like_invite,
    parse_invite,
)

FP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize("host", ["192.168.1.20", "classroom-pc.local", "::1", "fd00::2", "chat"])
def test_round_trip(host):
    line = format_invite(host, 6000, FP)
    assert looks_like_invite(line)
    assert parse_invite(line) == Invite(host, 6000, FP)
    assert parse_invite(f"  {line}\n") == Invite(host, 6000, FP)


def test_the_format():
    assert format_invite("10.0.0.5", 5555, FP) == f"parley://10.0.0.5:5555#sha256={FP}"
    assert format_invite("::1", 5555, FP) == f"parley://[::1]:5555#sha256={FP}"
    assert format_invite("chat", 5555, None) == "parley://chat:5555"


def test_optional_parts_and_lenient_spelling():
    assert parse_invite("parley://chat") == Invite("chat", DEFAULT_INVITE_PORT, None)
    assert parse_invite("PARLEY://chat:7000/") == Invite("chat", 7000, None)
    colons = ":".join(FP[i : i + 2] for i in range(0, 64, 2)).upper()
    assert parse_invite(f"parley://chat#SHA256={colons}").fingerprint == FP


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("chat:5555", "starts with parley://"),
        ("parley://", "no host"),
        ("parley://chat:0", "port"),
        ("parley://chat:99999", "port"),
        ("parley://chat:http", "port"),
        ("parley://chat:\u00b2", "port"),  # a digit to isdigit(), not to int()
        ("parley://[::1", "closing ]"),
        ("parley://[::1]x", "unexpected"),
        ("parley://user@chat", "only a host"),
        ("parley://chat/path", "only a host"),
        ("parley://chat#md5=abc", "sha256="),
        ("parley://chat#sha256=abc", "64 hex digits"),
        ("parley://bad host", "not a host name"),
        (f"parley://chat#sha256={FP}00", "64 hex digits"),
    ],
)
def test_bad_invites_say_what_is_wrong(line, words):
    with pytest.raises(InviteError, match=words):
        parse_invite(line)
