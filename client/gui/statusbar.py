# client/gui/statusbar.py: the bottom bar: the connection state (connected,
# reconnecting with a live countdown, offline), the TLS version and the
# SHA-256 fingerprint of the server's certificate.
#
# The countdown ticks with its own after() timer on the Tk thread; it is
# cancelled whenever the state changes and when the bar is destroyed.

from __future__ import annotations

import math
import time

import customtkinter as ctk

from . import theme

_DOT = {"connected": "system", "reconnecting": "warn_text", "offline": "error"}


class StatusBar(ctk.CTkFrame):
    """Connection state on the left, TLS details on the right."""

    def __init__(self, master: ctk.CTkBaseClass) -> None:
        super().__init__(master, corner_radius=0, height=30, fg_color=theme.pair("rail_bg"))
        self.grid_columnconfigure(1, weight=1)
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
        self.tls_label = ctk.CTkLabel(
            self,
            text="",
            anchor="e",
            height=20,
            font=(theme.MONO_FAMILY, 11),
            text_color=theme.pair("muted"),
        )
        self.tls_label.grid(row=0, column=2, sticky="e", padx=(8, 14))
        self.state = "offline"
        self._deadline = 0.0
        self._attempt = 0
        self._tick_id: str | None = None
        self.set_offline("Not connected")

    def set_connected(self, text: str, tls_version: str, fingerprint: str) -> None:
        """Logged in: *text* says as whom and where."""
        self._stop_tick()
        self._set("connected", text)
        self.tls_label.configure(text=f"{tls_version}  \u00b7  SHA-256 {fingerprint}")

    def set_reconnecting(self, attempt: int, delay: float) -> None:
        """An automatic reconnect (attempt number *attempt*) starts in *delay* seconds."""
        self._stop_tick()
        self._attempt = attempt
        self._deadline = time.monotonic() + delay
        self.state = "reconnecting"
        self._tick()

    def set_offline(self, text: str) -> None:
        """Not connected, and nothing will reconnect by itself."""
        self._stop_tick()
        self._set("offline", text)

    def text(self) -> str:
        """The state text (for tests)."""
        return str(self.state_label.cget("text"))

    def _set(self, state: str, text: str) -> None:
        self.state = state
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
