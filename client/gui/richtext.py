"""How one line of message text is split into runs the
chat view draws differently: links, colour emoji, search hits and plain text,
in the order they appear on screen (right-to-left text reordered). Pure: no Tk
(emoji.py turns emoji runs into images).

Rules this module keeps:
1. Reordering (the Unicode bidi algorithm, python-bidi) works on one run of
   message text at a time: a nick, a time or a room name is never part of
   what it reorders, so nothing a message holds can move them.
2. Emoji clusters go through the reordering as placeholders of a neutral
   class, each distinct, and come back whole: an RTL paragraph never reverses
   the parts of a ZWJ sequence or a flag.
3. Arabic is shaped (joined letter forms, arabic_reshaper) before reordering,
   because Tk 8.6 draws neither joined forms nor visual order by itself.
4. A paragraph with right-to-left text is cut into display lines in logical
   order first (wrap), then each line is reordered on its own, so the lines
   of a long Hebrew or Arabic paragraph read from the top down.
5. Without python-bidi or arabic_reshaper the text is shown in logical order,
   as before: degraded, never broken.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

try:  # optional at run time (pinned in requirements.txt)
    from bidi import get_display as _get_display
except ImportError:  # pragma: no cover - exercised only without the package
    _get_display = None
try:
    import arabic_reshaper as _reshaper
except ImportError:  # pragma: no cover
    _reshaper = None

#: Strong right-to-left letters (Hebrew, Arabic, Syriac, Thaana, NKo, ... and
#: their presentation forms).
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
#: The first strong letter decides a paragraph's direction (UAX #9 P2), roughly.
_FIRST_STRONG = re.compile("[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff\u0590-\u08ff]")

#: A colour emoji cluster: a flag (two regional indicators), a keycap, or a
#: pictograph with optional skin tone / variation selector, joined by ZWJ.
_PICTO = (
    "(?:[\U0001f000-\U0001faff]"
    "|[\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\u2190-\u21ff\u3030\u303d\u3297\u3299\u00a9\u00ae\u203c\u2049\u2122\u2139]\ufe0f"
    "|[\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653\u267f\u2693\u26a1"
    "\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa\u26fd\u2705"
    "\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b\u2b1c\u2b50\u2b55])"
    "[\U0001f3fb-\U0001f3ff]?\ufe0f?"
)
EMOJI = re.compile(f"[\U0001f1e6-\U0001f1ff]{{2}}|[0-9#*]\ufe0f?\u20e3|{_PICTO}(?:\u200d{_PICTO})*")

#: Links: http(s) and www. addresses; trailing punctuation is not part of them.
_LINK = re.compile(r"(?:https?://|www\.)[^\s<>\"'\u3000]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\")]}\u2026"

#: Neutral (bidi class ON), non-mirrored stand-ins for emoji during reordering.
_PLACEHOLDERS = [chr(c) for c in range(0x2500, 0x2580)]


@dataclass(frozen=True, slots=True)
class Run:
    """One piece of a line: `kind` is "text", "link" (with `url`), "emoji" or "hit"."""

    kind: str
    text: str
    url: str = ""


def is_rtl(text: str) -> bool:
    """True if *text*'s first strong letter is right-to-left (it reads from the right)."""
    first = _FIRST_STRONG.search(text)
    return first is not None and _RTL.match(first.group()) is not None


def has_rtl(text: str) -> bool:
    """True if *text* holds any right-to-left letter."""
    return _RTL.search(text) is not None


