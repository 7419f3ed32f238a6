# client/gui/theme.py: message colours are readable in both modes (no display needed).

from __future__ import annotations

import pytest

from parley_chat.client.gui import theme


@pytest.mark.parametrize("mode", theme.MODES)
@pytest.mark.parametrize("kind", theme.KINDS)
def test_every_message_colour_meets_wcag_aa_on_every_background(mode, kind):
    colour = theme.palette(mode).kind(kind)
    for background in theme.backgrounds(mode):
        ratio = theme.contrast_ratio(colour, background)
        assert ratio >= theme.MIN_CONTRAST, f"{kind} {colour} on {background}: {ratio:.2f}"


@pytest.mark.parametrize("mode", theme.MODES)
def test_timestamps_divider_and_text_are_readable(mode):
    p = theme.palette(mode)
    for colour in (p.muted, p.divider, p.text):
        assert theme.contrast_ratio(colour, p.chat_bg) >= theme.MIN_CONTRAST
    assert theme.contrast_ratio(p.warn_text, p.warn_bg) >= theme.MIN_CONTRAST
    assert theme.contrast_ratio(p.danger_text, p.danger_bg) >= theme.MIN_CONTRAST
    assert theme.contrast_ratio(p.badge_text, p.badge_bg) >= theme.MIN_CONTRAST


def test_each_mode_has_its_own_colours_per_kind():
    for kind in theme.KINDS:
        assert theme.LIGHT.kind(kind) != theme.DARK.kind(kind)
    light = {theme.LIGHT.kind(k) for k in ("public", "private", "system")}
    assert len(light) == 3  # the three kinds are told apart


def test_avatar_colours_carry_white_initials():
    for colour in theme.AVATAR_COLOURS:
        assert theme.contrast_ratio("#ffffff", colour) >= theme.MIN_CONTRAST
    assert theme.avatar_colour("alice") == theme.avatar_colour("ALICE")


def test_contrast_ratio_known_values():
    assert theme.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert theme.contrast_ratio("#777777", "#777777") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        theme.contrast_ratio("red", "#ffffff")


def test_tag_colours_follow_the_mode():
    assert theme.tag_colours("light")["public"]["foreground"] == theme.LIGHT.public
    assert theme.tag_colours("dark")["public"]["foreground"] == theme.DARK.public
    assert theme.palette("Dark") is theme.DARK


@pytest.mark.parametrize("mode", theme.MODES)
def test_every_text_and_background_pair_meets_wcag_aa(mode):
    pairs = theme.text_pairs(mode)
    assert len(pairs) > 40  # message text, nicks, links, times, panels, badges, banners
    low = [
        f"{what}: {fg} on {bg} = {theme.contrast_ratio(fg, bg):.2f}"
        for what, fg, bg in pairs
        if theme.contrast_ratio(fg, bg) < theme.MIN_CONTRAST
    ]
    assert not low, low


@pytest.mark.parametrize("mode", theme.MODES)
def test_the_colours_the_chat_view_uses_are_all_in_the_checked_pairs(mode):
    checked = {fg for _, fg, _ in theme.text_pairs(mode)}
    for tag, options in theme.tag_colours(mode).items():
        if "foreground" in options:
            assert options["foreground"] in checked, tag
    # Message text is the theme's text colour, not the kind's.
    assert theme.tag_colours(mode)["body"]["foreground"] == theme.palette(mode).text
