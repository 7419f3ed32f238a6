"""The desktop client's state without any widget: the
conversations (rooms, private conversations, search results), their lines,
unread counts, who is online, de-duplication, the "new since you left"
divider and the history paging state. Pure: testable without a display.

Rules this module keeps:
1. A message is shown at most once per conversation: every conversation keeps
   the ids it holds, and anything already there is dropped (live, replay,
   history pages that overlap).
2. The divider goes right before the first message a "missed" replay brings
   into a conversation (a rejoin, a reconnect, a restart with a stored
   last_seen); there is at most one divider per conversation.
3. The last message id shown (live or replayed, never history or search) is
   tracked here, so the app can persist exactly what the user has seen.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from parley_chat.protocol import DEFAULT_ROOM, Message, fold, parse_ts
from parley_chat.protocol.vocab import ConversationKind, MessageKind

#: The key of the search results pseudo-conversation.
SEARCH_KEY = "?search"

#: Consecutive messages from one sender within this many seconds are grouped
#: under one header (nick and time), as chat apps do.
GROUP_SECONDS = 5 * 60

#: Lines kept per conversation; past it the oldest go (history can bring them back).
MAX_LINES = 10_000
_TRIM_TO = 8_000

DIVIDER_TEXT = "new since you left"


#: Explicit direction controls (UAX #9): embeddings and overrides U+202A-U+202E,
#: isolates U+2066-U+2069, and the line/paragraph separators U+2028/U+2029.
_DIRECTION_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def display_text(text: str) -> str:
    """*text* as the chat view draws it: direction controls shown as codes, e.g. `<U+202E>`.

    Tk 8.6 draws text in logical order (no bidi algorithm: a U+202E moves
    nothing there, and isolates come out as boxes), so today nothing a message
    holds can move a nick or a time. Showing the controls as codes keeps it so
    under a renderer that does reorder, shows the reader an override that is
    there to disguise text, and keeps the controls out of what a user copies
    into other programs (which may obey them). Marks (LRM, RLM, ALM) and
    zero-width characters stay: they are invisible and reorder nothing outside
    their own text, and emoji and Persian need ZWJ/ZWNJ. The terminal client
    keeps paired isolates instead (docs/cli.md): bidi terminals honour them.
    """
    return _DIRECTION_CONTROLS.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def room_key(room: str) -> str:
    """The conversation key of a room."""
    return fold(room)


def dm_key(nick: str) -> str:
    """The conversation key of the private conversation with *nick*."""
    return "@" + fold(nick)


@dataclass(frozen=True, slots=True)
class Line:
    """One entry in a conversation: a message, a notice, or the divider.

    `kind` is a message kind (public, private, system), a local one (notice,
    error), or "divider". `epoch` is the server time as a Unix timestamp (0 for
    local lines); `where` names the conversation on search results.
    """

    kind: str
    text: str
    id: int | None = None
    sender: str | None = None
    epoch: float = 0.0
    own: bool = False
    mention: bool = False
    where: str | None = None
    hits: tuple[str, ...] = ()  # search words to highlight (search results only)
    edited: bool = False  # its author edited it (moderation): shown as "(edited)"
    # End-to-end encrypted (a padlock); a private line without it went unencrypted.
    secure: bool = False
    unreadable: str | None = None  # why an encrypted message cannot be read here

    @property
    def is_message(self) -> bool:
        """True for lines that came from the server (they have an id)."""
        return self.id is not None


def continues(prev: Line | None, line: Line) -> bool:
    """True when *line* belongs under *prev*'s header: same sender and kind,
    close in time, and both ordinary messages."""
    return (
        prev is not None
        and prev.is_message
        and line.is_message
        and line.kind in (MessageKind.PUBLIC, MessageKind.PRIVATE)
        and prev.kind == line.kind
        and prev.sender is not None
        and prev.sender == line.sender
        and prev.where == line.where
        and 0 <= line.epoch - prev.epoch <= GROUP_SECONDS
    )


def local_time(epoch: float, tz: tzinfo | None = None) -> datetime:
    """The local (or *tz*) time of a Unix timestamp."""
    return datetime.fromtimestamp(epoch, tz) if tz is not None else datetime.fromtimestamp(epoch)


def locale_uses_12_hour() -> bool:
    """True when the user's locale writes times with AM/PM (en_US), False for 24-hour
    clocks (de_DE, en_GB, C). Reads LC_TIME as the environment sets it."""
    import locale

    try:
        saved = locale.setlocale(locale.LC_TIME)
        try:
            locale.setlocale(locale.LC_TIME, "")
            fmt = locale.nl_langinfo(locale.T_FMT)
            ampm = locale.nl_langinfo(locale.T_FMT_AMPM)
        finally:
            locale.setlocale(locale.LC_TIME, saved)
    except (locale.Error, AttributeError, ValueError):
        return False  # no such locale, or no nl_langinfo (Windows): 24-hour
    return "%p" in fmt or "%r" in fmt or ("%I" in fmt) or (fmt == "" and "%p" in ampm)


#: The clock the chat shows times in: None means "ask the locale" (set once, at first use).
_TWELVE_HOUR: bool | None = None


def set_clock(twelve_hour: bool | None) -> None:
    """Show times on a 12-hour (True) or 24-hour (False) clock; None: as the locale says."""
    global _TWELVE_HOUR
    _TWELVE_HOUR = twelve_hour


def format_time(epoch: float, tz: tzinfo | None = None, twelve_hour: bool | None = None) -> str:
    """Hours and minutes in local time, on the locale's clock: 09:30 or 9:30 AM."""
    global _TWELVE_HOUR
    if twelve_hour is None:
        if _TWELVE_HOUR is None:
            _TWELVE_HOUR = locale_uses_12_hour()
        twelve_hour = _TWELVE_HOUR
    t = local_time(epoch, tz)
    if twelve_hour:
        return f"{t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"
    return t.strftime("%H:%M")


