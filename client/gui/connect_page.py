"""The connect screen: host, port, CA file (with a
file picker), nick, password, "create account", the servers found on the
LAN (click one to fill in its address), and one panel under the Connect
button that explains a failure, asks to trust a fingerprint on first use,
or warns loudly that a pinned certificate changed. An invite line pasted
into the Server field fills host and port and carries its fingerprint.

It only collects and shows; the app decides what happens (callbacks), so
nothing here connects to a server or writes the settings files. It listens
for mDNS announcements (client/discovery.py) unless PARLEY_MDNS=off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from tkinter import filedialog
from typing import Any

import customtkinter as ctk

from parley_chat.client import discovery
from parley_chat.client.addresses import parse_addresses
from parley_chat.client.discovery import DiscoveredServer, ServerBrowser
from parley_chat.protocol.invite import InviteError, looks_like_invite, parse_invite

from ..settings import Settings
from . import theme
from .connect_policy import (
    ConnectForm,
    Problem,
    format_fingerprint,
    format_short_fingerprint,
    initial_ca_file,
)

#: How often the list of servers found is refreshed from the browser (ms).
FOUND_POLL_MS = 500
#: At most this many found servers are listed (the first, by name).
MAX_FOUND = 4
_CA_HINT = "Empty: check the server's fingerprint yourself on first use (like SSH)."

_ENTRY = {
    "height": 36,
    "corner_radius": 8,
    "border_width": 1,
    "border_color": theme.pair("border"),
    "fg_color": theme.pair("chat_bg"),
    "text_color": theme.pair("text"),
    "font": (theme.FONT_FAMILY, theme.SIZE_BODY),
}


class ConnectPage(ctk.CTkFrame):
    """The connect form, centred on the window. Callbacks: *on_connect* (ConnectForm),
    *on_trust* (accept the fingerprint shown), *on_cancel* (dismiss the panel),
    *on_forget_pin* (remove a pin after a changed-certificate warning)."""

    def __init__(
        self,
        master: ctk.CTkBaseClass,
        *,
        on_connect: Callable[[ConnectForm], None],
        on_trust: Callable[[], None],
        on_cancel: Callable[[], None],
        on_forget_pin: Callable[[], None],
        discover: bool | None = None,
    ) -> None:
        super().__init__(master, corner_radius=0, fg_color=theme.pair("side_bg"))
        self._on_connect = on_connect
        #: The invite last applied: its fingerprint goes with the form while
        #: host and port are still the invite's.
        self._invite: tuple[str, int, str] | None = None
        self._found: list[DiscoveredServer] = []
        self._found_buttons: list[ctk.CTkButton] = []
        self._browser: ServerBrowser | None = None
        self._poll_id: str | None = None
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(0, weight=1)
        self.grid_rowconfigure(2, weight=1)

        card = ctk.CTkFrame(
            self,
            width=480,
            corner_radius=16,
            fg_color=theme.pair("chat_bg"),
            border_width=1,
            border_color=theme.pair("border"),
        )
        card.grid(row=1, column=0, padx=24, pady=16)
        card.grid_columnconfigure(0, weight=1)
        card.grid_columnconfigure(1, weight=0)
        self.card = card

        top = ctk.CTkFrame(card, fg_color="transparent")
        top.grid(row=0, column=0, columnspan=2, sticky="ew", padx=36, pady=(26, 0))
        ctk.CTkLabel(
            top,
            text="p",
            width=44,
            height=44,
            corner_radius=12,
            fg_color=theme.pair("accent"),
            text_color="#ffffff",
            font=(theme.FONT_FAMILY, 26, "bold"),
        ).grid(row=0, column=0, rowspan=2, padx=(0, 14))
        ctk.CTkLabel(
            top,
            text="Sign in to parley",
            anchor="w",
            height=26,
            font=(theme.FONT_FAMILY, 22, "bold"),
            text_color=theme.pair("text"),
        ).grid(row=0, column=1, sticky="w")
        ctk.CTkLabel(
            top,
            text="Secure chat on your local network",
            anchor="w",
            height=18,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
            text_color=theme.pair("muted"),
        ).grid(row=1, column=1, sticky="w")

        form = self.form = ctk.CTkFrame(card, fg_color="transparent")
        form.grid(row=1, column=0, columnspan=2, sticky="ew", padx=36, pady=(8, 0))
        form.grid_columnconfigure(0, weight=1)
        form.grid_columnconfigure(1, weight=0)

        self.host = self._field(form, "Server", 0, 0, width=290)
        self.port = self._field(form, "Port", 0, 1, width=100)
        ca_row = self._label(form, "CA certificate", 2, 0)
        ca_row.grid(columnspan=2)
        ca_box = ctk.CTkFrame(form, fg_color="transparent")
        ca_box.grid(row=3, column=0, columnspan=2, sticky="ew")
        ca_box.grid_columnconfigure(0, weight=1)
        self.ca_file = ctk.CTkEntry(ca_box, placeholder_text="none: trust on first use", **_ENTRY)
        self.ca_file.grid(row=0, column=0, sticky="ew")
        self.browse_button = ctk.CTkButton(
            ca_box,
            text="Browse\u2026",
            width=90,
            height=36,
            corner_radius=8,
            fg_color=theme.pair("side_bg"),
            hover_color=theme.pair("hover_bg"),
            text_color=theme.pair("text"),
            border_width=1,
            border_color=theme.pair("border"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY),
            command=self._browse,
        )
        self.browse_button.grid(row=0, column=1, padx=(8, 0))
        self.ca_hint = ctk.CTkLabel(
            form,
            text=_CA_HINT,
            justify="left",
            anchor="w",
            font=(theme.FONT_FAMILY, 11),
            text_color=theme.pair("muted"),
        )
        self.ca_hint.grid(row=4, column=0, columnspan=2, sticky="w", pady=(4, 0))
        # Nick and password side by side, in equal halves.
        who = ctk.CTkFrame(form, fg_color="transparent")
        who.grid(row=5, column=0, columnspan=2, sticky="ew")
        who.grid_columnconfigure((0, 1), weight=1, uniform="who")
        self.nick = self._field(who, "Nick", 0, 0, width=150)
        self.password = self._field(who, "Password", 0, 1, width=150, show="\u2022")
        self.register = ctk.CTkCheckBox(
            form,
            text="Create account (registers this nick if it is free)",
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
            text_color=theme.pair("text"),
            checkbox_width=20,
            checkbox_height=20,
            corner_radius=5,
            border_width=2,
            fg_color=theme.pair("accent"),
            hover_color=theme.pair("accent_hover"),
        )
        self.register.grid(row=9, column=0, columnspan=2, sticky="w", pady=(12, 0))

        # Servers found by mDNS: shown only when there are some.
        self.found_frame = ctk.CTkFrame(form, fg_color="transparent")
        self.found_frame.grid_columnconfigure(0, weight=1)
        ctk.CTkLabel(
            self.found_frame,
            text="On your network (click to fill in)",
            anchor="w",
            height=20,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
            text_color=theme.pair("muted"),
        ).grid(row=0, column=0, sticky="w", pady=(10, 3))

        self.connect_button = ctk.CTkButton(
            card,
            text="Connect",
            height=42,
            corner_radius=10,
            fg_color=theme.pair("accent"),
            text_color="#ffffff",
            hover_color=theme.pair("accent_hover"),
            font=(theme.FONT_FAMILY, theme.SIZE_BODY + 1, "bold"),
            command=self.submit,
        )
        self.connect_button.grid(row=2, column=0, columnspan=2, sticky="ew", padx=36, pady=(16, 0))

        # the panel: a failure, a first-use trust prompt, or a changed-certificate warning
        self.panel = ctk.CTkFrame(card, corner_radius=10)
        self.panel.grid_columnconfigure(0, weight=1)
        self.panel_title = ctk.CTkLabel(
            self.panel,
            text="",
            anchor="w",
            justify="left",
            font=(theme.FONT_FAMILY, theme.SIZE_BODY, "bold"),
        )
        self.panel_title.grid(row=0, column=0, sticky="ew", padx=14, pady=(12, 2))
        self.panel_detail = ctk.CTkLabel(
            self.panel,
            text="",
            anchor="w",
            justify="left",
            wraplength=376,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
        )
        self.panel_detail.grid(row=1, column=0, sticky="ew", padx=14)
        self.panel_fingerprint = ctk.CTkLabel(
            self.panel,
            text="",
            anchor="w",
            justify="left",
            font=(theme.MONO_FAMILY, 13),
        )
        self.panel_buttons = ctk.CTkFrame(self.panel, fg_color="transparent")
        self.trust_button = self._panel_button("Trust and connect", on_trust, primary=True)
        self.forget_button = self._panel_button("Forget the old certificate", on_forget_pin)
        self.cancel_button = self._panel_button("Cancel", on_cancel)
        self._panel_kind = ""
        card.grid_rowconfigure(4, minsize=28)

        for entry in (self.host, self.port, self.ca_file, self.nick, self.password):
            entry.bind("<Return>", lambda _e: self.submit())
        # A pasted invite is split into the fields as soon as it is there.
        for sequence in ("<KeyRelease>", "<FocusOut>", "<<Paste>>"):
            self.host.bind(sequence, lambda _e: self.after_idle(self.apply_invite), add=True)

        if discovery.enabled() if discover is None else discover:
            self._browser = ServerBrowser(discovery.interfaces_from_env()).start()
            self._poll_id = self.after(FOUND_POLL_MS, self._poll_found)

    # --- building ------------------------------------------------------------------------

    @staticmethod
    def _label(master: ctk.CTkFrame, text: str, row: int, column: int) -> ctk.CTkLabel:
        label = ctk.CTkLabel(
            master,
            text=text,
            anchor="w",
            height=20,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL, "bold"),
            text_color=theme.pair("muted"),
        )
        label.grid(
            row=row, column=column, sticky="w", pady=(10, 3), padx=(0 if column == 0 else 10, 0)
        )
        return label

    def _field(
        self,
        master: ctk.CTkFrame,
        label: str,
        row: int,
        column: int,
        *,
        width: int,
        columnspan: int = 1,
        show: str = "",
    ) -> ctk.CTkEntry:
        self._label(master, label, row, column).grid(columnspan=columnspan)
        entry = ctk.CTkEntry(master, width=width, show=show, **_ENTRY)
        entry.grid(
            row=row + 1,
            column=column,
            columnspan=columnspan,
            sticky="ew",
            padx=(0 if column == 0 else 10, 0),
        )
        return entry

    def _panel_button(
        self, text: str, command: Callable[[], None], primary: bool = False
    ) -> ctk.CTkButton:
        colours: dict[str, Any]
        if primary:
            colours = {
                "fg_color": theme.pair("accent"),
                "hover_color": theme.pair("accent_hover"),
                "text_color": "#ffffff",
            }
        else:
            colours = {
                "fg_color": "transparent",
                "hover_color": theme.pair("hover_bg"),
                "text_color": theme.pair("text"),
                "border_width": 1,
                "border_color": theme.pair("border"),
            }
        return ctk.CTkButton(
            self.panel_buttons,
            text=text,
            height=32,
            corner_radius=8,
            font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1, "bold"),
            command=command,
            **colours,
        )

    # --- values ----------------------------------------------------------------------------

    def set_values(self, settings: Settings) -> None:
        """Fill the form from remembered *settings* (the password stays empty)."""
        for entry, value in (
            (self.host, settings.host),
            (self.port, str(settings.port)),
            (self.ca_file, initial_ca_file(settings.ca_file)),
            (self.nick, settings.nick),
        ):
            entry.delete(0, "end")
            if value:
                entry.insert(0, value)
        self.password.delete(0, "end")
        if settings.register:
            self.register.select()
        else:
            self.register.deselect()

    def get_form(self) -> ConnectForm:
        """The form's values (an unparsable port comes back as 0)."""
        try:
            port = int(self.port.get().strip())
        except ValueError:
            port = 0
        host = self.host.get().strip()
        servers = ""
        named_port = host.count(":") == 1 or host.startswith("[")
        if not looks_like_invite(host) and ("," in host or named_port):
            # host:port,host2:port2 (failover): the first is the server, the rest follow.
            servers = host
            try:
                (host, port), *_ = parse_addresses(servers, port)
            except ValueError:
                pass  # check_form says what is wrong
        expected = ""
        if self._invite is not None and self._invite[:2] == (host, port):
            expected = self._invite[2]
        return ConnectForm(
            host=host,
            port=port,
            servers=servers,
            ca_file=self.ca_file.get().strip(),
            nick=self.nick.get().strip(),
            password=self.password.get(),
            register=bool(self.register.get()),
            expected_fingerprint=expected,
        )

    def submit(self) -> None:
        """Connect with the form's values (the button and Enter come here)."""
        if self.connect_button.cget("state") == "disabled":
            return
        if looks_like_invite(self.host.get()):
            try:
                self.apply_invite(strict=True)
            except InviteError as exc:
                self.show_problem(
                    Problem(
                        "Check the invite",
                        f"{exc}. Paste the whole line the server's operator gave you "
                        "(parley-server invite prints it), or type the address.",
                    )
                )
                return
        self._on_connect(self.get_form())

    def apply_invite(self, strict: bool = False) -> bool:
        """If the Server field holds an invite line, split it into host and port,
        clear the CA file (the invite's fingerprint decides trust) and say so.
        Returns True when one was applied; an invalid one is left in the field
        (InviteError when *strict*)."""
        text = self.host.get()
        if not looks_like_invite(text):
            self._refresh_invite_note()
            return False
        try:
            invite = parse_invite(text)
        except InviteError:
            if strict:
                raise
            return False
        self.host.delete(0, "end")
        self.host.insert(0, invite.host)
        self.port.delete(0, "end")
        self.port.insert(0, str(invite.port))
        if invite.fingerprint:
            self.ca_file.delete(0, "end")
            self._invite = (invite.host, invite.port, invite.fingerprint)
        else:
            self._invite = None
        self._refresh_invite_note()
        return True

    def _refresh_invite_note(self) -> None:
        form = self.get_form()
        if form.expected_fingerprint and not form.uses_ca:
            self.ca_hint.configure(
                text="From the invite: the server must offer "
                f"{format_short_fingerprint(form.expected_fingerprint)}",
                text_color=theme.pair("text"),
            )
        else:
            self.ca_hint.configure(text=_CA_HINT, text_color=theme.pair("muted"))

    # --- servers found on the LAN ---------------------------------------------------------

    @property
    def found_servers(self) -> list[DiscoveredServer]:
        """The servers listed now."""
        return list(self._found)

    def show_servers(self, servers: list[DiscoveredServer]) -> None:
        """List *servers* (at most MAX_FOUND); clicking one fills in host and port."""
        self._found = list(servers)[:MAX_FOUND]
        for button in self._found_buttons:
            button.destroy()
        self._found_buttons = []
        for i, server in enumerate(self._found):
            fp = format_short_fingerprint(server.fingerprint)[:19] if server.fingerprint else ""
            button = ctk.CTkButton(
                self.found_frame,
                text=f"{server.name}   {server.where}" + (f"   {fp}\u2026" if fp else ""),
                anchor="w",
                height=28,
                corner_radius=8,
                fg_color=theme.pair("side_bg"),
                hover_color=theme.pair("hover_bg"),
                text_color=theme.pair("text"),
                border_width=1,
                border_color=theme.pair("border"),
                font=(theme.FONT_FAMILY, theme.SIZE_SMALL + 1),
                command=lambda s=server: self.choose_server(s),
            )
            button.grid(row=i + 1, column=0, sticky="ew", pady=(0, 4))
            self._found_buttons.append(button)
        if self._found:
            self.found_frame.grid(row=10, column=0, columnspan=2, sticky="ew")
        else:
            self.found_frame.grid_remove()

    @property
    def found_buttons(self) -> list[ctk.CTkButton]:
        """The buttons of the servers listed (for tests)."""
        return list(self._found_buttons)

    def choose_server(self, server: DiscoveredServer) -> None:
        """Fill in *server*'s address and port. Its advertised fingerprint is not
        trusted (anyone can advertise): trust is settled as for a typed address."""
        for entry, value in ((self.host, server.host), (self.port, str(server.port))):
            entry.delete(0, "end")
            entry.insert(0, value)
        self._refresh_invite_note()
        self.focus_first_empty()

    def _poll_found(self) -> None:
        # zeroconf fills the browser on its own threads; Tk is touched only here.
        self._poll_id = None
        browser = self._browser
        if browser is None:
            return
        if browser.changed.is_set():
            browser.changed.clear()
            self.show_servers(browser.servers())
        self._poll_id = self.after(FOUND_POLL_MS, self._poll_found)

    def destroy(self) -> None:
        """Stop listening for servers, then destroy the widgets."""
        if self._poll_id is not None:
            self.after_cancel(self._poll_id)
            self._poll_id = None
        browser, self._browser = self._browser, None
        if browser is not None:  # closing waits for zeroconf's threads: not on Tk's
            threading.Thread(target=browser.close, name="mdns-close", daemon=True).start()
        super().destroy()

    def focus_first_empty(self) -> None:
        """Focus the first field the user still has to fill (usually the password)."""
        for entry in (self.host, self.port, self.nick, self.password):
            if not entry.get():
                entry.focus_set()
                return
        self.password.focus_set()

    # --- states ------------------------------------------------------------------------------

    def set_busy(self, text: str | None) -> None:
        """Disable the form while connecting (*text* on the button), or enable it (None)."""
        if text is None:
            self.connect_button.configure(state="normal", text="Connect")
        else:
            self.connect_button.configure(state="disabled", text=text)

    def hide_panel(self) -> None:
        """Remove the panel."""
        self._panel_kind = ""
        self.panel.grid_remove()
        self._show_form()

    def show_problem(self, problem: Problem) -> None:
        """Explain a failure; a changed certificate gets the loud version."""
        self.set_busy(None)
        if problem.severity == "danger":
            kind, buttons = "danger", [self.forget_button, self.cancel_button]
            lines = []
            if problem.pinned_fingerprint:
                lines.append(
                    "Trusted before:  " + format_short_fingerprint(problem.pinned_fingerprint)
                )
            if problem.fingerprint:
                lines.append("Offered now:     " + format_short_fingerprint(problem.fingerprint))
            fingerprint = "\n".join(lines)
        else:
            kind, buttons = ("info" if problem.severity == "info" else "error"), []
            fingerprint = (
                "SHA-256 of the certificate offered:\n" + format_fingerprint(problem.fingerprint)
                if problem.fingerprint
                else ""
            )
        self._show_panel(kind, problem.title, problem.detail, fingerprint, buttons)

    def show_trust_prompt(self, where: str, fingerprint: str, *, ca: bool = True) -> None:
        """Ask whether to trust what *where* offered (its CA when *ca*, else its own
        certificate), by the short fingerprint the server printed at start."""
        self.set_busy(None)
        what = "CA" if ca else "server certificate"
        keep = (
            "its CA, so a renewed server certificate is still trusted, and refuse a "
            "server with another CA"
            if ca
            else "this certificate and refuse any other from this server"
        )
        self._show_panel(
            "warn",
            f"First connection to {where}",
            f"Compare this fingerprint with the {what} fingerprint the server printed "
            f"when it started (ask its operator). Trust it only if they match: parley "
            f"will remember {keep}.",
            f"{what} SHA-256:\n{format_short_fingerprint(fingerprint)}",
            [self.trust_button, self.cancel_button],
        )

    @property
    def panel_kind(self) -> str:
        """ "error", "warn" (trust prompt), "danger" (changed certificate) or "" (hidden)."""
        return self._panel_kind

    def panel_text(self) -> str:
        """Everything the panel says (for tests)."""
        if not self._panel_kind:
            return ""
        return "\n".join(
            str(w.cget("text"))
            for w in (self.panel_title, self.panel_detail, self.panel_fingerprint)
        )

    def _show_panel(
        self,
        kind: str,
        title: str,
        detail: str,
        fingerprint: str,
        buttons: list[ctk.CTkButton],
    ) -> None:
        self._panel_kind = kind
        if kind in ("warn", "danger"):
            # A decision about trust replaces the form until it is made.
            self.form.grid_remove()
            self.connect_button.grid_remove()
            place = {"row": 1, "pady": (22, 0)}
        else:
            self._show_form()
            place = {"row": 3, "pady": (12, 0)}
        if kind in ("warn", "info"):
            bg, fg = theme.pair("warn_bg"), theme.pair("warn_text")
        else:
            bg, fg = theme.pair("danger_bg"), theme.pair("danger_text")
        border = 2 if kind == "danger" else 0
        self.panel.configure(fg_color=bg, border_width=border, border_color=theme.pair("error"))
        self.panel_title.configure(
            text=title,
            text_color=fg,
            font=(theme.FONT_FAMILY, theme.SIZE_BODY + (2 if kind == "danger" else 0), "bold"),
        )
        self.panel_detail.configure(text=detail, text_color=fg)
        if fingerprint:
            self.panel_fingerprint.configure(text=fingerprint, text_color=fg)
            self.panel_fingerprint.grid(row=2, column=0, sticky="ew", padx=14, pady=(8, 0))
        else:
            self.panel_fingerprint.configure(text="")
            self.panel_fingerprint.grid_remove()
        for button in (self.trust_button, self.forget_button, self.cancel_button):
            button.grid_remove()
        for i, button in enumerate(buttons):
            button.grid(row=0, column=i, padx=(0, 8))
        if buttons:
            self.panel_buttons.grid(row=3, column=0, sticky="w", padx=14, pady=(10, 0))
        else:
            self.panel_buttons.grid_remove()
        self.panel.grid(column=0, columnspan=2, sticky="ew", padx=36, **place)
        self.panel.grid_rowconfigure(4, minsize=12)

    def _show_form(self) -> None:
        self.form.grid()
        self.connect_button.grid()

    def _browse(self) -> None:
        path = filedialog.askopenfilename(
            parent=self,
            title="Choose the server's CA certificate",
            filetypes=[("PEM certificates", "*.pem *.crt"), ("All files", "*")],
        )
        if path:
            self.ca_file.delete(0, "end")
            self.ca_file.insert(0, path)
