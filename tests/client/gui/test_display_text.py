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
    (text, _), (time_run, tags) = _drawn(line)
    assert text == "  \u2192 <U+202E>tfel ecila"
    assert "ts" in tags and time_run.strip() and RLO not in time_run


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
    assert [text for text, _ in runs] == [
        "  #a<U+2066>  ",
        "bo<U+202E>b",
        f"   {format_time(EPOCH)}\n",
        "  one <U+202E>two\n",
        f"  {HEBREW}<U+2069>\n",
    ]
    assert "ts" in runs[2][1]
    assert not any(ch in text for text, _ in runs for ch in (RLO, LRI, PDI))


def test_local_notices_headings_and_the_divider_too():
    for kind in ("notice", "error", "heading", "divider"):
        runs = _drawn(Line(kind=kind, text=f"no {RLO}results"))
        assert all(RLO not in text for text, _ in runs), kind
        assert any("<U+202E>" in text for text, _ in runs), kind
