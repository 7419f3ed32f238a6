# The chat view's text formatting: direction controls in a message (or a name a
# server sends) are drawn as codes, so they can never move a nick or a time.
# Pure functions: no window, no display.

from __future__ import annotations

from datetime import UTC, datetime

from parley_chat.client.gui.chat_view import segments
from parley_chat.client.gui.model import Line, display_text, format_time

RLO, PDF, LRI, PDI = "\u202e", "\u202c", "\u2066", "\u2069"
RLM, ZWJ, ZWNJ = "\u200f", "\u200d", "\u200c"
HEBREW = "\u05e9\u05dc\u05d5\u05dd"
EPOCH = datetime(2026, 11, 24, 9, 30, tzinfo=UTC).timestamp()


def test_every_explicit_direction_control_becomes_a_code():
    assert display_text(f"pay {RLO}gnp.exe{PDF}") == "pay <U+202E>gnp.exe<U+202C>"
    controls = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    shown = display_text(controls + "\u2028\u2029")
    assert shown == "".join(f"<U+{ord(c):04X}>" for c in controls + "\u2028\u2029")
    # Tk draws isolates as boxes, so even paired ones are shown as codes here.
    assert display_text(f"{LRI}x{PDI}") == "<U+2066>x<U+2069>"


def test_letters_marks_and_zero_width_characters_are_left_alone():
    text = f"{HEBREW} {RLM}(1) \U0001f468{ZWJ}\U0001f469 \u0645{ZWNJ}\u06cc plain, 12:30"
    assert display_text(text) == text


def _drawn(line: Line, prev: Line | None = None) -> list[tuple[str, tuple[str, ...]]]:
    # prev_epoch on the same day: no day heading, only the line itself.
    return segments(line, prev, prev_epoch=line.epoch or EPOCH, now=EPOCH)


def test_a_system_line_keeps_its_time_after_the_text():
    line = Line(kind="system", text=f"{RLO}tfel ecila", id=1, epoch=EPOCH)
    runs = _drawn(line)
    assert "".join(text for text, _ in runs[:-1]) == "\u2192 <U+202E>tfel ecila"
    time_run, tags = runs[-1]
    assert "ts" in tags and time_run.strip() == format_time(EPOCH) and RLO not in time_run


def test_message_header_and_body_never_carry_a_control():
    line = Line(
        kind="public",
        text=f"one {RLO}two\n{HEBREW}{PDI}",
        id=2,
        sender=f"bo{RLO}b",
        epoch=EPOCH,
        where=f"#a{LRI}",
    )
    runs = _drawn(line)
    texts = [text for text, _ in runs]
    assert texts[:3] == ["#a<U+2066>  ", "bo<U+202E>b", f"   {format_time(EPOCH)}\n"]
    assert "ts" in runs[2][1] and "nick" in runs[1][1]
    body = "".join(texts[3:])
    assert body.startswith("one <U+202E>two\n")
    assert not any(ch in text for text in texts for ch in (RLO, LRI, PDI))


def test_right_to_left_text_is_reordered_in_its_own_runs_only():
    from parley_chat.client.gui.richtext import visual

    hebrew_line = f"{HEBREW} 12:30 {RLM}"
    line = Line(kind="public", text=hebrew_line, id=3, sender="bob", epoch=EPOCH)
    runs = _drawn(line)
    # The header is untouched and first: the nick, then the time.
    assert [t for t, _ in runs[:2]] == ["bob", f"   {format_time(EPOCH)}\n"]
    body = [(t, tags) for t, tags in runs[2:] if t != "\n"]
    # The body is drawn in visual order: the Hebrew letters reversed.
    assert "".join(t for t, _ in body) == visual(hebrew_line)
    assert HEBREW[::-1] in "".join(t for t, _ in body)
    assert all("rtl" in tags for _, tags in body)  # an RTL paragraph is right-aligned


def test_no_control_in_a_message_moves_the_nick_or_time():
    # Whatever the text holds (overrides, isolates, marks, zero-width joiners),
    # the header runs come out the same and before the text.
    nasty = [RLO, PDF, LRI, PDI, RLM, ZWJ, ZWNJ, "\u200b", "\u2067", "\u061c"]
    for ch in nasty:
        line = Line(kind="public", text=f"{ch}{HEBREW}{ch} abc", id=4, sender="bob", epoch=EPOCH)
        runs = _drawn(line)
        assert runs[0] == ("bob", ("public", "nick", "head", "msg")), repr(ch)
        assert runs[1][0] == f"   {format_time(EPOCH)}\n"


def test_local_notices_headings_and_the_divider_too():
    for kind in ("notice", "error", "heading", "divider"):
        runs = _drawn(Line(kind=kind, text=f"no {RLO}results"))
        assert all(RLO not in text for text, _ in runs), kind
        assert any("<U+202E>" in text for text, _ in runs), kind


def test_the_sidebar_preview_is_one_flat_line_cut_to_fit_and_bidi_safe():
    from parley_chat.client.gui.richtext import visual
    from parley_chat.client.gui.sidebar import preview_line

    def fits(text: str) -> bool:
        return len(text) <= 24

    assert preview_line("bob", "hi\nthere", fits) == "bob: hi there"
    cut = preview_line("you", "a fairly long message that goes on", fits)
    assert cut == "you: a fairly long mess\u2026" and fits(cut)
    hebrew = "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"
    shown = preview_line("bob", f"\u202e{hebrew}", fits)
    # The name stays first; the override is shown as a code; the text is reordered.
    assert shown == "bob: " + visual(f"<U+202E>{hebrew}")
    assert preview_line("bob", "   ", fits) == "bob:"
    assert preview_line("bob", "ok \U0001f44d\U0001f3fd", fits) == "bob: ok \U0001f44d"
    # A name too long for the line is cut too, and the line still fits.
    long = preview_line("Bartholomew_Featherstone", "hello", fits)
    assert long.startswith("Barthol") and "\u2026: " in long and fits(long)
    assert preview_line("bob", "/me waves", fits) == "* bob waves"  # an emote


def test_an_emote_reads_as_what_its_sender_does():
    line = Line(kind="public", text="/me waves", sender="bob", id=2, epoch=EPOCH)
    body = [text for text, tags in _drawn(line) if "body" in tags]
    assert "".join(body).strip() == "* bob waves"
    plain = Line(kind="public", text="/me", sender="bob", id=3, epoch=EPOCH)  # nothing done
    assert "/me" in "".join(text for text, _ in _drawn(plain))
