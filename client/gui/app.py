"""App, the root window. It owns the ChatClient, wires the
views to the model, and runs the one pump that brings the network's events
into the Tk thread.

THE RULES:
1. Only the Tk thread touches widgets. The network lives on ChatClient's own
   I/O thread; blocking calls (connect, rejoin, close, the certificate probe)
   run on short-lived worker threads (jobs.py) that touch nothing but the
   client and never hold a reference to a Tk object; their results come back
   to the Tk thread through a queue.
2. One pump, re-armed with after(), drains both queues in bounded slices:
   at most PUMP_MAX_EVENTS events or PUMP_SLICE seconds per tick, so a flood
   of messages never stalls the event loop. A backlog re-arms it after 1 ms
   (input and redraws get their turn in between); otherwise every 15 ms.
3. Events only change the model (client/gui/model.py) and mark views dirty;
   each tick then updates each dirty view once: all new lines of the open
   conversation go in with one text insert.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import tkinter
from collections.abc import Callable, Mapping
from typing import Any

import customtkinter as ctk

from parley_chat.client import (
    Acked,
    BatchEnded,
    BatchStarted,
    ChatClient,
    ClientEvent,
    Connected,
    ConversationsListed,
    Disconnected,
    ErrorReply,
    MessageReceived,
    PresenceChanged,
    ReadMoved,
    Reconnecting,
    RoomJoined,
    RoomLeft,
    RoomsListed,
)
from parley_chat.client.addresses import format_address
from parley_chat.protocol import DEFAULT_ROOM, Message, ProtocolError, fold
from parley_chat.protocol.vocab import BatchKind

from ..e2e.session import E2ENotice
from ..settings import Pin, Settings, SettingsStore
from . import commands, moderation, theme
from .chat_view import ChatView
from .composer import Composer
from .connect_flow import ConnectFlow
from .connect_page import ConnectPage
from .connect_policy import ConnectForm, Problem, describe_failure, plain_reason
from .e2e import HELP_LINES as E2E_HELP_LINES
from .e2e import DesktopE2E, session_of
from .jobs import Jobs
from .model import SEARCH_KEY, ChatModel, Conversation, Line, room_key
from .notify import Backend, Notifier
from .sidebar import Sidebar
from .statusbar import StatusBar
from .userlist import UserList

log = logging.getLogger("parley.gui")

#: At most this many events are handled per pump tick ...
PUMP_MAX_EVENTS = 200
#: ... and at most this long is spent on them (seconds).
PUMP_SLICE = 0.015
#: The pump's period when the queues are empty (milliseconds).
PUMP_IDLE_MS = 15
#: How often the last shown message id is written to disk, at most (seconds).
LAST_SEEN_SAVE_INTERVAL = 1.0
#: Messages fetched per "load older" page, and for context after a restart.
PAGE = 50
#: The smallest window; the layout holds at this size (the user list folds away
#: below USERLIST_MIN_WIDTH, so the conversation keeps its room).
MIN_SIZE = (860, 540)
USERLIST_MIN_WIDTH = 1040
#: Font zoom limits (pixels of body text).
FONT_MIN, FONT_MAX = 10, 24


class App(ctk.CTk):
    """The parley desktop client window.

    *store* holds the settings files; *settings* overrides what it remembers
    (command-line values); *title* is the window title's base; *password*, when
    given, connects at once with the form's values (scripts and tests only);
    *environ* is where the end-to-end key passphrase (PARLEY_KEY_PASSPHRASE) is
    looked up (default os.environ).
    """

    def __init__(
        self,
        store: SettingsStore | None = None,
        *,
        settings: Settings | None = None,
        title: str = "parley",
        password: str | None = None,
        notifier: Backend | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store or SettingsStore()
        self.settings = settings or self.store.load()
        ctk.set_appearance_mode(self.settings.appearance)  # never "system" (it polls)
        super().__init__(fg_color=theme.pair("chat_bg"))
        #: What report_callback_exception caught (tests fail a window that has any).
        self.callback_errors: list[str] = []
        self._base_title = title
        self.title(title)
        self.geometry(self.settings.geometry)
        self.minsize(*MIN_SIZE)
        self.notifier = Notifier(notifier)
        self.settings.font_size = max(FONT_MIN, min(FONT_MAX, int(self.settings.font_size)))
        self.muted: set[str] = {k for k in self.settings.muted if isinstance(k, str)}
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(0, weight=1)

        self.jobs = Jobs()  # blocking work off the Tk thread (rule 1)
        # End-to-end encrypted private messages (gui/e2e.py).
        self.e2e = DesktopE2E(self, environ)
        self._client: ChatClient | None = None
        self._form: ConnectForm | None = None  # the last form used (password blanked)
        self._pin: Pin | None = None
        self.model = ChatModel()
        self._reset_session_state()
        self._pump_id: str | None = None
        self.room_browser: Any = None
        self._save_size_id: str | None = None
        self._closed = False
        #: The thread closing the connection after shutdown() (None: none yet).
        self.closing: threading.Thread | None = None

        self._build()
        self._show_connect_page()
        self.protocol("WM_DELETE_WINDOW", self.on_close)
        self.bind("<FocusIn>", self._on_focus_in, add=True)
        self.bind("<Configure>", self._on_configure, add=True)
        self.bind("<Control-f>", lambda _e: self.chat_view.focus_search(), add=True)
        for key in ("<Control-plus>", "<Control-equal>", "<Control-KP_Add>"):
            self.bind(key, lambda _e: self.zoom(1), add=True)
        for key in ("<Control-minus>", "<Control-KP_Subtract>"):
            self.bind(key, lambda _e: self.zoom(-1), add=True)
        self.bind("<Control-0>", lambda _e: self.zoom(0), add=True)
        self.bind("<KeyPress>", self._type_to_focus, add=True)
        self.bind("<Alt-Up>", lambda _e: self._cycle(-1), add=True)
        self.bind("<Alt-Down>", lambda _e: self._cycle(1), add=True)
        self._pump_id = self.after(PUMP_IDLE_MS, self._pump)
        if password:
            self.connect_page.password.insert(0, password)
            self.after(10, self.connect_page.submit)

    # --- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.connect_page = ConnectPage(
            self,
            on_connect=self.connect,
            on_trust=lambda: self.flow.trust_accepted(),
            on_cancel=lambda: self.flow.cancel(),
            on_forget_pin=lambda: self.flow.forget_pin(),
        )
        self.connect_page.set_values(self.settings)
        self.flow = ConnectFlow(
            self.connect_page,
            self.store,
            self.jobs,
            on_form_used=self._remember_form,
            on_logged_in=self._attach,
            prepare_e2e=self.e2e.prepare,
        )

        page = self.chat_page = ctk.CTkFrame(self, corner_radius=0, fg_color=theme.pair("chat_bg"))
        page.grid_columnconfigure(2, weight=1)
        page.grid_rowconfigure(0, weight=1)
        self.sidebar = Sidebar(
            page,
            on_select=self.select,
            on_new_room=self.browse_rooms,
            on_toggle_theme=self.toggle_appearance,
            on_sign_out=self.sign_out,
            on_keys=self.show_key_menu,
        )
        self.sidebar.grid(row=0, column=0, sticky="ns")
        self.sidebar.set_theme_icon(self.settings.appearance)
        ctk.CTkFrame(page, width=1, corner_radius=0, fg_color=theme.pair("border")).grid(
            row=0, column=1, sticky="ns"
        )
        center = ctk.CTkFrame(page, corner_radius=0, fg_color=theme.pair("chat_bg"))
        center.grid(row=0, column=2, sticky="nsew")
        center.grid_columnconfigure(0, weight=1)
        center.grid_rowconfigure(0, weight=1)
        self.chat_view = ChatView(
            center,
            on_load_older=self.load_older,
            on_search=self.search,
            on_toggle_mute=self.toggle_mute,
            on_open_result=self.open_result,
            on_type=self._type_char,
            mode=self.settings.appearance,
            font_size=self.settings.font_size,
        )
        self.chat_view.grid(row=0, column=0, sticky="nsew")
        self.chat_view.on_message_menu = self._on_message_menu
        self.composer = Composer(
            center,
            on_submit=self.submit,
            on_banner_action=self._banner_action,
            nicks=self._completion_nicks,
            font_size=self.settings.font_size,
            more_help=E2E_HELP_LINES,
        )
        self.composer.grid(row=1, column=0, sticky="ew")
        self._userlist_rule = ctk.CTkFrame(
            page, width=1, corner_radius=0, fg_color=theme.pair("border")
        )
        self._userlist_rule.grid(row=0, column=3, sticky="ns")
        self.userlist = UserList(page, on_open=self.open_private)
        self.userlist.grid(row=0, column=4, sticky="ns")
        self._userlist_shown = True
        self.statusbar = StatusBar(page, on_retry=self.retry_now, on_details=self._show_fingerprint)
        self.statusbar.grid(row=1, column=0, columnspan=5, sticky="ew")

    def _show_connect_page(self) -> None:
        self.chat_page.grid_remove()
        self.connect_page.grid(row=0, column=0, sticky="nsew")
        self.connect_page.focus_first_empty()

    def _show_chat_page(self) -> None:
        self.connect_page.grid_remove()
        self.chat_page.grid(row=0, column=0, sticky="nsew")
        # The first <Configure> can come before the binding: fold by the size asked for.
        width = self.winfo_width()
        if width <= 1:
            width = int(self.geometry().split("x")[0])
        self._fold_userlist(width)

    # --- connecting ---------------------------------------------------------------------------

    def connect(self, form: ConnectForm) -> None:
        """Connect with *form* (as the Connect button does)."""
        self.flow.connect(form)

    def _attach(self, client: ChatClient, form: ConnectForm, pin: Pin | None) -> None:
        """Logged in: adopt *client* and show the chat."""
        old = self._client
        if old is not None:
            self.jobs.start("close", lambda: old.close(timeout=1.0), lambda _r, _e: None)
        self._client = client
        self._form = dataclasses.replace(form, password="")
        self._pin = pin
        self.model = ChatModel(client.nick)
        self._reset_session_state()
        self.connect_page.password.delete(0, "end")
        self._show_chat_page()
        self.composer.hide_banner()
        self._focus_composer_when_mapped()

    def _remember_form(self, form: ConnectForm) -> None:
        s = self.settings
        s.host, s.port, s.ca_file, s.nick, s.register = (
            form.servers or form.host,  # a failover list is kept as typed
            form.port,
            form.ca_file,
            form.nick,
            form.register,
        )
        self.store.save(s)  # Settings has no password field: it is never written

    def _reset_session_state(self) -> None:
        #: Moderation: each room's topic and roles (client/gui/moderation.py).
        self.room_roles = moderation.RoomRoles()
        self._pending_lines: list[Line] = []
        self._view_dirty = True
        self._sidebar_dirty = True
        self._users_dirty = True
        self._title_dirty = True
        self._batches: dict[str, list[Message]] = {}
        # tag -> (key, user asked, the message to jump to when it lands)
        self._history_tags: dict[str, tuple[str, bool, int | None]] = {}
        self._search_tags: dict[str, str] = {}
        self._who_tags: set[str] = set()
        self._rooms_tags: set[str] = set()
        self._read_dirty = True
        self._tag_seq = 0
        self._join_wanted: str | None = None
        self._closing_notice = False  # the server said why it closes: no second note
        self._leaving = False
        self._rejoining = False
        self._replay_missed = False
        self._logins = 0
        self._saved_last_seen: int | None = None
        self._last_seen_saved_at = 0.0

    # --- the pump (rule 2) -----------------------------------------------------------------------

    def _pump(self) -> None:
        self._pump_id = None
        deadline = time.perf_counter() + PUMP_SLICE
        self.jobs.finish()
        for key in self.notifier.take_clicks():
            self.open_from_notification(key)
        backlog = False
        client = self._client
        if client is not None:
            # Messages in the open conversation are unread while nobody looks.
            self.model.away = not self.window_has_focus()
            events = client.events
            handled = 0
            while client is self._client:
                if handled >= PUMP_MAX_EVENTS or time.perf_counter() >= deadline:
                    backlog = True
                    break
                try:
                    event = events.get_nowait()
                except queue.Empty:
                    break
                handled += 1
                try:
                    self._dispatch(event)
                except Exception:
                    log.exception("could not handle %r", event)
        self._refresh()
        self._maybe_save_last_seen()
        if not self._closed:
            self._pump_id = self.after(1 if backlog else PUMP_IDLE_MS, self._pump)

    def _dispatch(self, event: ClientEvent) -> None:
        handler = self._HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)
        else:
            moderation.on_event(self, event)

    def _refresh(self) -> None:
        conv = self.model.current_conversation
        if conv is not None:
            if self._view_dirty:
                self.chat_view.show(conv, self._subtitle(conv))
                self._set_placeholder(conv)
                self._pending_lines.clear()
                self._view_dirty = False
            elif self._pending_lines:
                self.chat_view.append(self._pending_lines)
                self._pending_lines = []
        if self._sidebar_dirty:
            self._sidebar_dirty = False
            search = self.model.conversations.get(SEARCH_KEY)
            self.sidebar.update_conversations(
                self.model.rooms(), self.model.dms(), search, self.model.current, self.muted
            )
            self._title_dirty = True
        if self._users_dirty:
            self._users_dirty = False
            room = self._user_list_room()
            rc = self.model.conversations.get(room_key(room))
            offline = self.statusbar.state != "connected"
            self.userlist.show(room, rc.online if rc else (), self.model.me, offline)
            self.userlist.set_roles(self.room_roles.roles(room))
            if conv is not None:
                self.chat_view.set_header(conv, self._subtitle(conv))
        if self._title_dirty:
            self._title_dirty = False
            self._update_title()
        if self._read_dirty:
            self._read_dirty = False
            self._mark_read()

    # --- events -> model -------------------------------------------------------------------------

    def _on_connected(self, ev: Connected) -> None:
        self._logins += 1
        self._rejoining = self._leaving = False
        self.model.set_me(ev.nick)
        rooms = {room_key(r) for r in ev.rooms}
        for room in ev.rooms:
            self.model.ensure_room(room)
        for conv in self.model.rooms():
            if conv.key not in rooms:
                self.model.remove(conv.key)
        if self.model.current not in self.model.conversations:
            self.model.current = room_key(DEFAULT_ROOM)
            self._view_dirty = True
        form = self._form
        where = form.where if form else "?"
        if form is not None and form.servers and self._client is not None:
            where = format_address((self._client.host, self._client.port))  # the one in use
        self.statusbar.set_connected(
            f"Connected as {ev.nick} to {where}", ev.tls_version, ev.fingerprint
        )
        self.sidebar.set_user(ev.nick, f"{ev.server} \u00b7 {where}", "Online")
        self.composer.hide_banner()
        self._closing_notice = False
        if ev.created:
            self._note(f"Welcome, {ev.nick}! Your account has been created.", "notice")
        self._sidebar_dirty = self._users_dirty = self._title_dirty = True
        if self._logins == 1 and self._client is not None:
            self.e2e.settle(self._client)

    def _on_message(self, ev: MessageReceived) -> None:
        m = ev.message
        if ev.secure:
            self.model.mark_secure(m.id, self._unreadable(ev))
        if ev.batch in (BatchKind.HISTORY, BatchKind.SEARCH):
            self._batches.setdefault(ev.tag or "", []).append(m)
            return
        known = len(self.model.conversations)
        added = self.model.add(m, replayed=ev.batch == BatchKind.REPLAY)
        if added is None:
            return
        if len(self.model.conversations) != known:
            self._sidebar_dirty = True  # a new private conversation
        if added.key == self.model.current:
            self._sidebar_dirty = True  # its preview line
            # Read only if someone is looking: an unfocused window reads nothing.
            self._read_dirty = self._read_dirty or self.window_has_focus()
            if added.rerender:
                self._view_dirty = True
            else:
                self._pending_lines.extend(added.lines)
        else:
            self._sidebar_dirty = True
        if (
            added.notify
            and ev.batch is None
            and added.key not in self.muted
            and not self.window_has_focus()
        ):
            self.notifier.message(added.key, m.from_ or "?", m.room, m.text)
            self.bell()

    def _on_batch_started(self, ev: BatchStarted) -> None:
        if ev.kind == BatchKind.REPLAY:
            # With last_seen the replay is what was missed; a fresh login's
            # replay (target "latest") is recent history and gets no divider.
            self._replay_missed = ev.target != "latest"
            self.model.begin_replay(self._replay_missed)
            if ev.gap and self._replay_missed:
                self._note(
                    "More was missed than the server replays: use \u201cLoad older "
                    "messages\u201d to page back through the rest.",
                    "notice",
                )
        elif ev.tag is not None:
            self._batches[ev.tag] = []

    def _on_batch_ended(self, ev: BatchEnded) -> None:
        conv: Conversation | None
        if ev.kind == BatchKind.REPLAY:
            self.model.end_replay()
            if self._replay_missed and self._logins == 1:
                # A restart replayed only what was missed: fetch some context above it.
                for room in self.model.rooms():
                    self._request_history(room, user_asked=False, limit=30)
            return
        messages = self._batches.pop(ev.tag or "", [])
        if ev.kind == BatchKind.HISTORY and ev.tag in self._history_tags:
            key, user_asked, target = self._history_tags.pop(ev.tag)
            conv = self.model.conversations.get(key)
            if conv is None:
                return
            anchor = conv.oldest_id
            fresh = self.model.add_history(key, messages, ev.more)
            self._read_dirty = self._read_dirty or key == self.model.current
            if target is not None:
                if key == self.model.current:
                    self._pending_lines = []
                    self.chat_view.jump_to(conv, target)
            elif key == self.model.current:
                if fresh:
                    self._pending_lines = []  # rerender() draws everything from the model
                    self.chat_view.rerender(conv, anchor if user_asked else None)
                else:
                    self.chat_view.set_older_state(conv)
        elif ev.kind == BatchKind.SEARCH and ev.tag in self._search_tags:
            words = self._search_tags.pop(ev.tag)
            session = session_of(self._client)
            if session is not None:  # encrypted messages only this device can search
                found = {m.id for m in messages}
                local = [m for m in session.search_local(words) if m.id not in found]
                for m in local:
                    self.model.mark_secure(m.id)
                messages = sorted([*messages, *local], key=lambda m: -m.id)
            self.model.set_search(words, messages, ev.more)
            self.select(SEARCH_KEY)

    def _on_presence(self, ev: PresenceChanged) -> None:
        if self.model.set_online(ev.room, ev.online):
            self._users_dirty = True
        if ev.tag is not None and ev.tag in self._who_tags:
            self._who_tags.discard(ev.tag)
            names = ", ".join(ev.online) or "nobody"
            self._note(f"Online in {ev.room} ({len(ev.online)}): {names}", "notice")

    def _on_room_joined(self, ev: RoomJoined) -> None:
        conv = self.model.ensure_room(ev.room)
        self._sidebar_dirty = True
        self._request_history(conv, user_asked=False)
        if self._join_wanted == conv.key:
            self._join_wanted = None
            self.select(conv.key)

    def _on_room_left(self, ev: RoomLeft) -> None:
        self.model.remove(room_key(ev.room))
        self._view_dirty = self._sidebar_dirty = self._users_dirty = True
        self._note(f"You left {ev.room}.", "notice")

    def _on_server_error(self, ev: ErrorReply) -> None:
        if ev.code in ("shutdown", "timeout", "flood"):
            # The connection closes next: say why once, here, in plain words.
            self._closing_notice = True
            text = plain_reason(ev.code)
            self._note(f"{text[:1].upper()}{text[1:]}.", "error")
            return
        self._note(ev.message, "error")

    def _on_disconnected(self, ev: Disconnected) -> None:
        # Who is online is unknown until the next login's presence lists.
        for conv in self.model.conversations.values():
            conv.online = ()
        self._users_dirty = True
        if ev.by_user:
            if self._rejoining:
                self.statusbar.set_offline("Rejoining\u2026")
                return
            self._leaving = False
            self.statusbar.set_offline("Offline: you left the chat")
            self.sidebar.set_user(self.model.me, None, "Offline")
            self._note("You left the chat. Press Rejoin (or type /rejoin) to come back.", "notice")
            self._show_banner("You left the chat. Rejoin to see what was said meanwhile.", "Rejoin")
        elif ev.will_retry:
            reason = plain_reason(ev.reason)
            if not self._closing_notice:
                self._note(f"Connection lost: {reason}. Reconnecting\u2026", "error")
            self._closing_notice = False
            self.statusbar.set_offline("Connection lost")
            self.sidebar.set_user(self.model.me, None, "Reconnecting\u2026")
        else:
            reason = plain_reason(ev.reason)
            self.statusbar.set_offline(f"Offline: {reason}")
            self.sidebar.set_user(self.model.me, None, "Offline")
            loud = "certificate" in ev.reason
            prefix = "WARNING: " if loud else ""
            self._note(f"{prefix}Disconnected: {reason}", "error")
            self._show_banner(f"{prefix}Disconnected: {reason}", "Reconnect")

    def _on_conversations(self, ev: ConversationsListed) -> None:
        self.model.apply_listing(ev.items)
        self._sidebar_dirty = self._title_dirty = True

    def _on_read_moved(self, ev: ReadMoved) -> None:
        if self.model.read_moved(ev.kind, ev.name, ev.id) is not None:
            self._sidebar_dirty = True

    def _on_rooms(self, ev: RoomsListed) -> None:
        if ev.tag not in self._rooms_tags:
            return
        self._rooms_tags.discard(ev.tag)
        browser = self.room_browser
        if browser is not None and browser.winfo_exists():
            browser.show(ev.rooms)

    def _on_reconnecting(self, ev: Reconnecting) -> None:
        self.statusbar.set_reconnecting(ev.attempt, ev.delay)

    def _ignore(self, _ev: object) -> None:
        pass

    def _on_e2e_notice(self, ev: E2ENotice) -> None:
        self._note(ev.text, "error" if ev.kind in ("key-changed", "link-failed") else "notice")
        if ev.kind == "linked":
            self.e2e.linked()
            self.e2e_keys_changed()

    def _unreadable(self, ev: MessageReceived) -> str | None:
        """Why an end-to-end encrypted message cannot be read here (None: it was)."""
        if ev.e2e_error is None:
            return None
        if self.e2e.locked is not None:
            return "your keys are locked on this device"
        return ev.e2e_error

    # --- end-to-end encryption (gui/e2e.py) --------------------------------------------------

    def e2e_keys_changed(self) -> None:
        """This device got (or unlocked) its keys: private conversations are fetched
        again, so what showed as unreadable is decrypted now."""
        self.model.forget_private()
        conv = self.model.current_conversation
        self._view_dirty = self._sidebar_dirty = self._users_dirty = True
        if conv is not None and conv.kind == "dm":
            self._request_history(conv, user_asked=False)

    def e2e_peer_known(self, nick: str) -> None:
        """What this device knows of *nick*'s keys changed: the header follows."""
        self._users_dirty = True  # set_header() runs with the user list

    def prefers_key_passphrase(self) -> bool:
        """True when the keys are to be protected by a passphrase even with an OS keyring."""
        return bool(self.settings.key_passphrase)

    def key_menu_entries(self) -> list[tuple[str, Callable[[], None]]]:
        """What the key button's menu offers now: (label, action) pairs."""
        return self.e2e.menu_entries(self._client)

    def show_key_menu(self) -> None:
        """The key button: a menu of the end-to-end key actions, under the pointer."""
        entries = self.key_menu_entries()
        if not entries:
            self._note("End-to-end encryption is off on this device.", "error")
            return
        menu = tkinter.Menu(self, tearoff=False)
        for label, action in entries:
            menu.add_command(label=label, command=action)
        menu.tk_popup(self.winfo_pointerx(), self.winfo_pointery())

    _HANDLERS: dict[type, Callable[[App, Any], None]] = {
        Connected: _on_connected,
        MessageReceived: _on_message,
        BatchStarted: _on_batch_started,
        BatchEnded: _on_batch_ended,
        PresenceChanged: _on_presence,
        RoomJoined: _on_room_joined,
        RoomLeft: _on_room_left,
        ErrorReply: _on_server_error,
        Disconnected: _on_disconnected,
        Reconnecting: _on_reconnecting,
        Acked: _ignore,
        RoomsListed: _on_rooms,
        ConversationsListed: _on_conversations,
        ReadMoved: _on_read_moved,
        E2ENotice: _on_e2e_notice,
    }

    # --- user actions ------------------------------------------------------------------------------

    def submit(self, text: str) -> None:
        """Handle one line from the input: a message or a command (commands.py)."""
        if self.e2e.command(self._client, text):
            return
        action = commands.parse(text)
        if action is None:
            return
        if isinstance(action, commands.Invalid):
            self._note(action.message, "error")
            self.give_back(text)
        elif isinstance(action, commands.Say):
            self._say(action.text)
            self.chat_view.scroll_to_bottom()  # your message is where you will look
        elif isinstance(action, commands.PrivateMessage):
            self.open_private(action.nick)
            self._send(action.text, to=action.nick, typed=text)
        elif isinstance(action, commands.JoinRoom):
            key = room_key(action.room)
            if key in self.model.conversations:
                self.select(key)
            else:
                self._join_wanted = key
                self._request(lambda c: c.join(action.room))
        elif isinstance(action, commands.LeaveRoom):
            leaving = action.room or self._current_room()
            if leaving is None:
                self._note("This is not a room: /leave #room", "error")
            else:
                self._request(lambda c: c.leave(leaving))
        elif isinstance(action, commands.Who):
            room = action.room or self._user_list_room()
            tag = self._next_tag("w")
            self._who_tags.add(tag)
            self._request(lambda c: c.who(room, tag=tag))
        elif isinstance(action, commands.SearchMessages):
            self.search(action.words)
        elif isinstance(action, commands.Help):
            lines = [*commands.help_lines(), *E2E_HELP_LINES]
            self._note("Commands:\n" + "\n".join(lines), "notice")
        elif isinstance(action, commands.Exit):
            self.exit_chat()
        elif isinstance(action, commands.Rejoin):
            self.rejoin()
        elif isinstance(action, commands.Moderate):
            target = action.room or self._current_room()
            if action.needs_room and target is None:
                self._note(f"/{action.action} works in a room: open one, or name it first", "error")
                return
            self.moderate_request(
                action.action,
                room=target if action.needs_room else None,
                nick=action.nick,
                message_id=action.message_id,
                text=action.text,
                reason=action.reason,
                minutes=action.minutes,
            )

    def select(self, key: str) -> None:
        """Open conversation *key*."""
        if key not in self.model.conversations:
            return
        conv = self.model.select(key)
        self._pending_lines = []  # show() draws everything from the model
        self.chat_view.show(conv, self._subtitle(conv))
        self._view_dirty = False
        self._sidebar_dirty = self._users_dirty = self._title_dirty = True
        self.chat_view.set_muted(None if conv.kind == "search" else key in self.muted)
        self._read_dirty = True
        if conv.kind == "dm":
            self.e2e.conversation_opened(self._client, conv.name)
        if not conv.ids and conv.kind != "search" and conv.has_more and not conv.loading:
            # Listed by the server (after a restart) but nothing loaded yet.
            self._request_history(conv, user_asked=False)
        self._set_placeholder(conv)

    def _set_placeholder(self, conv: Conversation) -> None:
        if conv.kind == "room":
            self.composer.set_placeholder(f"Message {conv.name}")
        elif conv.kind == "dm":
            self.composer.set_placeholder(f"Message {conv.name} privately")
        else:
            self.composer.set_placeholder("Pick a conversation to write in")

    def open_private(self, nick: str) -> None:
        """Open (creating it if new) the private conversation with *nick*."""
        if self.model.is_me(nick):
            return
        conv = self.model.ensure_dm(nick)
        if not conv.ids and conv.has_more and not conv.loading:
            self._request_history(conv, user_asked=False)
        self.select(conv.key)

    def load_older(self) -> None:
        """Ask for the page of history before the oldest message shown."""
        conv = self.model.current_conversation
        if conv is not None:
            self._request_history(conv, user_asked=True)

    def search(self, words: str) -> None:
        """Search the messages this user may see (results open as a conversation)."""
        tag = self._next_tag("s")
        self._search_tags[tag] = words
        self._request(lambda c: c.search(words, tag=tag))

    def exit_chat(self) -> None:
        """/exit: leave gracefully; the window stays, with a Rejoin button."""
        client = self._client
        if client is None or self._leaving:
            return
        self._leaving = True
        self.statusbar.set_offline("Leaving the chat\u2026")  # the note comes when it is done
        self.jobs.start("exit", lambda: client.close("exit"), lambda _r, _e: None)

    def rejoin(self) -> None:
        """/rejoin: connect again with the resume token; the server replays what was missed."""
        client = self._client
        if client is None:
            self._show_connect_page()
            return
        if self._rejoining:
            return
        self._rejoining = True
        self.composer.hide_banner()
        self.statusbar.set_offline("Rejoining\u2026")
        form, pin = self._form, self._pin

        def done(_result: object, exc: BaseException | None) -> None:
            if exc is None:
                return
            self._rejoining = False
            problem = (
                describe_failure(exc, form, pin) if form else Problem("Rejoin failed", str(exc))
            )
            self._note(f"{problem.title}. {problem.detail}", "error")
            self.statusbar.set_offline(f"Offline: {problem.title}")
            self.composer.show_banner(problem.title, "Rejoin")

        self.jobs.start("rejoin", client.rejoin, done)

    def shown_conversation_text(self) -> str:
        """The open conversation's text (tests)."""
        return self.chat_view.content()

    def sign_out(self) -> None:
        """Leave the chat and go back to the connect screen."""
        self._mark_read()
        self.e2e.forget()  # the next sign-in asks for the key passphrase again
        client = self._client
        self._client = None
        if client is not None:
            self.jobs.start("sign-out", lambda: client.close("sign out"), lambda _r, _e: None)
        self._save_last_seen(force=True)
        self.model = ChatModel()
        self._reset_session_state()
        self.chat_view.clear_search()  # the next user must not see this one's query
        self.statusbar.set_offline("Not connected")
        self._show_connect_page()

    def toggle_appearance(self) -> None:
        """Switch between light and dark, and remember the choice."""
        self.set_appearance("dark" if self.settings.appearance == "light" else "light")

    def set_appearance(self, mode: str) -> None:
        """Use appearance *mode* ("light" or "dark")."""
        self.settings.appearance = mode
        ctk.set_appearance_mode(mode)
        self.chat_view.apply_theme(mode)
        self.sidebar.set_theme_icon(mode)
        self.store.save(self.settings)

    def browse_rooms(self) -> None:
        """Open the room browser: every room with its member count, Join buttons."""
        from .room_browser import RoomBrowser

        browser = self.room_browser
        if browser is None or not browser.winfo_exists():
            browser = self.room_browser = RoomBrowser(
                self, on_join=self._join_from_browser, on_refresh=self._ask_rooms
            )
        browser.lift()
        self._ask_rooms()

    def _ask_rooms(self) -> None:
        tag = self._next_tag("r")
        self._rooms_tags.add(tag)
        self._request(lambda c: c.rooms(tag=tag))

    def _join_from_browser(self, room: str) -> None:
        self.submit(f"/join {room}")

    def _mark_read(self) -> None:
        """Tell the server the open conversation is read up to its newest message
        (so the user's other devices show it read too)."""
        conv = self.model.current_conversation
        client = self._client
        if conv is None or conv.kind == "search" or client is None or not client.connected:
            return
        newest = conv.newest_id
        if newest is None or newest <= conv.read:
            return
        conv.read = newest
        kind = "room" if conv.kind == "room" else "private"
        self._request(lambda c: c.mark_read(kind, conv.name, newest))

    def toggle_mute(self) -> None:
        """Mute (or unmute) the open conversation: no notifications, quiet badges."""
        key = self.model.current
        if key not in self.model.conversations or key.startswith("?"):
            return
        if key in self.muted:
            self.muted.discard(key)
        else:
            self.muted.add(key)
        self.settings.muted = sorted(self.muted)
        self.store.save(self.settings)
        self.chat_view.set_muted(key in self.muted)
        self._sidebar_dirty = True

    def zoom(self, step: int) -> None:
        """Ctrl+plus/minus: text one pixel larger (1) or smaller (-1); 0 resets.
        The size is remembered."""
        size = theme.SIZE_BODY if step == 0 else self.settings.font_size + step
        size = max(FONT_MIN, min(FONT_MAX, size))
        if size == self.chat_view.font_size:
            return
        self.settings.font_size = size
        self.chat_view.set_font_size(size)
        self.composer.set_font_size(size)
        conv = self.model.current_conversation
        if conv is not None:
            self.chat_view.rerender(conv)  # emoji images follow the new size
        self.store.save(self.settings)

    def retry_now(self) -> None:
        """ "Retry now" beside the countdown: reconnect at once instead of waiting."""
        if self.statusbar.state != "reconnecting":
            return
        client = self._client
        if client is None or self._rejoining:
            return
        self._rejoining = True
        self.statusbar.set_offline("Reconnecting\u2026")
        form, pin = self._form, self._pin

        def work() -> None:
            client.close("retry", timeout=0.5)
            client.rejoin()

        def done(_result: object, exc: BaseException | None) -> None:
            if exc is None:
                return
            self._rejoining = False
            problem = describe_failure(exc, form, pin) if form else Problem("Retry failed", "")
            self._note(f"{problem.title}. {problem.detail}", "error")
            self.statusbar.set_offline(f"Offline: {problem.title}")
            self._show_banner(problem.title, "Reconnect")

        self.jobs.start("retry", work, done)

    def open_result(self, message_id: int) -> None:
        """A click on a search result: open its conversation with the messages around it."""
        search = self.model.conversations.get(SEARCH_KEY)
        m = self.model.found.get(message_id) if search is not None else None
        if m is None:
            return
        key = self.model.key_of(m)
        conv: Conversation | None
        if m.room is None:
            other = m.to if self.model.is_me(m.from_) else m.from_
            conv = self.model.ensure_dm(other or "?")
        else:
            conv = self.model.conversations.get(key)
            if conv is None:
                self._note(f"You are no longer in {m.room}: /join {m.room} to read it.", "error")
                return
        self.select(conv.key)
        if message_id in conv.ids:
            self.chat_view.jump_to(conv, message_id)
            return
        self._request_history(conv, user_asked=True, around=message_id)

    def open_from_notification(self, key: str) -> None:
        """A click on a desktop notification: bring the window up with that
        conversation open."""
        if self._closed:
            return
        try:
            self.deiconify()
            self.lift()
            self.focus_force()
        except Exception:  # a window manager that refuses: the conversation still opens
            pass
        if key in self.model.conversations:
            self.select(key)

    def window_has_focus(self) -> bool:
        """True while this window has the keyboard focus."""
        try:
            return self.focus_displayof() is not None
        except KeyError:  # a focused widget of a dialog being destroyed
            return False

    # --- helpers --------------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        conv = self.model.current_conversation
        if conv is None or conv.kind == "search":
            self._note("Open a room or a conversation to write in it.", "error")
        elif conv.kind == "room":
            self._send(text, room=conv.name)
        else:
            self._send(text, to=conv.name)

    def _send(
        self, text: str, room: str | None = None, to: str | None = None, typed: str | None = None
    ) -> None:
        """Send *text*; *typed* is the input it came from ("/msg bob hi"), given back
        if the message is refused (default: *text*)."""
        client = self._client
        if client is None:
            return
        if to is not None and self.e2e.send_private(client, text, to, typed=typed or text):
            return
        try:
            client.send_text(text, room=room, to=to)
        except (ProtocolError, ValueError) as exc:
            self._note(f"Not sent: {getattr(exc, 'message', exc)}", "error")
            self.give_back(typed or text)
            return
        if not client.connected:
            self._note("You are offline: this message will be sent when you rejoin.", "notice")

    def give_back(self, text: str) -> None:
        """Put refused *text* back in the input, unless something new was typed
        there meanwhile: what the user wrote is never lost to a refusal (too
        long, a usage mistake), and needs only fixing, not typing again."""
        if not self.composer.get().strip():
            self.composer.set_text(text)

    def _request(self, call: Callable[[ChatClient], object]) -> None:
        client = self._client
        if client is None:
            return
        try:
            call(client)
        except (ProtocolError, ValueError) as exc:
            self._note(str(getattr(exc, "message", exc)), "error")

    def _request_history(
        self,
        conv: Conversation,
        *,
        user_asked: bool,
        limit: int = PAGE,
        around: int | None = None,
    ) -> None:
        if conv.kind == "search" or self._client is None:
            return
        if around is None and (conv.loading or not conv.has_more):
            return
        tag = self._next_tag("h")
        self._history_tags[tag] = (conv.key, user_asked, around)
        conv.loading = True
        where: dict[str, Any] = {"room": conv.name} if conv.kind == "room" else {"with_": conv.name}
        if around is not None:
            where.update(_around(self._client, around, limit))
        else:
            where["before"] = conv.oldest_id
        self._request(lambda c: c.history(**where, limit=limit, tag=tag))
        if conv.key == self.model.current:
            self.chat_view.set_older_state(conv)

    def _note(self, text: str, kind: str, key: str | None = None) -> None:
        added = self.model.note(text, kind, key)
        if added is None and key is not None:
            added = self.model.note(text, kind)  # that conversation is gone: the open one
        if added is None or added.key != self.model.current:
            return  # drawn when its conversation is opened
        if added.rerender:
            self._view_dirty = True
        else:
            self._pending_lines.extend(added.lines)

    # --- moderation (client/gui/moderation.py) ---------------------------------------------------

    def moderate_request(self, action: str, **fields: Any) -> None:
        """Send a moderation request; its answer comes as a notice (or an error)."""
        self._request(lambda c: c.moderate(action, **fields))

    def note(self, text: str, kind: str = "notice") -> None:
        """Show a local line (notice or error) in the open conversation."""
        self._note(text, kind)

    def mark_view_dirty(self) -> None:
        """Lines already shown changed (a message deleted or edited): redraw."""
        conv = self.model.current_conversation
        if conv is not None and not self._view_dirty:
            self.chat_view.rerender(conv)
        self._sidebar_dirty = True

    def mark_moderation_dirty(self) -> None:
        """A room's topic or roles changed: the header and the user list follow."""
        self._users_dirty = True

    def _on_message_menu(self, message_id: int, x: int, y: int) -> None:
        found = self.model.message_line(message_id)
        if found is None:
            return
        conv, line = found
        room = conv.name if conv.kind == "room" else None
        moderation.message_menu(self, message_id, line.own, room, x, y)

    def _next_tag(self, prefix: str) -> str:
        self._tag_seq += 1
        return f"{prefix}{self._tag_seq}"

    def _current_room(self) -> str | None:
        conv = self.model.current_conversation
        return conv.name if conv is not None and conv.kind == "room" else None

    def _user_list_room(self) -> str:
        # Private conversations and search show the lobby: everyone is in it.
        return self._current_room() or DEFAULT_ROOM

    def _subtitle(self, conv: Conversation) -> str:
        if conv.kind == "room":
            n = len(conv.online)
            topic = self.room_roles.topic(conv.name)  # moderation: the topic under the name
            online = f"{n} online" if n else ""
            return " \u00b7 ".join(part for part in (topic, online) if part)
        if conv.kind == "dm":
            lobby = self.model.conversations.get(room_key(DEFAULT_ROOM))
            here = lobby is not None and fold(conv.name) in {fold(n) for n in lobby.online}
            presence = "online" if here else "offline"
            secure = self.e2e.describe(self._client, conv.name)
            # Once known, whether it is end-to-end encrypted says more than the
            # words "private conversation" (the @ says that) and the header is short.
            parts = [presence, secure] if secure else ["private conversation", presence]
            return " \u00b7 ".join(parts)
        return ""

    def _cycle(self, step: int) -> None:
        keys = [c.key for c in (*self.model.rooms(), *self.model.dms())]
        if self.model.current in keys:
            self.select(keys[(keys.index(self.model.current) + step) % len(keys)])

    def _prompt_join(self) -> None:
        self.composer.set_text("/join #")
        self.composer.focus_input()

    def _completion_nicks(self) -> list[str]:
        """Nicks Tab completes in the open conversation: who is online in the room
        (or the peer of a private conversation), then recent senders; never you."""
        conv = self.model.current_conversation
        names: list[str] = []
        if conv is not None and conv.kind == "dm":
            names.append(conv.name)
        else:
            rc = self.model.conversations.get(room_key(self._user_list_room()))
            if rc is not None:
                names.extend(rc.online)
        if conv is not None:
            names.extend(ln.sender for ln in reversed(conv.lines[-200:]) if ln.sender)
        seen: set[str] = set()
        out = []
        for n in names:
            if fold(n) not in seen and not self.model.is_me(n):
                seen.add(fold(n))
                out.append(n)
        return out

    def _show_banner(self, text: str, button: str) -> None:
        # The banner takes room from the conversation: keep its last line in view.
        follow = self.chat_view.at_bottom()
        self.composer.show_banner(text, button)
        if follow:
            self.update_idletasks()
            self.chat_view.scroll_to_bottom()

    def _banner_action(self) -> None:
        self.rejoin()

    def _show_fingerprint(self, fingerprint: str) -> None:
        """The details of the server's certificate fingerprint, in the conversation."""
        from .statusbar import grouped

        self._note(f"Server certificate SHA-256 fingerprint:\n{grouped(fingerprint)}", "notice")

    def _focus_composer_when_mapped(self) -> None:
        """Give the input the focus once the chat page is on screen.

        A focus_set() before the page is mapped can be lost, and a key typed in
        the moment the window appears can arrive before Tk's FocusIn moved the
        focus to the input (so it went nowhere). Setting the focus again once
        mapped, and _type_to_focus() below, make sure that first key lands in
        the input."""
        self.composer.focus_input()
        self.chat_page.update_idletasks()
        self.after_idle(self.composer.focus_input)

    def _type_to_focus(self, event: Any) -> str | None:
        """A printable key typed while the focus is on no input (or on none at all)
        goes to the message input, as chat apps do."""
        if not self.chat_page.winfo_ismapped():
            return None
        char = getattr(event, "char", "")
        state = int(getattr(event, "state", 0) or 0)
        if not char or not char.isprintable() or state & 0x4 or state & 0x8:
            return None  # not a character, or Ctrl/Alt shortcuts
        widget = event.widget
        if isinstance(widget, str) or widget is None:
            widget = None
        cls = widget.winfo_class() if widget is not None else ""
        if cls in ("Entry", "Text"):
            return None  # an input takes it (the chat text hands it to _type_char)
        self._type_char(char)
        return "break"

    def _type_char(self, char: str) -> None:
        self.composer.input.insert("insert", char)
        self.composer.focus_input()
        self.composer.changed()

    def _update_title(self) -> None:
        conv = self.model.current_conversation
        parts = []
        waiting = self.model.attention(self.muted)
        if waiting:
            parts.append(f"({waiting})")
        if self._client is not None and conv is not None:
            name = conv.name if conv.kind != "dm" else f"@{conv.name}"
            parts.append(f"{name} \u2014 {self._base_title}")
        else:
            parts.append(self._base_title)
        title = " ".join(parts)
        if self.title() != title:
            self.title(title)

    def _fold_userlist(self, width: int) -> None:
        show = width >= USERLIST_MIN_WIDTH
        if show == self._userlist_shown:
            return
        self._userlist_shown = show
        if show:
            self._userlist_rule.grid()
            self.userlist.grid()
        else:
            self._userlist_rule.grid_remove()
            self.userlist.grid_remove()

    def _on_focus_in(self, _event: object) -> None:
        self._read_dirty = True  # what the open conversation shows is read now
        self.model.away = False
        if self.model.looked_back():
            self._sidebar_dirty = self._title_dirty = True

    def _on_configure(self, event: Any) -> None:
        if event.widget is not self or self._closed:
            return
        self._fold_userlist(int(event.width))
        if self._save_size_id is not None:
            self.after_cancel(self._save_size_id)
        self._save_size_id = self.after(500, self._save_size)

    def _save_size(self) -> None:
        self._save_size_id = None
        size = f"{self.winfo_width()}x{self.winfo_height()}"
        if self.winfo_width() > 1 and size != self.settings.geometry:
            self.settings.geometry = size
            self.store.save(self.settings)

    def _maybe_save_last_seen(self) -> None:
        if time.monotonic() - self._last_seen_saved_at >= LAST_SEEN_SAVE_INTERVAL:
            self._save_last_seen()

    def _save_last_seen(self, force: bool = False) -> None:
        self._last_seen_saved_at = time.monotonic()
        form, last = self._form, self.model.last_shown_id
        if form is None or last is None or (last == self._saved_last_seen and not force):
            return
        self.store.set_last_seen(form.host, form.port, form.nick, last)
        self._saved_last_seen = last

    # --- shutting down -------------------------------------------------------------------------------

    def on_close(self) -> None:
        """The window is closing: remember size and last seen, leave gracefully, go."""
        self.shutdown(timeout=2.0)

    def report_callback_exception(
        self, exc: type[BaseException], val: BaseException, tb: Any
    ) -> None:
        """A bug in one of the window's callbacks (Tk calls this instead of raising).

        Tk's default prints a traceback to a console that a desktop user does not
        have, and the click or key seems to do nothing. The traceback goes to the
        log; the user gets a line saying something failed, and the window goes on."""
        log.error("a window callback failed", exc_info=(exc, val, tb))
        self.callback_errors.append(f"{exc.__name__}: {val}")
        try:
            self._note(
                f"Something went wrong ({exc.__name__}: {val}). This is a bug in parley; "
                "the window goes on.",
                "error",
            )
        except Exception:  # the note itself failed: the log has it
            log.exception("the bug could not be shown in the window")

    def shutdown(self, timeout: float = 2.0) -> None:
        """Save state, destroy the window at once, and close the connection on a
        thread of its own (leaving gracefully takes up to *timeout*: the Tk
        thread never waits for the network). wait_closed() waits for that."""
        if self._closed:
            return
        if self.winfo_exists():
            self._save_size()
        self._save_last_seen(force=True)
        self._mark_read()  # what is open now has been seen, however briefly
        self._closed = True
        self.e2e.close_dialog()
        client, self._client = self._client, None
        if client is not None:
            # The thread holds the client only, never a Tk object (jobs.py, rule 2).
            self.closing = threading.Thread(
                target=client.close,
                args=("window closed",),
                kwargs={"timeout": timeout},
                name="parley-gui-close",
                daemon=True,
            )
            self.closing.start()
        self.destroy()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait for the connection closed by shutdown() to be closed (the process
        waits before it exits); True when it is (or there was none)."""
        closing = self.closing
        if closing is None:
            return True
        closing.join(timeout)
        return not closing.is_alive()

    def destroy(self) -> None:
        """Cancel every pending after() (ours and customtkinter's), then destroy."""
        self._closed = True
        self.notifier.close()
        try:
            for after_id in self.tk.eval("after info").split():
                self.tk.call("after", "cancel", after_id)
        except Exception:
            pass
        super().destroy()


def _around(client: ChatClient, message_id: int, limit: int) -> dict[str, Any]:
    """The history arguments for a page around *message_id*: `around` where the
    client library has it, else the page ending at that message."""
    import inspect

    if "around" in inspect.signature(client.history).parameters:
        return {"around": message_id}
    return {"before": message_id + limit // 2}
