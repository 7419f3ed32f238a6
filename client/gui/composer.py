"""Where the user writes: a multi-line input (Enter
sends, Shift+Enter starts a new line, a pasted block shows as its lines),
nick completion (Tab, also after "@"), Up/Down recall of earlier messages,
command hints while a "/" command is typed, the Send button, and the banner
above them that says when the user is out of the chat and offers Rejoin.

Rules this module keeps:
1. The banner sits above the input in the layout (never over the messages),
   and its text wraps at word boundaries to the width it has.
2. Up/Down recall only when the cursor is on the first/last line of what is
   typed: inside a multi-line draft they move the cursor as usual.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import customtkinter as ctk

from . import commands, theme

#: Lines kept for Up/Down recall.
_RECALL = 100
#: The input grows with what is typed up to this many lines, then scrolls.
MAX_LINES = 6
#: The word being completed: an optional "@" then nick characters, before the cursor.
_WORD = re.compile(r"(@?)([\w-]*)$")


def complete(text: str, candidates: Sequence[str]) -> list[str]:
    """The nicks in *candidates* that start with *text* (case-insensitive), in order."""
    low = text.lower()
    return [c for c in candidates if c.lower().startswith(low)]


class Composer(ctk.CTkFrame):
    """The input area. *on_submit* (text) gets each non-blank message; *on_banner_action*
    is the banner button's command (Rejoin); *nicks* () gives the nicks to complete;
    *more_help* are /help lines of commands handled outside commands.py (the
    end-to-end ones), hinted as the others are."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_submit: Callable[[str], None],
        on_banner_action: Callable[[], None],
        nicks: Callable[[], Sequence[str]] = lambda: (),
        font_size: int = theme.SIZE_BODY,
        more_help: Sequence[str] = (),
    ) -> None:
        super().__init__(master, corner_radius=0, fg_color=theme.pair("chat_bg"))
        self._on_submit = on_submit
        self._nicks = nicks
        self._more_help = tuple(more_help)  # commands handled outside commands.py (e2e)
        self.grid_columnconfigure(0, weight=1)

        self.banner = ctk.CTkFrame(self, corner_radius=10, fg_color=theme.pair("warn_bg"))
        self.banner.grid_columnconfigure(0, weight=1)
        self.banner_label = ctk.CTkLabel(
            self.banner,
            text="",
            anchor="w",
            justify="left",
            wraplength=400,
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
        self.banner.bind("<Configure>", self._wrap_banner, add=True)

        self.hint_label = ctk.CTkLabel(
            self,
            text="",
            anchor="w",
            justify="left",
            font=(theme.MONO_FAMILY, theme.SIZE_SMALL),
            text_color=theme.pair("muted"),
        )

        box = ctk.CTkFrame(
            self,
            corner_radius=12,
            fg_color=theme.pair("side_bg"),
            border_width=1,
            border_color=theme.pair("border"),
        )
        box.grid(row=2, column=0, sticky="ew", padx=20, pady=(6, 16))
        box.grid_columnconfigure(0, weight=1)
        self._box = box
        self.entry = ctk.CTkTextbox(
            box,
            height=30,
            border_width=0,
            corner_radius=10,
            fg_color="transparent",
            text_color=theme.pair("text"),
            font=(theme.FONT_FAMILY, font_size + 1),
            wrap="word",
            activate_scrollbars=False,
        )
        self.entry.grid(row=0, column=0, sticky="ew", padx=(10, 4), pady=5)
        self.input = self.entry._textbox  # the real tkinter.Text
        self.input.configure(undo=True, maxundo=50)
        self.placeholder = ctk.CTkLabel(
            box,
            text="Message",
            anchor="w",
            fg_color=theme.pair("side_bg"),
            text_color=theme.pair("muted"),
            font=(theme.FONT_FAMILY, font_size + 1),
            height=20,
        )
        self.placeholder.bind("<Button-1>", lambda _e: self.focus_input())
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
        self.send_button.grid(row=0, column=1, padx=(4, 6), pady=6, sticky="s")
        t = self.input
        t.bind("<Return>", self._on_return)
        t.bind("<KP_Enter>", self._on_return)
        t.bind("<Shift-Return>", self._newline)
        t.bind("<Shift-KP_Enter>", self._newline)
        t.bind("<Tab>", self._on_tab)
        t.bind("<Up>", lambda _e: self._recall(-1))
        t.bind("<Down>", lambda _e: self._recall(1))
        t.bind("<Escape>", lambda _e: self.clear())
        # Alt+Up/Down belong to the window (switch conversation): without these
        # more specific bindings, the plain Up/Down above would catch them.
        t.bind("<Alt-Up>", lambda _e: None)
        t.bind("<Alt-Down>", lambda _e: None)
        t.bind("<<Modified>>", self._on_modified, add=True)
        t.bind("<<Paste>>", self._on_paste)
        self._history: list[str] = []
        self._recall_pos = 0
        self._completion: tuple[int, str, list[str], int, str] | None = None
        self._completed_text = ""
        self._lines_shown = 1
        self.after_idle(self._update_placeholder)

    # --- the text -------------------------------------------------------------------

    def get(self) -> str:
        """What is typed."""
        return self.input.get("1.0", "end-1c")

    def set_text(self, text: str) -> None:
        """Replace what is typed with *text*, cursor at the end."""
        self.input.delete("1.0", "end")
        self.input.insert("1.0", text)
        self.input.mark_set("insert", "end-1c")
        self._changed()

    def clear(self) -> str:
        """Empty the input."""
        self.set_text("")
        return "break"

    def submit(self) -> None:
        """Send what is typed (the Send button and Enter both come here)."""
        text = self.get()
        if not text.strip():
            return
        self.set_text("")
        if not self._history or self._history[-1] != text:
            self._history.append(text)
            del self._history[:-_RECALL]
        self._recall_pos = len(self._history)
        self._on_submit(text)

    def set_placeholder(self, text: str) -> None:
        """The hint shown while the input is empty, e.g. "Message #lobby"."""
        if self.placeholder.cget("text") != text:
            self.placeholder.configure(text=text)

    def set_font_size(self, size: int) -> None:
        """Draw the input at *size* pixels (font zoom)."""
        self.entry.configure(font=(theme.FONT_FAMILY, size + 1))
        self.placeholder.configure(font=(theme.FONT_FAMILY, size + 1))
        self._lines_shown = 0
        self._changed()

    # --- the banner --------------------------------------------------------------------

    def show_banner(self, text: str, button: str = "Rejoin") -> None:
        """Show the banner with *text* and its button labelled *button*."""
        self.banner_label.configure(text=text)
        self.banner_button.configure(text=button)
        self.banner.grid(row=0, column=0, sticky="ew", padx=20, pady=(8, 0))
        self._wrap_banner()

    def hide_banner(self) -> None:
        """Hide the banner."""
        self.banner.grid_remove()

    @property
    def banner_visible(self) -> bool:
        """True while the banner is shown."""
        return bool(self.banner.grid_info())

    def _wrap_banner(self, _event: object = None) -> None:
        # Wrap at words to the width the label really has (never cut a word off).
        width = self.banner.winfo_width() or self.winfo_width()
        room = max(120, width - self.banner_button.winfo_reqwidth() - 60)
        if self.banner_label.cget("wraplength") != room:
            self.banner_label.configure(wraplength=room)

    # --- focus -------------------------------------------------------------------------

    def focus_input(self) -> None:
        """Put the keyboard focus in the input."""
        self.input.focus_set()

    @property
    def hint(self) -> str:
        """The command or nick hint shown above the input ("" when none)."""
        return str(self.hint_label.cget("text")) if self.hint_label.grid_info() else ""

    # --- keys ----------------------------------------------------------------------------

    def _on_return(self, _event: object) -> str:
        self.submit()
        return "break"

    def _newline(self, _event: object) -> str:
        self.input.insert("insert", "\n")
        self.input.see("insert")
        self._changed()
        return "break"

    def _on_paste(self, _event: object) -> str:
        try:
            text = self.clipboard_get()
        except Exception:
            return "break"
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        try:
            self.input.delete("sel.first", "sel.last")
        except Exception:
            pass
        self.input.insert("insert", text)
        self.input.see("insert")
        self._changed()
        return "break"

    def _on_tab(self, _event: object) -> str:
        """Complete the nick before the cursor; Tab again cycles through the matches."""
        before = self.input.get("insert linestart", "insert")
        line_start = self.input.index("insert linestart")
        comp = self._completion
        if comp is not None and len(before) == comp[0] + len(comp[1]) and before.endswith(comp[1]):
            start, _shown, matches, i, at = comp
            i = (i + 1) % len(matches)
        else:
            m = _WORD.search(before)
            at, prefix = (m.group(1), m.group(2)) if m else ("", "")
            if not prefix and not at:
                return "break"  # Tab never moves the focus out of the input
            matches = complete(prefix, self._nicks())
            if not matches:
                return "break"
            start = len(before) - len(prefix) - len(at)
            i = 0
        word = f"{at}{matches[i]}"
        # At the very start of the message, a bare nick is an address: "alice: ".
        suffix = ": " if start == 0 and not at and line_start == "1.0" else " "
        self.input.delete(f"{line_start}+{start}c", "insert")
        self.input.insert("insert", word + suffix)
        self._completion = (start, word + suffix, matches, i, at)
        self._changed(keep_completion=True)
        return "break"

    def _recall(self, step: int) -> str | None:
        line = int(self.input.index("insert").split(".")[0])
        last = int(self.input.index("end-1c").split(".")[0])
        if (step < 0 and line > 1) or (step > 0 and line < last):
            return None  # move inside a multi-line draft
        if not self._history:
            return "break"
        self._recall_pos = max(0, min(len(self._history), self._recall_pos + step))
        text = self._history[self._recall_pos] if self._recall_pos < len(self._history) else ""
        self.set_text(text)
        return "break"

    def _on_modified(self, _event: object) -> None:
        if self.input.edit_modified():
            self.input.edit_modified(False)
            self._changed()

    def changed(self) -> None:
        """The text changed from outside the input's own keys: update hints and height."""
        self._changed()

    def _changed(self, keep_completion: bool = False) -> None:
        if keep_completion:
            self._completed_text = self.get()
        elif self._completion is not None and self.get() != self._completed_text:
            self._completion = None  # typed something else: the next Tab starts afresh
        self._update_placeholder()
        self._update_hint()
        self._fit_height()

    def _update_placeholder(self) -> None:
        if self.get():
            self.placeholder.place_forget()
        elif not self.placeholder.winfo_ismapped():
            self.placeholder.place(x=16, rely=0.5, anchor="w")

    def _update_hint(self) -> None:
        text = self.get()
        hint = ""
        if text.startswith("/") and not text.startswith("//") and "\n" not in text:
            head, space, _rest = text[1:].partition(" ")
            lines = [
                line
                for line in (*commands.help_lines(), *self._more_help)
                if line[1:].lower().startswith(head.lower())
                and (not space or line[1:].split(" ")[0].lower() == head.lower())
            ]
            hint = "\n".join(lines) if lines else "no such command: /help lists them"
        else:
            before = self.input.get("insert linestart", "insert")
            m = re.search(r"(?:^|\s)@([\w-]*)$", before)
            if m is not None:
                names = complete(m.group(1), self._nicks())[:6]
                hint = ("Tab: " + "  ".join(names)) if names else ""
        if hint:
            if self.hint_label.cget("text") != hint:
                self.hint_label.configure(text=hint)
            if not self.hint_label.grid_info():
                self.hint_label.grid(row=1, column=0, sticky="ew", padx=28, pady=(6, 0))
        elif self.hint_label.grid_info():
            self.hint_label.grid_remove()

    def _fit_height(self) -> None:
        # Grow with the display lines (wrapped ones count), up to MAX_LINES.
        try:
            count = self.input.count("1.0", "end", "displaylines")
            lines = max(1, min(MAX_LINES, int(count[0]) if count else 1))
        except Exception:
            lines = 1
        if lines == self._lines_shown:
            return
        self._lines_shown = lines
        import tkinter.font as tkfont

        linespace = tkfont.Font(font=self.input.cget("font")).metrics("linespace")
        # What the text box adds around its text (border spacing, the inner
        # widget's padding), measured once it is on screen.
        inner = self.input.winfo_height()
        overhead = self.entry.winfo_height() - inner if inner > 1 else 12
        pad = 2 * (int(self.input.cget("pady")) + int(self.input.cget("borderwidth")))
        self.entry.configure(height=max(30, lines * linespace + max(overhead, 0) + pad + 4))
        if lines < MAX_LINES:
            # All of it fits once the new height is laid out: show it from the top
            # (a scroll made while the box was smaller would cut the first line).
            self.after_idle(lambda: self.input.yview_moveto(0.0))
