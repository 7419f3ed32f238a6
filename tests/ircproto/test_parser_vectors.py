"""ircproto's tokenizer and formatter against the public irc-parser-tests vectors
(ircdocs/parser-tests, CC0, installed as the development dependency irc-parser-tests)."""

from __future__ import annotations

from typing import Any

import pytest

from parley_chat.ircproto import Message, format_message, parse

parser_data = pytest.importorskip("parser_tests.data")

SPLIT: list[dict[str, Any]] = parser_data.msg_split["tests"]
JOIN: list[dict[str, Any]] = parser_data.msg_join["tests"]


@pytest.mark.parametrize("case", SPLIT, ids=[c["input"][:40] for c in SPLIT])
def test_split(case: dict[str, Any]) -> None:
    atoms = case["atoms"]
    msg = parse(case["input"])
    assert msg.command == atoms["verb"].upper()
    assert msg.source == atoms.get("source")
    assert list(msg.params) == atoms.get("params", [])
    assert msg.tags == {k: (v or "") for k, v in (atoms.get("tags") or {}).items()}


def _message(atoms: dict[str, Any]) -> Message:
    tags = {k: (v if v is not None else "") for k, v in (atoms.get("tags") or {}).items()}
    return Message(atoms["verb"], tuple(atoms.get("params", [])), atoms.get("source"), tags)


@pytest.mark.parametrize("case", JOIN, ids=[c.get("desc", "")[:40] for c in JOIN])
def test_join(case: dict[str, Any]) -> None:
    line = format_message(_message(case["atoms"]))
    if line in case["matches"]:
        return
    # Tag order is free: compare the parsed form with the first expected line.
    assert parse(line) == parse(case["matches"][0])
