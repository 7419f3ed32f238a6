"""The bottom bar: the connection state (connected,
reconnecting with a live countdown and a "Retry now" button, offline), the
TLS version and the server certificate's SHA-256 fingerprint: short and in
groups of four on the bar, the whole of it on hover and on a click (details).

The countdown ticks with its own after() timer on the Tk thread; it is
cancelled whenever the state changes and when the bar is destroyed. While
not connected, no fingerprint is shown (it would be the old server's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import customtkinter as ctk

from . import theme

#: Hex digits of the fingerprint shown on the bar (the rest on hover / details).
SHORT_DIGITS = 16


def grouped(fingerprint: str, digits: int | None = None) -> str:
    """*fingerprint* (hex, any case, colons allowed) in upper-case groups of four:
    "1D44 3310 77B6 …"; the first *digits* only (with an ellipsis) when given."""
    hexdigits = "".join(c for c in fingerprint if c not in ": ").upper()
    cut = hexdigits if digits is None else hexdigits[:digits]
    text = " ".join(cut[i : i + 4] for i in range(0, len(cut), 4))
    return text + (" \u2026" if digits is not None and len(hexdigits) > digits else "")


class Tooltip:
    """A small window with *text* that shows while the pointer is over *widget*."""

    def __init__(self, widget: ctk.CTkBaseClass, text: str = "") -> None:
        self.widget = widget
        self.text = text
        self._tip: ctk.CTkToplevel | None = None
        widget.bind("<Enter>", self.show, add=True)
        widget.bind("<Leave>", self.hide, add=True)

    def show(self, _event: object = None) -> None:
        """Show the tip under the widget."""
        if not self.text or self._tip is not None:
            return
        import tkinter as tk

        tip = self._tip = tk.Toplevel(self.widget)
        tip.wm_overrideredirect(True)
        p = theme.palette(ctk.get_appearance_mode())
        tk.Label(
            tip,
            text=self.text,
            justify="left",
            background=p.side_bg,
            foreground=p.text,
            relief="solid",
            borderwidth=1,
            font=(theme.MONO_FAMILY, 10),
            padx=8,
            pady=4,
        ).pack()
        tip.update_idletasks()
        x = self.widget.winfo_rootx() + self.widget.winfo_width() - tip.winfo_reqwidth()
        y = self.widget.winfo_rooty() - tip.winfo_reqheight() - 4
        tip.wm_geometry(f"+{max(0, x)}+{max(0, y)}")

    def hide(self, _event: object = None) -> None:
        """Hide the tip."""
        if self._tip is not None:
            self._tip.destroy()
            self._tip = None


_DOT = {"connected": "system", "reconnecting": "warn_text", "offline": "error"}


class StatusBar(ctk.CTkFrame):
    """Connection state on the left, TLS details on the right."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        on_retry: Callable[[], None] | None = None,
        on_details: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(master, corner_radius=0, height=30, fg_color=theme.pair("rail_bg"))
        self._on_details = on_details
        self.grid_columnconfigure(3, weight=1)  # the space between state and TLS details
        self.dot = ctk.CTkFrame(self, width=10, height=10, corner_radius=5)
        self.dot.grid(row=0, column=0, padx=(14, 8), pady=9)
        self.state_label = ctk.CTkLabel(
            self,
            text="",
            anchor="w",
            height=20,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("text"),
        )
        self.state_label.grid(row=0, column=1, sticky="w")
        self.retry_button = ctk.CTkButton(
            self,
            text="Retry now",
            width=80,
            height=22,
            corner_radius=6,
            fg_color=theme.pair("accent"),
            hover_color=theme.pair("accent_hover"),
            text_color="#ffffff",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
            command=on_retry or (lambda: None),
        )
        self.tls_label = ctk.CTkLabel(
            self,
            text="",
            anchor="e",
            height=20,
            font=(theme.MONO_FAMILY, 11),
            text_color=theme.pair("muted"),
        )
        self.tls_label.grid(row=0, column=4, sticky="e", padx=(8, 14))
        self.tls_label.configure(cursor="hand2")
        self.tls_label.bind("<Button-1>", lambda _e: self._details())
        self.tooltip = Tooltip(self.tls_label)
        self.fingerprint = ""
        self.state = "offline"
        self._deadline = 0.0
        self._attempt = 0
        self._tick_id: str | None = None
        self.set_offline("Not connected")

    def set_connected(self, text: str, tls_version: str, fingerprint: str) -> None:
        """Logged in: *text* says as whom and where."""
        self._stop_tick()
        self._set("connected", text)
        self.fingerprint = fingerprint
        self.tls_label.configure(
            text=f"{tls_version}  \u00b7  SHA-256 {grouped(fingerprint, SHORT_DIGITS)}"
        )
        self.tooltip.text = (
            f"Server certificate SHA-256:\n{grouped(fingerprint)}\n(click for details)"
        )

    def set_reconnecting(self, attempt: int, delay: float) -> None:
        """An automatic reconnect (attempt number *attempt*) starts in *delay* seconds."""
        self._stop_tick()
        self._attempt = attempt
        self._deadline = time.monotonic() + delay
        self.state = "reconnecting"
        self._clear_tls()
        self.retry_button.grid(row=0, column=2, padx=(10, 0))
        self._tick()

    def set_offline(self, text: str) -> None:
        """Not connected, and nothing will reconnect by itself."""
        self._stop_tick()
        self._set("offline", text)
        self._clear_tls()

    def _clear_tls(self) -> None:
        self.fingerprint = ""
        self.tooltip.text = ""
        self.tooltip.hide()
        if self.tls_label.cget("text"):
            self.tls_label.configure(text="")

    def _details(self) -> None:
        if self.fingerprint and self._on_details is not None:
            self._on_details(self.fingerprint)

    @property
    def retry_visible(self) -> bool:
        """True while "Retry now" is offered."""
        return bool(self.retry_button.grid_info())

    def text(self) -> str:
        """The state text (for tests)."""
        return str(self.state_label.cget("text"))

    def _set(self, state: str, text: str) -> None:
        self.state = state
        if state != "reconnecting" and self.retry_button.grid_info():
            self.retry_button.grid_remove()
        self.dot.configure(fg_color=theme.pair(_DOT[state]))
        self.state_label.configure(text=text)

    def _tick(self) -> None:
        self._tick_id = None
        left = self._deadline - time.monotonic()
        if left > 0:
            text = f"Reconnecting in {math.ceil(left)} s (attempt {self._attempt})\u2026"
            # Wake when the whole number of seconds shown changes.
            self._tick_id = self.after(max(20, int((left % 1) * 1000) or 1000), self._tick)
        else:
            text = f"Reconnecting (attempt {self._attempt})\u2026"
        self._set("reconnecting", text)

    def _stop_tick(self) -> None:
        if self._tick_id is not None:
            self.after_cancel(self._tick_id)
            self._tick_id = None

    def destroy(self) -> None:
        """Stop the countdown, then destroy the bar."""
        self._stop_tick()
        super().destroy()