def visual(text: str, rtl: bool | None = None) -> str:
    """*text* (one paragraph or one display line of it, no newline) in the order
    it is drawn left to right: Arabic shaped, right-to-left runs reversed. Emoji
    clusters stay whole. *rtl*: the paragraph's direction (None: from *text*'s
    first strong letter; a display line passes its paragraph's)."""
    if not has_rtl(text) or _get_display is None:
        return text
    emoji: list[str] = []
    free = [p for p in _PLACEHOLDERS if p not in text]

    def hide(m: re.Match[str]) -> str:
        if len(emoji) >= len(free):
            return m.group()
        emoji.append(m.group())
        return free[len(emoji) - 1]

    hidden = EMOJI.sub(hide, text)
    if _reshaper is not None and _ARABIC.search(hidden):
        hidden = _reshaper.reshape(hidden)
    if rtl is None:
        shown = _get_display(hidden)
    else:
        shown = _get_display(hidden, base_dir="R" if rtl else "L")
    back = {free[i]: e for i, e in enumerate(emoji)}
    return "".join(back.get(ch, ch) for ch in shown) if back else shown


def links(text: str) -> list[tuple[int, int, str]]:
    """(start, end, url) of each link in *text*."""
    out = []
    for m in _LINK.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in _TRAILING:
            # Keep a closing bracket that closes one opened inside the link.
            if text[end - 1] == ")" and text[start:end].count("(") >= text[start:end].count(")"):
                break
            end -= 1
        url = text[start:end]
        if url.lower().startswith("www."):
            url = "https://" + url
        if end - start > 4:
            out.append((start, end, url))
    return out


def _hits(text: str, words: tuple[str, ...]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for word in words:
        if not word:
            continue
        for m in re.finditer(re.escape(word), text, re.IGNORECASE):
            spans.append(m.span())
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def split_plain(text: str, hits: tuple[str, ...] = ()) -> list[Run]:
    """Plain text with emoji cut out as their own runs and search *hits* marked."""
    return [run for _start, run in _pieces(text, hits)]


def _pieces(text: str, hits: tuple[str, ...]) -> list[tuple[int, Run]]:
    marks: list[tuple[int, int, str]] = [(*m.span(), "emoji") for m in EMOJI.finditer(text)]
    for s, e in _hits(text, hits):
        marks.append((s, e, "hit"))
    marks.sort()
    out: list[tuple[int, Run]] = []
    pos = 0
    for s, e, kind in marks:
        if s < pos:  # overlaps an earlier mark (a hit inside an emoji): skip
            continue
        if s > pos:
            out.append((pos, Run("text", text[pos:s])))
        out.append((s, Run(kind, text[s:e])))
        pos = e
    if pos < len(text):
        out.append((pos, Run("text", text[pos:])))
    return out


def shaped(text: str) -> str:
    """*text* with Arabic letters in their joined forms (what is measured and drawn)."""
    if _reshaper is not None and _ARABIC.search(text):
        return str(_reshaper.reshape(text))
    return text


def wrap(text: str, fits: Callable[[str], bool]) -> list[str]:
    """*text* (one paragraph, logical order) cut into display lines, each as
    long as *fits* allows: at spaces, or inside a word longer than a line
    (never inside an emoji cluster). Lines keep logical order: each is then
    reordered on its own (visual(line, rtl)), so a wrapped right-to-left
    paragraph reads top to bottom, as Tk cannot do by itself (it would wrap
    the reordered paragraph, putting its last words on the first line)."""
    lines: list[str] = []
    current = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        if fits((current + token).rstrip()):
            current += token
            continue
        if current.strip():
            lines.append(current.rstrip())
            current = ""
        if fits(token.rstrip()):
            current = token
            continue
        for piece in re.findall(f"{EMOJI.pattern}|.", token, re.DOTALL):
            if current and not fits((current + piece).rstrip()):
                lines.append(current.rstrip())
                current = ""
            current += piece
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def runs(text: str, hits: tuple[str, ...] = (), rtl: bool | None = None) -> list[Run]:
    """One paragraph (or display line, with its paragraph's direction *rtl*) of
    message text as the runs drawn left to right."""
    shown = visual(text, rtl)
    out: list[Run] = []
    pos = 0
    for start, end, url in links(shown):
        if start > pos:
            out.extend(split_plain(shown[pos:start], hits))
        out.append(Run("link", shown[start:end], url))
        pos = end
    if pos < len(shown):
        out.extend(split_plain(shown[pos:], hits))
    return out
