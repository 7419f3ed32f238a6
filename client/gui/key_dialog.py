"""The end-to-end key dialog: a passphrase for this device's keys, or a key file.

One small window of its own over the chat, in one of four modes:

- "create": the first use on a device without an OS keyring (or when the user
  prefers a passphrase): choose a passphrase, typed twice;
- "unlock": the key file on this device is protected by a passphrase: type it;
- "export": a file name and a passphrase (typed twice) for `/keys export`;
- "import": a file name and its passphrase for `/keys import`.

It only collects: *on_submit* (passphrase, path) gets what was typed once the
local checks pass (not empty, long enough, typed the same twice), and the
caller checks the rest off the Tk thread, then either closes the dialog or
calls show_error() so the user can try again (a wrong passphrase). Cancel (the
button, Escape or the window's close box) calls *on_cancel*; what cancelling
means is said in the dialog itself, before the user chooses.
"""

from __future__ import annotations

import tkinter
from collections.abc import Callable
from tkinter import filedialog

import customtkinter as ctk

from . import theme

#: The shortest passphrase accepted for new keys and key files. Argon2id slows a
#: guesser down; it cannot make "1234" safe.
MIN_PASSPHRASE = 8

#: mode -> (title, explanation, submit button, cancel button)
_TEXTS: dict[str, tuple[str, str, str, str]] = {
    "create": (
        "Protect your end-to-end keys",
        "Private messages are end-to-end encrypted with keys kept on this device. "
        "There is no OS keyring here to keep them in, so choose a passphrase: you "
        "will type it each time you sign in. Without it, end-to-end encryption is "
        "off on this device and private messages to people who have keys are NOT sent.",
        "Set passphrase",
        "Not now (encryption off)",
    ),
    "unlock": (
        "Unlock your end-to-end keys",
        "Your end-to-end keys on this device are protected by a passphrase. Type it "
        "to read and send encrypted private messages. If you cancel, encryption is off "
        "on this device: encrypted messages stay unreadable here and private messages "
        "to people who have keys are NOT sent.",
        "Unlock",
        "Cancel (encryption off)",
    ),
    "export": (
        "Export your end-to-end keys",
        "Writes your keys to a file protected by a passphrase, to import on a new "
        "device (/keys import). Anyone with the file and the passphrase can read your "
        "private messages: keep both safe.",
        "Export",
        "Cancel",
    ),
    "import": (
        "Import end-to-end keys",
        "Use the keys in a file exported on another device (/keys export). Type the "
        "passphrase it was written with.",
        "Import",
        "Cancel",
    ),
}

MODES = tuple(_TEXTS)


