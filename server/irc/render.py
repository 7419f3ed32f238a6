"""Parley events as IRC lines: what the hub delivers (encoded parley frames) is
rendered per IRC connection, after its capabilities and the channels it shows.

The hub encodes each event once for every recipient (server/hub.py); an IRC
connection reads those bytes back and writes the IRC equivalent:

- `message`: PRIVMSG lines (one per line of a multi-line message, long lines cut
  at a UTF-8 boundary), `time` and `msgid` tags when negotiated; the sender's own
  copy only with echo-message; an end-to-end encrypted private message as a
  NOTICE saying so. System messages that IRC has verbs for (topic, kick, ban,
  moderator) become TOPIC, KICK and MODE; join and leave notices are dropped
  (the presence deltas are the JOIN and PART); the rest are server NOTICEs.
- `presence`: JOIN, PART, or QUIT when the user is no longer online at all.
- `notice` and `error` frames: server NOTICEs.
Everything else (read markers, key exchange, full member lists) has no IRC form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from parley_chat.ircproto import Message, action
from parley_chat.protocol import EMOTE_PREFIX, is_emote

#: PRIVMSG text is cut into pieces of at most this many UTF-8 bytes, so that a
#: line with its tags' body, source and target stays inside 512 bytes.
TEXT_BYTES = 350
E2E_NOTICE = (
    "[an end-to-end encrypted private message: read it in a parley client, IRC cannot decrypt it]"
)

_JOINED_LEFT = re.compile(r"\S+ (joined|left) #\S+")
_TOPIC_SET = re.compile(r"(\S+) set the topic of (#\S+): (.*)", re.S)
_TOPIC_CLEARED = re.compile(r"(\S+) cleared the topic of (#\S+)")
_PUT_OUT = re.compile(r"(\S+) was (kicked|banned) from (#\S+) by ([A-Za-z0-9_-]+)(.*)", re.S)
_MADE_MOD = re.compile(r"(\S+) made (\S+) a moderator of (#\S+)")
_TOOK_MOD = re.compile(r"(\S+) took the moderator role in (#\S+) from (\S+)")


def split_text(text: str, limit: int = TEXT_BYTES) -> list[str]:
    """*text* as IRC message texts: one per line, each at most *limit* UTF-8 bytes."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        data = line.encode("utf-8")
        while len(data) > limit:
            cut = limit
            while cut > 0 and (data[cut] & 0xC0) == 0x80:  # not inside a character
                cut -= 1
            out.append(data[:cut].decode("utf-8"))
            data = data[cut:]
        out.append(data.decode("utf-8"))
    while len(out) > 1 and out[-1] == "":
        out.pop()
    return out or [""]


def _cut(data: bytes, limit: int) -> str:
    """The longest prefix of UTF-8 *data* of at most *limit* bytes, as text."""
    cut = min(limit, len(data))
    while 0 < cut < len(data) and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut].decode("utf-8")


@dataclass
class View:
    """What rendering needs to know of one IRC connection (its own state)."""

    nick: str
    server: str
    has_cap: Callable[[str], bool]
    shows: Callable[[str], str | None]  # the channel's name if this connection shows it
    show: Callable[[str], None]
    hide: Callable[[str], None]
    is_echo: Callable[[str | None], bool]  # a ref this connection's own PRIVMSG carried
    is_online: Callable[[str], bool]
    mask: Callable[[str], str]
    is_notice: Callable[[object], bool]  # a message id sent as an IRC NOTICE
    part_reason: Callable[[str, str], str | None]  # (room, nick) -> why they left
    quit_reason: Callable[[str], str]  # nick -> the QUIT message


