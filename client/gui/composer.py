# client/gui/composer.py: where the user writes: the input line (Enter sends,
# Up/Down recall earlier lines), the Send button, and the banner above them
# that says when the user is out of the chat and offers Rejoin.

from __future__ import annotations

from collections.abc import Callable

import customtkinter as ctk

from . import theme

#: Lines kept for Up/Down recall.
_RECALL = 100


class Composer(ctk.CTkFrame):
    """The input area. *on_submit* (text) gets each non-blank line; *on_banner_action*
    is the banner button's command (Rejoin)."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_submit: Callable[[str], None],
        on_banner_action: Callable[[], None],
    ) -> None:
        super().__init__(master, corner_radius=0, fg_color=theme.pair("chat_bg"))
        self._on_submit = on_submit
        self.grid_columnconfigure(0, weight=1)

        self.banner = ctk.CTkFrame(self, corner_radius=10, fg_color=theme.pair("warn_bg"))
        self.banner.grid_columnconfigure(0, weight=1)
        self.banner_label = ctk.CTkLabel(
            self.banner,
            text="",
            anchor="w",
            justify="left",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            text_color=theme.pair("warn_text"),
        )
        self.banner_label.grid(row=0, column=0, sticky="ew", padx=14, pady=10)
        self.banner_button = ctk.CTkButton(
            self.banner,
            text="Rejoin",
            width=96,
            height=32,
            corner_radius=8,
            fg_color=theme.pair("accent"),
            text_color="#ffffff",
            hover_color=theme.pair("accent_hover"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY, "bold"),
            command=on_banner_action,
        )
        self.banner_button.grid(row=0, column=1, padx=10, pady=8)

        box = ctk.CTkFrame(
            self,
            corner_radius=12,
            fg_color=theme.pair("side_bg"),
            border_width=1,
            border_color=theme.pair("border"),
        )
        box.grid(row=1, column=0, sticky="ew", padx=20, pady=(6, 16))
        box.grid_columnconfigure(0, weight=1)
        self.entry = ctk.CTkEntry(
            box,
            height=42,
            border_width=0,
            corner_radius=10,
            fg_color="transparent",
            text_color=theme.pair("text"),
            placeholder_text="Message",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY + 1),
        )
        self.entry.grid(row=0, column=0, sticky="ew", padx=(10, 4), pady=3)
        self.send_button = ctk.CTkButton(
            box,
            text="Send",
            width=78,
            height=34,
            corner_radius=9,
            fg_color=theme.pair("accent"),
            text_color="#ffffff",
            hover_color=theme.pair("accent_hover"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY, "bold"),
            command=self.submit,
        )
        self.send_button.grid(row=0, column=1, padx=(4, 6), pady=6)
        self.entry.bind("<Return>", self._on_return)
        self.entry.bind("<KP_Enter>", self._on_return)
        self.entry.bind("<Up>", lambda _e: self._recall(-1))
        self.entry.bind("<Down>", lambda _e: self._recall(1))
        self.entry.bind("<Escape>", lambda _e: self.entry.delete(0, "end"))
        # Alt+Up/Down belong to the window (switch conversation): without these
        # more specific bindings, the plain Up/Down above would catch them.
        self.entry.bind("<Alt-Up>", lambda _e: None)
        self.entry.bind("<Alt-Down>", lambda _e: None)
        self._history: list[str] = []
        self._recall_pos = 0

    def submit(self) -> None:
        """Send what is typed (the Send button and Enter both come here)."""
        text = self.entry.get()
        if not text.strip():
            return
        self.entry.delete(0, "end")
        if not self._history or self._history[-1] != text:
            self._history.append(text)
            del self._history[:-_RECALL]
        self._recall_pos = len(self._history)
        self._on_submit(text)

    def set_placeholder(self, text: str) -> None:
        """The hint shown while the input is empty, e.g. "Message #lobby"."""
        if self.entry.cget("placeholder_text") == text:
            return
        if self.entry._is_focused:
            # configure() would write the placeholder into the field the user is
            # typing in; set it to appear on the next focus-out instead.
            self.entry._placeholder_text = text
        else:
            self.entry.configure(placeholder_text=text)

    def show_banner(self, text: str, button: str = "Rejoin") -> None:
        """Show the banner with *text* and its button labelled *button*."""
        self.banner_label.configure(text=text)
        self.banner_button.configure(text=button)
        self.banner.grid(row=0, column=0, sticky="ew", padx=20, pady=(8, 0))

    def hide_banner(self) -> None:
        """Hide the banner."""
        self.banner.grid_remove()

    @property
    def banner_visible(self) -> bool:
        """True while the banner is shown."""
        return bool(self.banner.grid_info())

    def focus_input(self) -> None:
        """Put the keyboard focus in the input line."""
        self.entry.focus_set()

    def _on_return(self, _event: object) -> str:
        self.submit()
        return "break"

    def _recall(self, step: int) -> str:
        if not self._history:
            return "break"
        self._recall_pos = max(0, min(len(self._history), self._recall_pos + step))
        text = self._history[self._recall_pos] if self._recall_pos < len(self._history) else ""
        self.entry.delete(0, "end")
        self.entry.insert(0, text)
        return "break"