def format_day(epoch: float, now: float, tz: tzinfo | None = None) -> str:
    """The day heading for *epoch*: Today, Yesterday, or e.g. Monday 23 November."""
    day = local_time(epoch, tz).date()
    today = local_time(now, tz).date()
    delta = (today - day).days
    if delta == 0:
        return "Today"
    if delta == 1:
        return "Yesterday"
    text = f"{day:%A} {day.day} {day:%B}"
    return text if day.year == today.year else f"{text} {day.year}"


@dataclass(slots=True)
class Conversation:
    """A room, a private conversation, or the search results."""

    key: str
    name: str  # "#lobby", the other nick, or "Search"
    kind: str  # "room", "dm" or "search"
    lines: list[Line] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)
    unread: int = 0
    mentioned: bool = False
    has_more: bool = True  # older history may exist on the server
    loading: bool = False  # a history page is on its way
    online: tuple[str, ...] = ()
    read: int = 0  # the server's read marker: the user has read up to this id
    counted_to: int = 0  # ids up to this are in the server's unread count already
    # The latest message (as the server listed it, then as messages arrive),
    # for the sidebar's one-line hint: its text, who sent it ("you" for the
    # user), and its id (an older one never replaces it).
    preview: str = ""
    preview_from: str = ""
    preview_id: int = 0

    @property
    def newest_id(self) -> int | None:
        """The largest message id shown."""
        return max(self.ids) if self.ids else None

    @property
    def oldest_id(self) -> int | None:
        """The smallest message id shown, the `before` of the next history page."""
        return min(self.ids) if self.ids else None

    @property
    def title(self) -> str:
        """What the sidebar and the header call it."""
        return self.name


@dataclass(frozen=True, slots=True)
class Added:
    """What one incoming message changed. `lines` were appended to conversation
    `key` (the divider, then the message); `notify`: a private message or a
    mention from someone else; `rerender`: lines already shown changed (an
    older divider was removed, or the oldest lines were trimmed), so redraw."""

    key: str
    lines: tuple[Line, ...]
    notify: bool
    rerender: bool = False


