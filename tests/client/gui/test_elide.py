"""Cutting a label's text to a width (client/gui/elide.py), measured here by
length so each case can say exactly what fits."""

from __future__ import annotations

from parley_chat.client.gui.elide import ELLIPSIS, elide


def within(n: int):
    return lambda text: len(text) <= n


def test_text_that_fits_is_shown_whole_with_its_suffix():
    assert elide("alice", within(20)) == "alice"
    assert elide("alice", within(12), suffix="  (you)") == "alice  (you)"


def test_text_too_wide_is_cut_at_its_end_and_the_result_fits():
    shown = elide("Bartholomew_Featherstone", within(10))
    assert shown == "Bartholom" + ELLIPSIS
    assert len(shown) == 10


def test_the_suffix_is_kept_whole_and_the_text_makes_room_for_it():
    shown = elide("Maximiliana-Wolkenstein1", within(16), suffix="  (you)")
    assert shown == "Maximili" + ELLIPSIS + "  (you)"
    assert len(shown) <= 16


def test_a_cut_never_leaves_a_space_before_the_ellipsis():
    assert elide("ab cdefgh", within(4)) == "ab" + ELLIPSIS


def test_when_nothing_of_the_text_fits_the_ellipsis_stands_for_it():
    assert elide("alice", within(8), suffix=" \u2014 12345") == ELLIPSIS + " \u2014 12345"
