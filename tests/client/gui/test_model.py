# client/gui/model.py: conversations, unread counts, de-duplication, the
# divider and history merging, without any widget.

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from parley_chat.client.gui.model import (
    DIVIDER_TEXT,
    GROUP_SECONDS,
    SEARCH_KEY,
    ChatModel,
    Line,
    continues,
    dm_key,
    format_day,
    format_time,
    room_key,
)
from parley_chat.protocol import Message

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def msg(
    id_: int,
    text: str = "",
    *,
    sender: str | None = "bob",
    room: str | None = "#lobby",
    to: str | None = None,
    kind: str | None = None,
    seconds: int = 0,
) -> Message:
    ts = (T0 + timedelta(seconds=seconds or id_)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if kind is None:
        kind = "private" if to else ("system" if sender is None else "public")
    return Message(
        id=id_,
        ts=ts,
        kind=kind,
        text=text or f"m{id_}",
        from_=sender,
        room=None if to else room,
        to=to,
    )


def model() -> ChatModel:
    m = ChatModel("alice")
    m.ensure_room("#lobby")
    m.select(room_key("#lobby"))
    return m


def test_a_message_is_shown_once_per_conversation():
    m = model()
    assert m.add(msg(1)) is not None
    assert m.add(msg(1)) is None
    assert [ln.id for ln in m.conversations["#lobby"].lines] == [1]
    assert m.last_shown_id == 1


def test_private_messages_go_to_the_conversation_with_the_other_user():
    m = model()
    m.add(msg(1, "hi", sender="bob", to="alice"))
    m.add(msg(2, "yo", sender="alice", to="Bob"))
    conv = m.conversations[dm_key("bob")]
    assert [ln.text for ln in conv.lines] == ["hi", "yo"]
    assert conv.kind == "dm" and conv.lines[1].own


def test_unread_counts_skip_the_open_conversation_own_messages_and_notices():
    m = model()
    m.ensure_room("#dev")
    m.add(msg(1, room="#dev"))
    m.add(msg(2, room="#dev", sender="alice"))
    m.add(msg(3, "bob joined", room="#dev", sender=None))
    m.add(msg(4))  # the open conversation
    assert m.conversations["#dev"].unread == 1
    assert m.conversations["#lobby"].unread == 0
    assert m.attention() == 0  # no private message, no mention
    m.add(msg(5, "hi @alice", room="#dev"))
    assert m.conversations["#dev"].unread == 2
    assert m.attention() == 1 and m.attention({"#dev"}) == 0  # muted: not counted
    m.select("#dev")
    assert m.conversations["#dev"].unread == 0
    assert m.attention() == 0


def test_while_away_the_open_conversation_counts_unread_until_looked_back():
    m = model()
    m.away = True
    m.add(msg(1))  # the open conversation (#lobby)
    m.add(msg(2, "hey @alice"))
    assert m.conversations["#lobby"].unread == 2 and m.attention() == 1
    m.away = False
    assert m.looked_back()
    assert m.conversations["#lobby"].unread == 0 and m.attention() == 0
    assert not m.looked_back()


def test_a_fresh_logins_recent_history_is_not_unread_but_missed_messages_are():
    m = model()
    m.ensure_room("#dev")
    m.begin_replay(missed=False)
    m.add(msg(1, room="#dev"), replayed=True)
    m.end_replay()
    assert m.conversations["#dev"].unread == 0
    m.begin_replay(missed=True)
    m.add(msg(2, room="#dev"), replayed=True)
    m.end_replay()
    assert m.conversations["#dev"].unread == 1


def test_private_messages_and_mentions_notify():
    m = model()
    assert m.add(msg(1, "hello everyone")).notify is False
    assert m.add(msg(2, "ping @Alice, look")).notify is True
    assert m.add(msg(3, "malice aforethought")).notify is False  # not the word
    assert m.add(msg(4, "psst", to="alice")).notify is True
    assert m.add(msg(5, "alice wrote this", sender="alice")).notify is False
    assert m.add(msg(6, "alice joined", sender=None)).notify is False
    assert m.conversations["#lobby"].lines[1].mention


def test_divider_goes_before_the_first_missed_message_of_each_conversation():
    m = model()
    m.add(msg(1))
    m.begin_replay(missed=True)
    a = m.add(msg(2), replayed=True)
    b = m.add(msg(3), replayed=True)
    c = m.add(msg(4, to="alice"), replayed=True)
    m.end_replay()
    assert [ln.kind for ln in a.lines] == ["divider", "public"]
    assert [ln.kind for ln in b.lines] == ["public"]
    assert [ln.kind for ln in c.lines] == ["divider", "private"]
    # A later rejoin moves the divider: there is only ever one.
    m.begin_replay(missed=True)
    d = m.add(msg(5), replayed=True)
    assert d.rerender
    texts = [ln.text for ln in m.conversations["#lobby"].lines]
    assert texts.count(DIVIDER_TEXT) == 1
    assert texts.index(DIVIDER_TEXT) == texts.index("m5") - 1


def test_a_fresh_logins_recent_history_gets_no_divider():
    m = model()
    m.begin_replay(missed=False)
    added = m.add(msg(1), replayed=True)
    assert [ln.kind for ln in added.lines] == ["public"]


def test_history_pages_go_before_what_is_shown_without_duplicates():
    m = model()
    for i in (5, 6):
        m.add(msg(i))
    conv = m.conversations["#lobby"]
    assert conv.oldest_id == 5
    assert m.add_history("#lobby", [msg(3), msg(4), msg(5)], more=True) == 2
    assert [ln.id for ln in conv.lines] == [3, 4, 5, 6]
    assert conv.has_more
    # A page racing live messages (newer ids) is merged in order.
    assert m.add_history("#lobby", [msg(1), msg(7)], more=False) == 2
    assert [ln.id for ln in conv.lines] == [1, 3, 4, 5, 6, 7]
    assert not conv.has_more and not conv.loading


def test_search_results_form_their_own_conversation():
    m = model()
    conv = m.set_search("fox", [msg(9, "brown fox"), msg(8, "fox", to="alice")], more=False)
    assert conv.key == SEARCH_KEY
    assert conv.lines[0].kind == "heading" and "fox" in conv.lines[0].text
    assert [ln.where for ln in conv.lines[1:]] == ["#lobby", "bob \u2192 alice"]
    empty = m.set_search("zzz", [], more=False)
    assert empty.lines[-1].text == "No messages match."


def test_grouping_under_one_header():
    a = Line("public", "a", id=1, sender="bob", epoch=100.0)
    b = Line("public", "b", id=2, sender="bob", epoch=100.0 + GROUP_SECONDS)
    c = Line("public", "c", id=3, sender="bob", epoch=101.0 + 2 * GROUP_SECONDS)
    assert continues(a, b) and not continues(b, c)
    assert not continues(a, Line("public", "x", id=4, sender="carol", epoch=101.0))
    assert not continues(a, Line("private", "x", id=4, sender="bob", epoch=101.0))
    assert not continues(None, a)


def test_times_are_local():
    tz = timezone(timedelta(hours=2))
    epoch = T0.timestamp()
    assert format_time(epoch, tz) == "11:30"
    assert format_day(epoch, epoch, tz) == "Today"
    assert format_day(epoch, epoch + 86400, tz) == "Yesterday"
    assert format_day(epoch, epoch + 5 * 86400, tz) == "Tuesday 24 November"


def test_leaving_the_open_room_opens_the_lobby():
    m = model()
    m.ensure_room("#dev")
    m.select("#dev")
    m.remove("#dev")
    assert m.current == "#lobby" and "#dev" not in m.conversations


def test_an_error_the_line_above_already_says_is_not_said_again():
    m = model()
    m.note("Not sent: no user named bob", "error")
    assert m.note("no user named bob", "error").lines == ()  # the server's word for it
    m.note("bob left", "notice")
    assert m.note("no user named bob", "error").lines  # not right after it: said
    assert m.note("no user named bob", "notice").lines  # a notice is never held back
    texts = [ln.text for ln in m.conversations["#lobby"].lines]
    said = "no user named bob"
    assert texts == ["Not sent: no user named bob", "bob left", said, said]
