"""ircproto's line decoder, CAP negotiation, ISUPPORT and SASL chunking."""

from __future__ import annotations

import base64

import pytest

from parley_chat.ircproto import (
    BadEncoding,
    CapNegotiation,
    ChunkAssembler,
    LineDecoder,
    Message,
    SaslError,
    TooLong,
    chunks,
    encode,
    escape_tag_value,
    isupport_lines,
    parse,
    parse_plain,
    unescape_tag_value,
)


def test_lines_crlf_lf_and_partial() -> None:
    d = LineDecoder()
    assert d.feed(b"PING a\r\nPI") == ["PING a"]
    assert d.feed(b"NG b\n\r\n") == ["PING b"]


def test_line_limit_512_with_crlf() -> None:
    d = LineDecoder()
    ok = b"PRIVMSG #a :" + b"x" * (510 - 12)
    assert d.feed(ok + b"\r\n") == [ok.decode()]
    assert d.feed(ok + b"xx\r\nPING z\r\n") == [TooLong(514), "PING z"]


def test_overlong_line_is_skipped_across_feeds() -> None:
    d = LineDecoder()
    assert d.feed(b"PRIVMSG #a :" + b"x" * 5000) == []
    out = d.feed(b"yyy\r\nPING ok\r\n")
    assert isinstance(out[0], TooLong) and out[0].size > 5000
    assert out[1:] == ["PING ok"]


def test_tags_get_their_own_8191_bytes() -> None:
    d = LineDecoder()
    tags = b"@+x=" + b"a" * 8000 + b" "
    body = b"PRIVMSG #a :" + b"b" * 400
    assert d.feed(tags + body + b"\r\n") == [(tags + body).decode()]  # server tag limit
    assert isinstance(d.feed(b"@+x=" + b"a" * 9000 + b" PING\r\n")[0], TooLong)


def test_bad_utf8_is_reported() -> None:
    assert LineDecoder().feed(b"PRIVMSG #a :\xff\xfe\r\n") == [BadEncoding(b"PRIVMSG #a :\xff\xfe")]


def test_tag_escaping_round_trip() -> None:
    value = "a; b\\c\r\nd"
    assert unescape_tag_value(escape_tag_value(value)) == value
    assert unescape_tag_value("x\\") == "x"
    assert unescape_tag_value("\\b") == "b"


def test_encode_adds_colon_and_crlf() -> None:
    msg = Message("PRIVMSG", ("#a", "hello world"), "n!u@h", {"msgid": "7"})
    assert encode(msg) == b"@msgid=7 :n!u@h PRIVMSG #a :hello world\r\n"
    assert parse(encode(msg)[:-2].decode()) == msg


def test_cap_302_values_and_atomic_req() -> None:
    caps = CapNegotiation({"sasl": "PLAIN", "server-time": ""})
    assert caps.ls("302") == [["LS", "sasl=PLAIN server-time"]]
    assert caps.req("sasl bogus") == ["NAK", "sasl bogus"]
    assert not caps.has("sasl")
    assert caps.req("sasl server-time") == ["ACK", "sasl server-time"]
    assert caps.has("server-time") and caps.negotiating
    assert caps.req("-server-time") == ["ACK", "-server-time"]
    assert not caps.has("server-time")
    caps.end()
    assert not caps.negotiating


def test_cap_ls_without_302_has_no_values_and_one_line() -> None:
    caps = CapNegotiation({f"cap{i:03}": "v" for i in range(100)})
    assert len(caps.ls(None)) == 1
    caps302 = CapNegotiation({f"cap{i:03}": "v" for i in range(100)})
    lines = caps302.ls("302")
    assert len(lines) > 1 and all(line[1] == "*" for line in lines[:-1])


def test_isupport_lines() -> None:
    lines = isupport_lines({f"T{i}": "" for i in range(13)} | {"NICKLEN": "24"})
    assert len(lines) == 2
    assert lines[1] == ["T12", "NICKLEN=24", "are supported by this server"]


def test_sasl_chunks_and_plus() -> None:
    assert chunks(b"") == ["+"]
    payload = b"x" * 300  # exactly 400 base64 bytes
    assert chunks(payload)[-1] == "+" and len(chunks(payload)[0]) == 400
    asm = ChunkAssembler()
    parts = chunks(b"\0alice\0" + b"p" * 600)
    results = [asm.feed(p) for p in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert parse_plain(results[-1] or b"") == ("", "alice", "p" * 600)


def test_sasl_rejects_bad_input() -> None:
    with pytest.raises(SaslError) as exc:
        ChunkAssembler().feed("a" * 401)
    assert exc.value.too_long
    with pytest.raises(SaslError):
        ChunkAssembler().feed("!!!")
    with pytest.raises(SaslError):
        parse_plain(base64.b64decode(base64.b64encode(b"onlyone")))


def test_client_tag_limit_4096() -> None:
    from parley_chat.ircproto import MAX_CLIENT_TAG_BYTES

    d = LineDecoder(max_tags=MAX_CLIENT_TAG_BYTES)
    at_limit = b"@+x=" + b"a" * (4096 - 5) + b" TAGMSG #a"
    assert d.feed(at_limit + b"\r\n") == [at_limit.decode()]
    assert isinstance(d.feed(b"@+x=" + b"a" * 4092 + b" TAGMSG #a\r\n")[0], TooLong)


def test_sendable_stars_what_cannot_be_a_middle_parameter_and_keeps_the_rest():
    from parley_chat.ircproto import Message, encode, sendable

    reply = Message("403", ("bea", "x y", "No such channel"), "srv")
    assert encode(sendable(reply)) == b":srv 403 bea * :No such channel\r\n"
    for bad in ("", ":x", "a b"):
        assert sendable(Message("401", ("bea", bad, "No such nick"))).params[1] == "*"
    fine = Message("403", ("bea", "#x", "trailing: may hold anything"))
    assert sendable(fine) is fine


def test_ctcp_actions_queries_and_formatting_codes():
    from parley_chat.ircproto import action, parse_ctcp, strip_formatting

    assert parse_ctcp("\x01ACTION waves\x01") == ("ACTION", "waves")
    assert parse_ctcp("\x01action waves") == ("ACTION", "waves")  # no closing delimiter
    assert parse_ctcp("\x01VERSION\x01") == ("VERSION", "")
    assert parse_ctcp("plain words") is None
    assert action("nods") == "\x01ACTION nods\x01"
    assert strip_formatting(
        "\x02b\x02 \x0304,01red\x03 \x0312blue \x1dit\x1d \x0f\x04ff0000hex"
    ) == ("b red blue it hex")
    assert (
        strip_formatting("10\x03 o'clock, 3,5 x") == "10 o'clock, 3,5 x"
    )  # digits after a bare \x03 only