class KeyDialog(ctk.CTkToplevel):
    """Asks for a passphrase (and in "export"/"import" mode a file); see the module
    docstring. *account* names whose keys they are; *path* fills the file field."""

    def __init__(
        self,
        master: tkinter.Misc,
        mode: str,
        *,
        account: str,
        on_submit: Callable[[str, str], None],
        on_cancel: Callable[[], None],
        path: str = "",
    ) -> None:
        if mode not in _TEXTS:
            raise ValueError(f"unknown key dialog mode {mode!r}")
        super().__init__(master, fg_color=theme.pair("chat_bg"))
        self.mode = mode
        self._on_submit = on_submit
        self._on_cancel = on_cancel
        self._closed = False
        title, text, submit, cancel = _TEXTS[mode]
        self.title(title)
        self.resizable(False, False)
        self.transient(master)
        self.grid_columnconfigure(0, weight=1)
        body = {"font": (theme.FONT_FAMILY, theme.SIZE_BODY), "text_color": theme.pair("text")}
        ctk.CTkLabel(
            self,
            text=title,
            anchor="w",
            font=(theme.FONT_FAMILY, theme.SIZE_TITLE, "bold"),
            text_color=theme.pair("text"),
        ).grid(row=0, column=0, sticky="ew", padx=20, pady=(18, 4))
        ctk.CTkLabel(
            self,
            text=f"{text}\n\nAccount: {account}",
            anchor="w",
            justify="left",
            wraplength=400,
            **body,
        ).grid(row=1, column=0, sticky="ew", padx=20, pady=(0, 10))
        row = 2
        self.path: ctk.CTkEntry | None = None
        if mode in ("export", "import"):
            where = ctk.CTkFrame(self, fg_color="transparent")
            where.grid(row=row, column=0, sticky="ew", padx=20, pady=4)
            where.grid_columnconfigure(0, weight=1)
            self.path = ctk.CTkEntry(where, height=32, placeholder_text="key file", **body)
            self.path.grid(row=0, column=0, sticky="ew", padx=(0, 8))
            if path:
                self.path.insert(0, path)
            ctk.CTkButton(
                where,
                text="Browse\u2026",
                width=80,
                height=32,
                fg_color=theme.pair("side_bg"),
                hover_color=theme.pair("hover_bg"),
                text_color=theme.pair("text"),
                command=self._browse,
            ).grid(row=0, column=1)
            row += 1
        self.passphrase = ctk.CTkEntry(
            self, height=32, show="\u2022", placeholder_text="passphrase", **body
        )
        self.passphrase.grid(row=row, column=0, sticky="ew", padx=20, pady=4)
        row += 1
        self.confirm: ctk.CTkEntry | None = None
        if mode in ("create", "export"):
            self.confirm = ctk.CTkEntry(
                self, height=32, show="\u2022", placeholder_text="the same passphrase again", **body
            )
            self.confirm.grid(row=row, column=0, sticky="ew", padx=20, pady=4)
            row += 1
        self.error = ctk.CTkLabel(
            self,
            text="",
            anchor="w",
            justify="left",
            wraplength=400,
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            text_color=theme.pair("error"),
        )
        self.error.grid(row=row, column=0, sticky="ew", padx=20, pady=(4, 0))
        row += 1
        buttons = ctk.CTkFrame(self, fg_color="transparent")
        buttons.grid(row=row, column=0, sticky="e", padx=20, pady=(10, 18))
        self.cancel_button = ctk.CTkButton(
            buttons,
            text=cancel,
            fg_color=theme.pair("side_bg"),
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("text"),
            command=self.cancel,
        )
        self.cancel_button.grid(row=0, column=0, padx=(0, 8))
        self.submit_button = ctk.CTkButton(
            buttons,
            text=submit,
            fg_color=theme.pair("accent"),
            hover_color=theme.pair("accent_hover"),
            command=self.submit,
        )
        self.submit_button.grid(row=0, column=1)
        for entry in (self.path, self.passphrase, self.confirm):
            if entry is not None:
                entry.bind("<Return>", lambda _e: self.submit())
        self.bind("<Escape>", lambda _e: self.cancel())
        self.protocol("WM_DELETE_WINDOW", self.cancel)
        self._first = self.path if self.path is not None and not path else self.passphrase
        self._place_over(master)
        # Once mapped: a focus given before the window is on screen can be lost.
        self._focus_id: str | None = self.after(50, self._focus_first)

    def _place_over(self, master: tkinter.Misc) -> None:
        """Centre the dialog over the window it belongs to."""
        self.update_idletasks()
        width, height = self.winfo_reqwidth(), self.winfo_reqheight()
        x = master.winfo_rootx() + max(0, (master.winfo_width() - width) // 2)
        y = master.winfo_rooty() + max(0, (master.winfo_height() - height) // 3)
        self.geometry(f"+{x}+{y}")

    def _focus_first(self) -> None:
        self._focus_id = None
        if not self._closed:
            self.lift()
            self._first.focus_set()

    # --- what the user does ----------------------------------------------------------

    def submit(self) -> None:
        """The submit button: check what was typed here, then hand it on."""
        if self._closed or self.busy:
            return
        path = self.path.get().strip() if self.path is not None else ""
        phrase = self.passphrase.get()
        if self.path is not None and not path:
            self.show_error("Give the key file's name (or press Browse\u2026).")
            return
        if not phrase:
            self.show_error("Type the passphrase.")
            return
        if self.confirm is not None:
            if len(phrase) < MIN_PASSPHRASE:
                self.show_error(f"Use at least {MIN_PASSPHRASE} characters.")
                return
            if self.confirm.get() != phrase:
                self.show_error("The two passphrases differ: type the same one twice.")
                self.confirm.delete(0, "end")
                return
        self.set_busy(True)
        self._on_submit(phrase, path)

    def cancel(self) -> None:
        """Cancel: close, and let the caller say what that means. Not while a
        passphrase is being checked (a fraction of a second): its answer decides."""
        if self._closed or self.busy:
            return
        self.close()
        self._on_cancel()

    # --- what the caller does --------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a submitted passphrase is being checked."""
        return str(self.submit_button.cget("state")) == "disabled"

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons while the passphrase is checked (off the Tk thread)."""
        state = "disabled" if busy else "normal"
        self.submit_button.configure(state=state)
        self.cancel_button.configure(state=state)
        if busy:
            self.error.configure(text="Checking\u2026", text_color=theme.pair("muted"))

    def show_error(self, text: str) -> None:
        """Say what was wrong and let the user try again (the passphrase is cleared)."""
        if self._closed:
            return
        self.set_busy(False)
        self.error.configure(text=text, text_color=theme.pair("error"))
        self.passphrase.delete(0, "end")
        if self.confirm is not None:
            self.confirm.delete(0, "end")
        self.passphrase.focus_set()

    def close(self) -> None:
        """Close the dialog (after a good passphrase, or on cancel)."""
        if self._closed:
            return
        self._closed = True
        if self._focus_id is not None:
            self.after_cancel(self._focus_id)
            self._focus_id = None
        self.destroy()

    @property
    def closed(self) -> bool:
        """True once the dialog is gone."""
        return self._closed

    def error_text(self) -> str:
        """The error shown (tests)."""
        return str(self.error.cget("text"))

    def _browse(self) -> None:
        if self.path is None:
            return
        if self.mode == "export":
            chosen = filedialog.asksaveasfilename(
                parent=self, title="Export keys to", defaultextension=".json"
            )
        else:
            chosen = filedialog.askopenfilename(parent=self, title="Import keys from")
        if chosen:
            self.path.delete(0, "end")
            self.path.insert(0, chosen)
