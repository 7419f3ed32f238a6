"""Colour emoji as Tk images. Tk 8.6 cannot draw colour
glyphs (a smiley comes out monochrome, most emoji as empty boxes), so each
emoji cluster is drawn once with Pillow from a colour emoji font (Noto Color
Emoji on Linux, Segoe UI Emoji on Windows, Apple Color Emoji on macOS), scaled
to the text size and cached.

Without a colour emoji font (or Pillow's FreeType), image() returns None and
the chat view shows the characters as text: degraded, never broken.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

log = logging.getLogger("parley.gui.emoji")

#: Where colour emoji fonts live on the three desktop systems.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
    "C:\\Windows\\Fonts\\seguiemj.ttf",
    "/System/Library/Fonts/Apple Color Emoji.ttc",
)
#: Noto Color Emoji is a bitmap font with one size.
_NATIVE_SIZE = 109
#: Overrides the font (tests point it at a missing file to check the fallback).
FONT_ENV = "PARLEY_EMOJI_FONT"


@lru_cache(maxsize=1)
def _font() -> Any:
    try:
        from PIL import ImageFont
    except ImportError:
        return None
    override = os.environ.get(FONT_ENV)
    for path in (override,) if override else FONT_CANDIDATES:
        if not path or not os.path.exists(path):
            continue
        for size in (_NATIVE_SIZE, 64, 48):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    log.info("no colour emoji font found: emoji are shown as text")
    return None


def available() -> bool:
    """True when a colour emoji font can be used."""
    return _font() is not None


@lru_cache(maxsize=2048)
def bitmap(cluster: str, height: int) -> Any:
    """A Pillow RGBA image of *cluster*, *height* pixels tall, or None."""
    font = _font()
    if font is None:
        return None
    from PIL import Image, ImageDraw

    try:
        left, top, right, bottom = font.getbbox(cluster)
        w, h = max(1, right - left), max(1, bottom - top)
        canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((-left, -top), cluster, font=font, embedded_color=True)
    except (OSError, ValueError) as exc:  # a glyph the font cannot draw
        log.debug("emoji %r not drawn: %s", cluster, exc)
        return None
    box = canvas.getbbox()
    if box is None:  # nothing drawn: the font lacks the glyph
        return None
    width = max(1, round(w * height / h))
    return canvas.resize((width, height), Image.Resampling.LANCZOS)


class EmojiImages:
    """Tk PhotoImages of emoji for one Tk interpreter (they must outlive their use
    in the text widget, so this keeps them)."""

    def __init__(self, master: Any) -> None:
        self._master = master
        self._images: dict[tuple[str, int], Any] = {}
        self.clusters: dict[str, str] = {}  # Tk image name -> the emoji it shows

    def image(self, cluster: str, height: int) -> Any:
        """The PhotoImage of *cluster* at *height* pixels, or None (draw it as text)."""
        key = (cluster, height)
        if key in self._images:
            return self._images[key]
        picture = bitmap(cluster, height)
        photo = None
        if picture is not None:
            from PIL import ImageTk

            photo = ImageTk.PhotoImage(picture, master=self._master)
            self.clusters[str(photo)] = cluster
        self._images[key] = photo
        return photo

    def __len__(self) -> int:
        return sum(1 for v in self._images.values() if v is not None)