class Renderer:
    """Turns encoded parley frames into IRC messages for one connection."""

    def __init__(self, view: View) -> None:
        """Rendering for the connection that *view* describes."""
        self.v = view
        self._gone: dict[str, tuple[str, ...]] = {}  # (room key, nick key) put out already
        self._quit: set[str] = set()  # nicks told as QUIT, until they come back
        #: The largest message id rendered (what this device has seen).
        self.last_id = 0

    def render(self, data: bytes) -> list[tuple[Message, bool]]:
        """IRC messages for the frames in *data*, each with whether it is an own echo."""
        out: list[tuple[Message, bool]] = []
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                wire = json.loads(raw)
            except ValueError:
                continue
            if isinstance(wire, dict):
                out.extend(self.frame(wire))
        return out

    def frame(self, w: dict[str, object]) -> list[tuple[Message, bool]]:
        """IRC messages for one parley frame."""
        kind = w.get("type")
        if kind == "message":
            return self.message(w)
        if kind == "presence":
            return [(m, False) for m in self.presence(w)]
        if kind in ("notice", "error"):
            if w.get("kind") in ("kick", "ban"):
                return []  # the KICK said it
            text = str(w.get("text") or w.get("message") or "")
            return [(self._server_notice(self.v.nick, text), False)]
        return []

    def tags(self, w: dict[str, object], msgid: str | None) -> dict[str, str]:
        """The tags a delivered message gets on this connection."""
        tags: dict[str, str] = {}
        if self.v.has_cap("server-time") and isinstance(w.get("ts"), str):
            tags["time"] = str(w["ts"])
        if msgid is not None and self.v.has_cap("message-tags"):
            tags["msgid"] = msgid
        return tags

    def _server_notice(self, target: str, text: str) -> Message:
        return Message("NOTICE", (target, text or " "), self.v.server)

    def message(self, w: dict[str, object], *, replay: bool = False) -> list[tuple[Message, bool]]:
        """PRIVMSG (or NOTICE, TOPIC, KICK, MODE) lines of a `message` frame."""
        mid = w.get("id")
        if isinstance(mid, int) and mid > self.last_id:
            self.last_id = mid
        room = w.get("room")
        sender = w.get("from")
        text = str(w.get("text") or "")
        me = self.v.nick
        target: str
        if isinstance(room, str):
            shown = self.v.shows(room)
            if shown is None:
                return []
            target = shown
        else:
            to = w.get("to")
            if not isinstance(to, str):
                return []
            target = to if isinstance(sender, str) and sender.lower() == me.lower() else me
        if w.get("kind") == "system" or not isinstance(sender, str):
            return [(m, False) for m in self.system(w, target, text)]
        own = sender.lower() == me.lower()
        echo = (
            own
            and not replay
            and self.v.is_echo(ref if isinstance(ref := w.get("ref"), str) else None)
        )
        to_self = (
            room is None and own and str(w.get("to") or "").lower() == me.lower()
        )  # a private message to oneself: an echo, and a message received
        if echo and not self.v.has_cap("echo-message"):
            marker = [(Message("", ()), True)]  # the echo's place, for a label
            if to_self:
                return marker + [(m, False) for m, _ in self._lines(w, sender, target, False)]
            return marker
        lines = self._lines(w, sender, target, echo)
        if echo and to_self:
            lines += [(m, False) for m, _ in self._lines(w, sender, target, False)]
        return lines

    def _lines(
        self, w: dict[str, object], sender: str, target: str, echo: bool
    ) -> list[tuple[Message, bool]]:
        mid = w.get("id")
        text = str(w.get("text") or "")
        source = self.v.mask(sender)
        if w.get("e2e"):
            tags = self.tags(w, str(mid))
            return [(Message("NOTICE", (target, E2E_NOTICE), source, tags), echo)]
        command = "NOTICE" if self.v.is_notice(mid) else "PRIVMSG"
        # What fits in one 512-byte line after this source and target.
        room_left = 510 - len(f":{source} {command} {target} :".encode())
        if is_emote(text) and "\n" not in text and command == "PRIVMSG":
            emote = action(text.removeprefix(EMOTE_PREFIX))  # "* bob waves" in IRC clients
            if len(emote.encode()) <= min(TEXT_BYTES, room_left):  # one line: never cut in two
                text = emote
        data = text.encode("utf-8")
        if "\n" not in text and room_left < len(data) <= 510 - len(f"{command} {target} "):
            # A text that fit in the sender's IRC line: cut to fit, as IRC servers do.
            pieces = [_cut(data, room_left)]
        else:
            pieces = split_text(text, max(64, min(TEXT_BYTES, room_left)))
        out = []
        for i, piece in enumerate(pieces):
            msgid = str(mid) if i == 0 else f"{mid}-{i}"
            out.append(
                (Message(command, (target, piece or " "), source, self.tags(w, msgid)), echo)
            )
        return out

    def system(self, w: dict[str, object], target: str, text: str) -> list[Message]:
        """A system message: an IRC verb where there is one, else a server NOTICE."""
        tags = self.tags(w, str(w.get("id")))
        if _JOINED_LEFT.fullmatch(text):
            return []
        m = _TOPIC_SET.fullmatch(text) or _TOPIC_CLEARED.fullmatch(text)
        if m:
            topic = m.group(3) if m.re is _TOPIC_SET else ""
            return [Message("TOPIC", (target, topic), self.v.mask(m.group(1)), tags)]
        m = _PUT_OUT.fullmatch(text)
        if m:
            nick, how, _room, by, rest = m.groups()
            reason = rest[2:] if rest.startswith(": ") else how
            self._gone[nick.lower()] = (target.lower(),)
            if nick.lower() == self.v.nick.lower():
                self.v.hide(target)
            return [Message("KICK", (target, nick, reason or how), self.v.mask(by), tags)]
        m = _MADE_MOD.fullmatch(text)
        if m:
            return [Message("MODE", (target, "+o", m.group(2)), self.v.mask(m.group(1)), tags)]
        m = _TOOK_MOD.fullmatch(text)
        if m:
            return [Message("MODE", (target, "-o", m.group(3)), self.v.mask(m.group(1)), tags)]
        return [
            Message("NOTICE", (target, piece or " "), self.v.server, tags)
            for piece in split_text(text)
        ]

    def presence(self, w: dict[str, object]) -> list[Message]:
        """JOIN, PART or QUIT for a presence delta (full lists have no IRC form here)."""
        room = w.get("room")
        if not isinstance(room, str):
            return []
        joined, left = w.get("joined"), w.get("left")
        me = self.v.nick.lower()
        if isinstance(joined, str):
            if joined.lower() == me:
                if self.v.shows(room) is not None:
                    return []
                self.v.show(room)
                return [Message("JOIN", (room,), self.v.mask(joined))]
            self._quit.discard(joined.lower())
            shown = self.v.shows(room)
            return [Message("JOIN", (shown,), self.v.mask(joined))] if shown else []
        if isinstance(left, str):
            shown = self.v.shows(room)
            if shown is None:
                return []
            if left.lower() == me:
                self.v.hide(room)
                return [Message("PART", (shown,), self.v.mask(left))]
            if self._gone.get(left.lower()) == (shown.lower(),):
                del self._gone[left.lower()]
                return []  # the KICK said it
            if not self.v.is_online(left):
                if left.lower() in self._quit:
                    return []
                self._quit.add(left.lower())
                return [Message("QUIT", (self.v.quit_reason(left),), self.v.mask(left))]
            reason = self.v.part_reason(shown, left)
            params = (shown, reason) if reason else (shown,)
            return [Message("PART", params, self.v.mask(left))]
        return []
