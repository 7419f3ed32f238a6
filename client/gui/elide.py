"""Cutting a label's text to a width in pixels, with an ellipsis.

Tk clips a label's text at the label's edge with no sign that anything is
missing: a 24-character nick lost its "(you)" and its role mark in the user
list, and a long name ran under the icons of the user's card. The widgets that
show names cut them here instead, measured in their own font.
"""

from __future__ import annotations

from collections.abc import Callable

ELLIPSIS = "\u2026"


def elide(text: str, fits: Callable[[str], bool], *, suffix: str = "") -> str:
    """*text* then *suffix*, the text cut at its end with an ellipsis where
    *fits* (a width test in the label's font) says the whole is too wide.

    The suffix (a "(you)", a role mark) is kept whole: it says something the
    cut text does not. When not even one character fits beside it, the
    ellipsis alone stands for the text."""
    if fits(text + suffix):
        return text + suffix
    lo, hi = 0, len(text)  # the longest start of the text that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + ELLIPSIS + suffix):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS + suffix
