# client/gui/richtext.py and emoji.py: links, emoji clusters, right-to-left
# order and search hits in one paragraph of text; colour emoji drawn as images.
# Pure functions (no display), except the image test, which needs Pillow only.

from __future__ import annotations

from parley_chat.client.gui import emoji, richtext
from parley_chat.client.gui.model import format_time, locale_uses_12_hour
from parley_chat.client.gui.richtext import Run, links, runs, visual

HEBREW = "\u05e9\u05dc\u05d5\u05dd"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"


def test_links_are_found_without_trailing_punctuation():
    text = "see https://example.com/a_(b)). and www.parley.test/x, or (http://x.org/y)"
    assert [url for _, _, url in links(text)] == [
        "https://example.com/a_(b)",
        "https://www.parley.test/x",
        "http://x.org/y",
    ]


def test_emoji_clusters_are_kept_whole():
    text = f"hi {FAMILY} \U0001f44d\U0001f3fd \U0001f1eb\U0001f1f7 \u2764\ufe0f 1\ufe0f\u20e3 \u2192 done"
    found = [r.text for r in runs(text) if r.kind == "emoji"]
    assert found == [
        FAMILY,
        "\U0001f44d\U0001f3fd",
        "\U0001f1eb\U0001f1f7",
        "\u2764\ufe0f",
        "1\ufe0f\u20e3",
    ]
    # An arrow (used in system lines) is text, not an emoji.
    assert any("\u2192" in r.text for r in runs(text) if r.kind == "text")


def test_right_to_left_text_comes_out_in_visual_order():
    assert visual(f"{HEBREW} abc") == f"abc {HEBREW[::-1]}"
    assert visual("plain ascii") == "plain ascii"
    assert richtext.is_rtl(f"{HEBREW} abc") and not richtext.is_rtl(f"abc {HEBREW}")


def test_arabic_is_joined_before_it_is_reordered():
    shown = visual("\u0645\u0631\u062d\u0628\u0627")
    # Presentation forms (joined letters), not the isolated code points.
    assert all("\ufe70" <= ch <= "\ufefc" for ch in shown)


def test_an_rtl_paragraph_never_reverses_an_emoji_sequence():
    text = f"{HEBREW} {FAMILY} {HEBREW}"
    assert FAMILY in visual(text)
    assert [r.text for r in runs(text) if r.kind == "emoji"] == [FAMILY]


def test_search_hits_are_marked_case_insensitively():
    out = runs("The Quick brown fox, quick!", ("quick",))
    assert [r.text for r in out if r.kind == "hit"] == ["Quick", "quick"]
    assert Run("link", "https://x.org", "https://x.org") in runs("go https://x.org", ("x",))


def test_colour_emoji_become_images_of_the_asked_height():
    if not emoji.available():
        # No colour emoji font: the fallback is text, never an error.
        assert emoji.bitmap("\U0001f600", 18) is None
        return
    image = emoji.bitmap("\U0001f600", 18)
    assert image is not None and image.size[1] == 18 and image.mode == "RGBA"
    # It has colour (not a monochrome glyph): more than a few distinct colours.
    assert len(image.getcolors(maxcolors=4096) or []) > 10
    assert emoji.bitmap("a", 18) is None  # not an emoji: drawn as text


def test_times_follow_the_clock_of_the_locale():
    from datetime import UTC, datetime

    epoch = datetime(2026, 11, 24, 21, 5, tzinfo=UTC).timestamp()
    assert format_time(epoch, UTC, twelve_hour=False) == "21:05"
    assert format_time(epoch, UTC, twelve_hour=True) == "9:05 PM"
    assert isinstance(locale_uses_12_hour(), bool)


def test_the_clock_comes_from_the_locales_time_format(monkeypatch):
    import locale

    monkeypatch.setattr(locale, "setlocale", lambda *a, **k: "C")
    monkeypatch.setattr(locale, "nl_langinfo", lambda item: "%I:%M:%S %p")  # en_US
    assert locale_uses_12_hour() is True
    monkeypatch.setattr(locale, "nl_langinfo", lambda item: "%H:%M:%S")  # de_DE, en_GB
    assert locale_uses_12_hour() is False


def test_wrap_cuts_a_paragraph_into_lines_in_reading_order():
    words = [chr(0x05D0 + i) * 3 for i in range(20)]  # א-words, ב-words, ...
    text = " ".join(words)
    lines = richtext.wrap(text, lambda t: len(t) <= 15)
    assert all(len(line) <= 15 for line in lines)
    assert " ".join(lines) == text  # nothing lost, nothing reordered yet
    assert lines[0].startswith(words[0]) and lines[-1].endswith(words[-1])
    # Each line is then reordered on its own: the first word is the right end
    # of the top line, as a right-to-left reader starts.
    top = visual(lines[0], True)
    assert top.endswith(words[0]) and top.startswith(lines[0].split()[-1])


def test_wrap_breaks_a_word_longer_than_a_line_but_never_an_emoji():
    lines = richtext.wrap("x" * 10 + FAMILY + "y" * 3, lambda t: len(t) <= 12)
    assert lines[0] == "x" * 10 and lines[1] == FAMILY + "yyy"
    assert richtext.wrap("", lambda t: True) == [""]
    assert richtext.wrap("short", lambda t: True) == ["short"]


def test_a_display_line_keeps_its_paragraphs_direction():
    # An English start of a line inside a Hebrew paragraph still reads from the right.
    assert visual(f"abc {HEBREW}", True) == f"{HEBREW[::-1]} abc"
    assert visual(f"abc {HEBREW}", False) == f"abc {HEBREW[::-1]}"
