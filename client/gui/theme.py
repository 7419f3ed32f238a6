"""Every colour and font size the desktop client uses, per
appearance mode. Pure data plus the WCAG contrast formula; no Tk.

Rules this module keeps:
1. Each message kind has one foreground colour per mode, chosen so it reads
   against every background it can sit on in that mode (the chat background,
   the tint of the user's own messages, the mention highlight): WCAG AA, a
   contrast ratio of at least 4.5 (tests/client/gui/test_theme.py checks it).
2. Text-widget tag colours are raw Tk colours that do not follow
   customtkinter's appearance mode, so the chat view re-applies them from
   tag_colours() whenever the mode changes. Frame and widget colours are
   (light, dark) tuples that customtkinter switches by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("light", "dark")

#: Message kinds that have a colour of their own in the chat view.
KINDS = ("public", "private", "system", "notice", "error")

#: The minimum contrast ratio between any message colour and its background.
MIN_CONTRAST = 4.5


@dataclass(frozen=True, slots=True)
class Palette:
    """The colours of one appearance mode."""

    chat_bg: str  # the conversation pane
    side_bg: str  # sidebar and user list
    rail_bg: str  # status bar
    border: str
    text: str  # ordinary text (titles, nicks in lists)
    muted: str  # timestamps, hints
    public: str
    private: str
    system: str
    notice: str  # local notices (help, command errors shown to this user only)
    error: str
    own_bg: str  # tint behind the user's own messages
    own_bar: str  # the bar at the left edge of the user's own messages
    mention_bg: str  # behind messages that mention the user
    divider: str  # the "new since you left" line
    accent: str  # primary buttons, selection
    accent_hover: str
    selected_bg: str  # the selected conversation in the sidebar
    hover_bg: str
    badge_bg: str  # unread counts of mentions and private messages (red)
    badge_text: str
    quiet_bg: str  # unread counts of everything else (grey)
    quiet_text: str
    link: str  # clickable links in message text
    hit_bg: str  # search hits highlighted in results
    warn_bg: str  # trust prompts
    warn_text: str
    danger_bg: str  # refusals
    danger_text: str

    def kind(self, kind: str) -> str:
        """The foreground colour of a message kind (see KINDS)."""
        return str(getattr(self, kind))


LIGHT = Palette(
    chat_bg="#ffffff",
    side_bg="#f3f4f6",
    rail_bg="#e9ebef",
    border="#e1e4e8",
    text="#1f2328",
    muted="#5f6672",
    public="#1d4ed8",
    private="#7e22ce",
    system="#137333",
    notice="#5f6672",
    error="#b91c1c",
    own_bg="#eef2ff",
    own_bar="#6366f1",
    mention_bg="#fef3c7",
    divider="#c81e1e",
    accent="#4f46e5",
    accent_hover="#4338ca",
    selected_bg="#e0e3ff",
    hover_bg="#e6e8ec",
    badge_bg="#dc2626",
    badge_text="#ffffff",
    quiet_bg="#d5d9e0",
    quiet_text="#374151",
    link="#0b57d0",
    hit_bg="#fde68a",
    warn_bg="#fff7e0",
    warn_text="#7a4b00",
    danger_bg="#fdecec",
    danger_text="#9b1c1c",
)

DARK = Palette(
    chat_bg="#1e1f24",
    side_bg="#26272d",
    rail_bg="#1a1b1f",
    border="#34363d",
    text="#e3e5e8",
    muted="#9ca3af",
    public="#7ab8ff",
    private="#d0a2ff",
    system="#5ad98a",
    notice="#a4abb6",
    error="#ff8a8a",
    own_bg="#262a3d",
    own_bar="#818cf8",
    mention_bg="#3b331c",
    divider="#f87171",
    accent="#5b5ef0",
    accent_hover="#4f46e5",
    selected_bg="#31344a",
    hover_bg="#30323a",
    badge_bg="#dc2626",
    badge_text="#ffffff",
    quiet_bg="#3f424b",
    quiet_text="#d1d5db",
    link="#8ab4f8",
    hit_bg="#3d310e",
    warn_bg="#3a3117",
    warn_text="#f5d38a",
    danger_bg="#3d1f22",
    danger_text="#ffb4b4",
)

PALETTES = {"light": LIGHT, "dark": DARK}

#: Font sizes in pixels (customtkinter sizes fonts in pixels).
FONT_FAMILY = "Roboto"
MONO_FAMILY = "DejaVu Sans Mono"
SIZE_BODY = 14
SIZE_SMALL = 12
SIZE_TITLE = 16
SIZE_HERO = 26


def palette(mode: str) -> Palette:
    """The palette of *mode* ("light" or "dark"; anything else means light)."""
    return PALETTES.get(mode.lower(), LIGHT)


def pair(attribute: str) -> tuple[str, str]:
    """A (light, dark) colour tuple for customtkinter widgets."""
    return (getattr(LIGHT, attribute), getattr(DARK, attribute))


def tag_colours(mode: str) -> dict[str, dict[str, str]]:
    """Tk text-tag options for the chat view in *mode*: tag name -> options.

    Message text is in the ordinary text colour; the kind's colour marks the
    nick (and system lines, which have no nick), so a busy room is not a wall
    of one colour and the kind still shows on every message.
    """
    p = palette(mode)
    tags: dict[str, dict[str, str]] = {k: {"foreground": p.kind(k)} for k in KINDS}
    tags["body"] = {"foreground": p.text}
    tags["link"] = {"foreground": p.link, "underline": "1"}
    tags["hit"] = {"background": p.hit_bg, "foreground": p.text}
    tags["target"] = {"background": p.hit_bg, "lmargincolor": p.hit_bg}
    tags["ts"] = {"foreground": p.muted}
    tags["day"] = {"foreground": p.muted}
    tags["own"] = {"background": p.own_bg, "lmargincolor": p.own_bar}
    tags["mention"] = {"background": p.mention_bg}
    tags["divider"] = {"foreground": p.divider}
    tags["where"] = {"foreground": p.muted}
    tags["heading"] = {"foreground": p.text}
    return tags


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour."""
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"expected #rrggbb, got {colour!r}")
    channels = []
    for i in (0, 2, 4):
        c = int(value[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours, from 1 (none) to 21."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


def backgrounds(mode: str) -> tuple[str, ...]:
    """Every background a message can be drawn on in *mode*."""
    p = palette(mode)
    return (p.chat_bg, p.own_bg, p.mention_bg)


def text_pairs(mode: str) -> list[tuple[str, str, str]]:
    """Every (what, foreground, background) pair of text drawn in *mode*: message
    text, nicks, links, times and notices on each message background, and the
    text of every panel, badge, banner and button. Tests require WCAG AA on all."""
    p = palette(mode)
    pairs: list[tuple[str, str, str]] = []
    on_messages = {
        "text": p.text,
        "muted": p.muted,
        "link": p.link,
        "divider": p.divider,
        **{k: p.kind(k) for k in KINDS},
    }
    for name, fg in on_messages.items():
        for bg_name, bg in (
            ("chat", p.chat_bg),
            ("own", p.own_bg),
            ("mention", p.mention_bg),
            ("jump target", p.hit_bg),
        ):
            pairs.append((f"{name} on {bg_name}", fg, bg))
    for panel_name, panel in (
        ("side", p.side_bg),
        ("rail", p.rail_bg),
        ("selected", p.selected_bg),
        ("hover", p.hover_bg),
    ):
        pairs.append((f"text on {panel_name}", p.text, panel))
        pairs.append((f"muted on {panel_name}", p.muted, panel))
    pairs += [
        ("badge", p.badge_text, p.badge_bg),
        ("quiet badge", p.quiet_text, p.quiet_bg),
        ("warning", p.warn_text, p.warn_bg),
        ("danger", p.danger_text, p.danger_bg),
        ("button", "#ffffff", p.accent),
        ("button hover", "#ffffff", p.accent_hover),
        ("error on rail", p.error, p.rail_bg),
    ]
    return pairs


#: Avatar colours: saturated enough to carry white initials (contrast >= 4.5).
AVATAR_COLOURS = (
    "#4f46e5",
    "#0f766e",
    "#b45309",
    "#be185d",
    "#1d4ed8",
    "#7e22ce",
    "#15803d",
    "#c2410c",
)


def avatar_colour(nick: str) -> str:
    """A stable colour for *nick*'s avatar (the same on every machine)."""
    total = sum((i + 1) * ord(c) for i, c in enumerate(nick.lower()))
    return AVATAR_COLOURS[total % len(AVATAR_COLOURS)]
