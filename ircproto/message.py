"""IRC messages: the tokenizer and the formatter, with IRCv3 tag escaping.

A line is ``[@tags] [:source] COMMAND [params...] [:trailing]``. Parsing follows the
modern IRC client protocol (modern.ircdocs.horse) and the IRCv3 message-tags
specification; the public irc-parser-tests vectors are the test oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_ESCAPES = {";": r"\:", " ": r"\s", "\\": "\\\\", "\r": r"\r", "\n": r"\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class ParseError(ValueError):
    """A line that is not an IRC message (empty, or no command)."""


def escape_tag_value(value: str) -> str:
    """Escape a tag value for the wire (``;`` space backslash CR LF)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def unescape_tag_value(raw: str) -> str:
    """Undo escape_tag_value; an unknown escape drops the backslash, a lone
    trailing backslash is dropped (the message-tags specification)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            i += 1
            if i < len(raw):
                out.append(_UNESCAPES.get(raw[i], raw[i]))
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message. *tags* values are unescaped; a tag without value has ''."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def with_tags(self, **extra: str) -> Message:
        """A copy with *extra* tags added (use a dict for names with dashes)."""
        return Message(self.command, self.params, self.source, {**self.tags, **extra})


def parse_tags(raw: str) -> dict[str, str]:
    """The tags of a ``@``-section (without the ``@``); later duplicates win."""
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        tags[key] = unescape_tag_value(value) if sep else ""
    return tags


def parse(line: str) -> Message:
    """Tokenize one line (without CR LF). Raises ParseError when there is no command."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        tags = parse_tags(raw)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    if not command:
        raise ParseError("no command")
    params: list[str] = []
    while rest:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return Message(command.upper(), tuple(params), source, tags)


def format_tags(tags: dict[str, str]) -> str:
    """The ``@``-section for *tags* (empty string when there are none)."""
    if not tags:
        return ""
    items = [f"{k}={escape_tag_value(v)}" if v != "" else k for k, v in tags.items()]
    return "@" + ";".join(items) + " "


def format_message(msg: Message) -> str:
    """The wire form of *msg*, without CR LF. The last parameter gets a ``:`` when
    it is empty, holds a space or starts with ``:``; others must not.

    Raises ValueError for a middle parameter that cannot be sent as one."""
    parts: list[str] = []
    if msg.source:
        parts.append(":" + msg.source)
    parts.append(msg.command)
    for i, param in enumerate(msg.params):
        last = i == len(msg.params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        else:
            if not param or " " in param or param.startswith(":"):
                raise ValueError(f"middle parameter {param!r} cannot be sent")
            parts.append(param)
    return format_tags(msg.tags) + " ".join(parts)


def _sendable_middle(param: str) -> bool:
    return bool(param) and " " not in param and not param.startswith(":")


def sendable(msg: Message) -> Message:
    """*msg* with each middle parameter that cannot be sent as one (empty, holding a
    space or starting with ``:``) replaced by ``*``, IRC's word for "none".

    For replies that echo a client's own words back: `JOIN :x y` names a
    channel no reply can repeat as it was given, yet the client still gets its
    403. The last parameter is left as it is (it can carry anything)."""
    middles = msg.params[:-1]
    if all(_sendable_middle(p) for p in middles):
        return msg
    fixed = tuple(p if _sendable_middle(p) else "*" for p in middles)
    return Message(msg.command, (*fixed, msg.params[-1]), msg.source, msg.tags)


def encode(msg: Message) -> bytes:
    """The UTF-8 bytes of *msg* with CR LF (CR and LF inside are replaced by spaces)."""
    text = format_message(msg)
    if "\r" in text or "\n" in text or "\0" in text:
        text = text.replace("\r", " ").replace("\n", " ").replace("\0", "")
    return text.encode("utf-8") + b"\r\n"