class ChatModel:
    """All conversations of one logged-in user, and which one is open."""

    def __init__(self, me: str = "") -> None:
        self.me = me
        self.conversations: dict[str, Conversation] = {}
        self.current: str = room_key(DEFAULT_ROOM)
        self.last_shown_id: int | None = None
        self.found: dict[int, Message] = {}  # the search results, by id
        #: The window is not being looked at (unfocused): messages in the open
        #: conversation count as unread too, until looked_back().
        self.away = False
        self._mention_re: re.Pattern[str] | None = None
        self._replay_missed = False  # a "missed" replay batch is open
        self._divided: set[str] = set()  # conversations that got a divider in it
        # Messages that arrived end-to-end encrypted: id -> why unreadable (None: read).
        self._secure: dict[int, str | None] = {}
        self.set_me(me)

    # --- identity and conversations -------------------------------------------------

    def set_me(self, nick: str) -> None:
        """The user's nick (the account's spelling after login)."""
        self.me = nick
        self._mention_re = (
            re.compile(rf"(?<![\w-]){re.escape(nick)}(?![\w-])", re.IGNORECASE) if nick else None
        )

    def is_me(self, nick: str | None) -> bool:
        """True if *nick* is this user."""
        return nick is not None and bool(self.me) and fold(nick) == fold(self.me)

    def mentions_me(self, text: str) -> bool:
        """True if *text* names the user's nick as a word."""
        return self._mention_re is not None and self._mention_re.search(text) is not None

    def ensure_room(self, room: str) -> Conversation:
        """The conversation of *room*, created if new."""
        key = room_key(room)
        conv = self.conversations.get(key)
        if conv is None:
            conv = self.conversations[key] = Conversation(key, room, "room")
        return conv

    def ensure_dm(self, nick: str) -> Conversation:
        """The private conversation with *nick*, created if new."""
        key = dm_key(nick)
        conv = self.conversations.get(key)
        if conv is None:
            conv = self.conversations[key] = Conversation(key, nick, "dm")
        return conv

    def remove(self, key: str) -> None:
        """Forget a conversation (after leaving a room); the lobby opens if it was open."""
        self.conversations.pop(key, None)
        if self.current == key:
            self.current = room_key(DEFAULT_ROOM)

    def select(self, key: str) -> Conversation:
        """Open conversation *key*: it becomes current and its unread count resets."""
        conv = self.conversations[key]
        self.current = key
        conv.unread = 0
        conv.mentioned = False
        return conv

    @property
    def current_conversation(self) -> Conversation | None:
        """The open conversation, if it exists."""
        return self.conversations.get(self.current)

    def rooms(self) -> list[Conversation]:
        """The room conversations, lobby first, then by name."""
        rooms = [c for c in self.conversations.values() if c.kind == "room"]
        return sorted(rooms, key=lambda c: (c.key != room_key(DEFAULT_ROOM), c.key))

    def dms(self) -> list[Conversation]:
        """The private conversations, by nick."""
        return sorted(
            (c for c in self.conversations.values() if c.kind == "dm"), key=lambda c: c.key
        )

    def key_of(self, m: Message) -> str:
        """The conversation a message belongs to."""
        if m.room is not None:
            return room_key(m.room)
        other = m.to if self.is_me(m.from_) else m.from_
        return dm_key(other or "")

    def attention(self, muted: set[str] | frozenset[str] = frozenset()) -> int:
        """How many conversations (not *muted*) hold unread private messages or
        mentions: the window title's count. It comes from the conversations'
        own unread counts, the one count the client keeps."""
        return sum(
            1
            for k, c in self.conversations.items()
            if c.unread > 0 and c.mentioned and k not in muted
        )

    def looked_back(self) -> bool:
        """The user is looking at the window again: the open conversation is read.
        True when that changed its count."""
        conv = self.current_conversation
        if conv is None or (conv.unread == 0 and not conv.mentioned):
            return False
        conv.unread = 0
        conv.mentioned = False
        return True

    # --- incoming messages --------------------------------------------------------------

    def begin_replay(self, missed: bool) -> None:
        """A replay batch opens. *missed*: it holds what was missed since last_seen
        (so a divider goes before it), rather than a fresh login's recent history."""
        self._replay_missed = missed
        self._divided = set()

    def end_replay(self) -> None:
        """The replay batch closed."""
        self._replay_missed = False
        self._divided = set()

    def mark_secure(self, message_id: int, unreadable: str | None = None) -> None:
        """Message *message_id* arrived end-to-end encrypted (and, with *unreadable*,
        could not be decrypted here, for that reason): its line gets the padlock."""
        if unreadable is None or self._secure.get(message_id, "") is not None:
            self._secure[message_id] = unreadable

    def is_secure(self, message_id: int) -> bool:
        """True when message *message_id* arrived end-to-end encrypted."""
        return message_id in self._secure

    def forget_private(self) -> None:
        """Drop the messages of every private conversation (their history is fetched
        again; local notes stay): after this device got its keys, what was
        unreadable is not any more."""
        for conv in self.conversations.values():
            if conv.kind != "dm":
                continue
            self._secure = {i: r for i, r in self._secure.items() if i not in conv.ids}
            conv.lines = [ln for ln in conv.lines if ln.id is None and ln.kind != "divider"]
            conv.ids = set()
            conv.has_more = True
            conv.loading = False

    def line_of(self, m: Message, where: str | None = None) -> Line:
        """The line showing message *m*."""
        own = self.is_me(m.from_)
        return Line(
            kind=m.kind,
            text=m.text,
            id=m.id,
            sender=m.from_,
            epoch=parse_ts(m.ts).timestamp(),
            own=own,
            mention=not own and m.kind != "system" and self.mentions_me(m.text),
            where=where,
            edited=m.edited is not None,
            secure=m.id in self._secure,
            unreadable=self._secure.get(m.id),
        )

    def add(self, m: Message, *, replayed: bool = False) -> Added | None:
        """A live or replayed message arrives. Returns what changed, or None when
        it was already shown."""
        key = self.key_of(m)
        if m.room is not None:
            conv = self.ensure_room(m.room)
        else:
            conv = self.ensure_dm((m.to or "?") if self.is_me(m.from_) else (m.from_ or "?"))
        if self.last_shown_id is None or m.id > self.last_shown_id:
            self.last_shown_id = m.id
        if m.id in conv.ids:
            return None
        line = self.line_of(m)
        lines: list[Line] = []
        moved = False
        if replayed and self._replay_missed and key not in self._divided:
            self._divided.add(key)
            moved = self._drop_divider(conv)
            divider = Line(kind="divider", text=DIVIDER_TEXT, epoch=line.epoch)
            lines.append(divider)
        lines.append(line)
        conv.lines.extend(lines)
        conv.ids.add(m.id)
        self._set_preview(conv, m)
        counts = m.kind != MessageKind.SYSTEM and not line.own
        # A fresh login's recent history is not news: only live and missed
        # messages make a conversation unread, and only those the server's own
        # count (at login) did not include, past the read marker.
        unread = (
            counts
            and (not replayed or self._replay_missed)
            and m.id > conv.counted_to
            and m.id > conv.read
        )
        if (key != self.current or self.away) and unread:
            conv.unread += 1
            conv.mentioned = conv.mentioned or line.mention or m.kind == MessageKind.PRIVATE
        trimmed = self._trim(conv)
        notify = counts and (m.kind == MessageKind.PRIVATE or line.mention)
        return Added(key, tuple(lines), notify, moved or trimmed)

    def add_history(self, key: str, messages: list[Message], more: bool) -> int:
        """A history page (oldest first) for conversation *key* arrived: put the
        new ones before what is shown. Returns how many were new."""
        conv = self.conversations.get(key)
        if conv is None:
            return 0
        conv.loading = False
        conv.has_more = more
        fresh = [m for m in messages if m.id not in conv.ids]
        oldest = conv.oldest_id
        older = [m for m in fresh if oldest is None or m.id < oldest]
        if len(older) != len(fresh):
            # Not older than what is shown (a page racing live messages): merge by id.
            merged = [ln for ln in conv.lines if ln.id is not None] + [
                self.line_of(m) for m in fresh
            ]
            merged.sort(key=lambda ln: ln.id or 0)
            conv.lines = merged
        else:
            conv.lines[:0] = [self.line_of(m) for m in older]
        conv.ids.update(m.id for m in fresh)
        return len(fresh)

    def set_search(self, words: str, messages: list[Message], more: bool) -> Conversation:
        """Show search results (newest first, as the server sends them)."""
        conv = self.conversations.get(SEARCH_KEY)
        if conv is None:
            conv = self.conversations[SEARCH_KEY] = Conversation(SEARCH_KEY, "Search", "search")
        found = f"{len(messages)}{'+' if more else ''} found"
        conv.lines = [
            Line(kind="heading", text=f"Search results for \u201c{words}\u201d \u00b7 {found}")
        ]
        hits = tuple(w for w in words.split() if w)
        self.found = {m.id: m for m in messages}
        for m in messages:
            conv.lines.append(dataclasses.replace(self.line_of(m, where=self.where(m)), hits=hits))
        if not messages:
            conv.lines.append(Line(kind="notice", text="No messages match."))
        conv.ids = {m.id for m in messages}
        conv.has_more = False
        return conv

    def where(self, m: Message) -> str:
        """Where a message was posted, for search results: #room, or "alice → bob"."""
        if m.room is not None:
            return m.room
        return f"{m.from_} \u2192 {m.to}"

    def note(self, text: str, kind: str = "notice", key: str | None = None) -> Added | None:
        """A local notice (help, a refused command) in conversation *key* (default: the open one).

        An error the line just above already says is not said again (nothing
        is added): "Not sent: no user named bob", then the server's own "no
        user named bob" for the same mistake, would read as two failures."""
        key = key or self.current
        conv = self.conversations.get(key)
        if conv is None:
            return None
        last = conv.lines[-1] if conv.lines else None
        if kind == "error" and last is not None and last.kind == "error" and text in last.text:
            return Added(key, (), False)
        line = Line(kind=kind, text=text)
        conv.lines.append(line)
        return Added(key, (line,), False, self._trim(conv))

    def apply_listing(self, items: Sequence[Any]) -> None:
        """The server's list of this user's conversations (ConversationSummary items):
        every room and private peer gets its conversation, with the server's
        unread count and read marker, so nothing vanishes after a restart."""
        for item in items:
            if item.kind == ConversationKind.ROOM:
                conv = self.ensure_room(item.name)
            elif item.kind == ConversationKind.PRIVATE:
                conv = self.ensure_dm(item.name)
            else:
                continue
            conv.read = max(conv.read, int(item.read))
            last = item.last
            if last is not None:
                conv.counted_to = max(conv.counted_to, last.id)
                self._set_preview(conv, last)
            if conv.key != self.current:
                conv.unread = int(item.unread)
                # Private messages are always worth a red badge; for rooms the
                # count alone does not say whether one named the user.
                conv.mentioned = conv.kind == "dm" and conv.unread > 0

    def read_moved(self, kind: str, name: str, message_id: int) -> Conversation | None:
        """The user read up to *message_id* elsewhere (another device): fewer unread."""
        key = room_key(name) if kind == ConversationKind.ROOM else dm_key(name)
        conv = self.conversations.get(key)
        if conv is None or message_id <= conv.read:
            return None
        conv.read = message_id
        newest = conv.newest_id
        if newest is None or message_id >= max(newest, conv.counted_to):
            conv.unread = 0
            conv.mentioned = False
        else:
            left = sum(
                1
                for ln in conv.lines
                if ln.id is not None
                and ln.id > message_id
                and not ln.own
                and ln.kind != MessageKind.SYSTEM
            )
            conv.unread = min(conv.unread, left)
            conv.mentioned = conv.mentioned and conv.unread > 0
        return conv

    def set_online(self, room: str, online: tuple[str, ...]) -> bool:
        """Who is online in *room*; True if it changed (and the room is known)."""
        conv = self.conversations.get(room_key(room))
        if conv is None or conv.online == online:
            return False
        conv.online = online
        return True

    # --- moderation ----------------------------------------------------------------------

    def remove_message(self, message_id: int) -> bool:
        """A message was deleted: take its line out of every conversation (its id stays
        known, so a stale copy cannot bring it back). True if anything was shown."""
        changed = False
        for conv in self.conversations.values():
            if message_id in conv.ids:
                before = len(conv.lines)
                conv.lines = [ln for ln in conv.lines if ln.id != message_id]
                changed = changed or len(conv.lines) != before
        self.found.pop(message_id, None)
        return changed

    def edit_message(self, message_id: int, text: str) -> bool:
        """A message was edited: show its new text, marked edited. True if it is shown."""
        changed = False
        for conv in self.conversations.values():
            if message_id not in conv.ids:
                continue
            for i, ln in enumerate(conv.lines):
                if ln.id == message_id:
                    conv.lines[i] = dataclasses.replace(
                        ln, text=text, edited=True, mention=not ln.own and self.mentions_me(text)
                    )
                    changed = True
        return changed

    def message_text(self, message_id: int) -> str | None:
        """The text shown for message *message_id*, or None."""
        for conv in self.conversations.values():
            if message_id in conv.ids:
                for ln in conv.lines:
                    if ln.id == message_id:
                        return ln.text
        return None

    def message_line(self, message_id: int) -> tuple[Conversation, Line] | None:
        """The conversation and line of a shown message, or None."""
        for conv in self.conversations.values():
            if message_id in conv.ids:
                for ln in conv.lines:
                    if ln.id == message_id:
                        return conv, ln
        return None

    # --- helpers -------------------------------------------------------------------------

    def _set_preview(self, conv: Conversation, m: Message) -> bool:
        """Make *m* the conversation's sidebar hint if it is the newest message
        (joins and leaves are no news). True if the hint changed."""
        if m.kind == MessageKind.SYSTEM or m.id < conv.preview_id:
            return False
        who = "you" if self.is_me(m.from_) else (m.from_ or "")
        changed = (conv.preview, conv.preview_from) != (m.text, who)
        conv.preview, conv.preview_from, conv.preview_id = m.text, who, m.id
        return changed

    @staticmethod
    def _drop_divider(conv: Conversation) -> bool:
        before = len(conv.lines)
        conv.lines = [ln for ln in conv.lines if ln.kind != "divider"]
        return len(conv.lines) != before

    @staticmethod
    def _trim(conv: Conversation) -> bool:
        if len(conv.lines) <= MAX_LINES:
            return False
        dropped = conv.lines[: len(conv.lines) - _TRIM_TO]
        del conv.lines[: len(conv.lines) - _TRIM_TO]
        conv.ids.difference_update(ln.id for ln in dropped if ln.id is not None)
        conv.has_more = True
        return True
