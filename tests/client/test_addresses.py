"""Tests of client/addresses.py: server lists as people type them (host:port,host2:port2)."""

from __future__ import annotations

import re

import pytest

from parley_chat.client.addresses import format_addresses, parse_addresses


def test_a_list_keeps_its_order_fills_default_ports_and_drops_repeats():
    got = parse_addresses(" a.lan:5556 , b.lan,[::1]:7000, a.lan:5556,10.0.0.2:1", 5555)
    assert got == [("a.lan", 5556), ("b.lan", 5555), ("::1", 7000), ("10.0.0.2", 1)]
    assert parse_addresses(format_addresses(got), 9) == got
    assert format_addresses(got) == "a.lan:5556,b.lan:5555,[::1]:7000,10.0.0.2:1"


def test_a_bare_ipv6_literal_takes_the_default_port():
    assert parse_addresses("::1", 5555) == [("::1", 5555)]
    assert parse_addresses("[fe80::1]", 5555) == [("fe80::1", 5555)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty server address"),
        ("a.lan,,b.lan", "empty server address"),
        ("a.lan:", "bad port"),
        ("a.lan:http", "bad port"),
        ("a.lan:\u00b2", "bad port"),  # a digit to isdigit(), not to int()
        ("a.lan:0", "bad port"),
        ("a.lan:65536", "bad port"),
        (":5555", "no host"),
        ("[::1", "no closing"),
        ("[::1]5555", "[v6]:port"),
        ("fe80::zz:1", "in brackets"),
    ],
)
def test_mistakes_are_refused_with_a_sentence(text, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_addresses(text, 5555)
