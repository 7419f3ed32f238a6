"""The terminal client, `parley-cli`, built on ChatClient.

Rules this module keeps:
1. The password comes from PARLEY_PASSWORD or a getpass prompt on a terminal,
   never from the command line (it would show in `ps` and shell history) and
   never from the chat input.
2. stdout carries only messages, one line each (continuation lines of a
   multi-line text indented by four spaces), so it can be piped and grepped;
   status, answers to commands and errors go to stderr.
3. Two threads: the main thread reads stdin and issues requests; a printer
   thread consumes ChatClient.events and prints. Neither touches the socket.
   On a terminal the main thread reads through a prompt_toolkit prompt (line
   editing, history) under patch_stdout, so printed lines go above the line
   being typed and never into it; otherwise (a pipe, a file) it reads plain
   lines: the scripting mode.
4. Exit codes are stable (EXIT_* below, docs/cli.md, --help).
5. Nothing a message holds can move the time, room or nick of its line, in
   a terminal that lays out bidirectional text (isolate_text, docs/cli.md).
6. Input never outruns the server's flood pace (welcome.flood): a script of
   any length is sent as fast as the server takes it, never delayed or
   dropped by the server's flood control (Pacer).
7. Slash commands are parsed by client/commands.py, the table both clients
   share; this module performs them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import os
import queue
import re
import ssl
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from parley_chat.certs import short_fingerprint
from parley_chat.protocol import (
    DEFAULT_ROOM,
    EMOTE_PREFIX,
    UNREAD_CAP,
    LocalProtocolError,
    Message,
    fold,
    has_surrogate,
    is_emote,
    parse_ts,
    valid_nick,
)
from parley_chat.protocol.invite import Invite, InviteError, looks_like_invite, parse_invite
from parley_chat.protocol.vocab import BatchKind

from . import commands
from .addresses import Address, parse_addresses
from .cli_moderation import HELP as MODERATION_HELP
from .cli_moderation import ModerationCommands, describe
from .commands import Client, Command, Invalid, UnknownCommand, help_text
from .connection import ChatClient
from .discovery import DEFAULT_WAIT, discover, enabled, interfaces_from_env
from .e2e.crypto import E2EError
from .e2e.files import open_session
from .e2e.session import E2ENotice
from .e2e.terminal import HELP as E2E_HELP
from .e2e.terminal import TerminalE2E, key_passphrase
from .errors import (
    CertificateExpired,
    CertificateNotTrusted,
    ClientError,
    InviteMismatch,
    LoginRefused,
    ServerUnreachable,
    TLSVerificationFailed,
    TrustStoreError,
)
from .events import (
    BatchEnded,
    BatchStarted,
    ClientEvent,
    Connected,
    ConversationsListed,
    ConversationSummary,
    Disconnected,
    ErrorReply,
    MessageReceived,
    PresenceChanged,
    Reconnecting,
    RoomJoined,
    RoomLeft,
    RoomsListed,
)
from .settings import Pin, SettingsStore, config_dir
from .tls import is_ca_certificate, probe_server_certificate
from .trust import anchor_for_invite, describe_anchor, upgraded_pin

EXIT_OK = 0  #: everything sent was acknowledged
EXIT_ERROR = 1  #: any other error
EXIT_USAGE = 2  #: bad arguments, no password, unreadable CA file
EXIT_UNREACHABLE = 3  #: no connection to the server
EXIT_TLS = 4  #: the server's certificate was not trusted or names another host
EXIT_LOGIN = 5  #: the server refused the login
EXIT_UNACKED = 6  #: the connection was lost with messages left unacknowledged

PASSWORD_ENV = "PARLEY_PASSWORD"
#: The CA file used when --ca is not given and it exists (a checkout's certs/).
DEFAULT_CA = "certs/ca.pem"
#: How long /exit (or end of input) waits for the server to ack what was sent.
EXIT_ACK_WAIT = 10.0
#: How long /join waits for the server before going on.
JOIN_WAIT = 5.0
#: On a terminal, what was printed counts as read this long after it was
#: printed (one `read` frame per conversation then, not one per message).
READ_DELAY = 2.0
#: Characters of the latest message /conversations shows.
PREVIEW_CHARS = 60
DEFAULT_HISTORY = 20

EPILOG = f"""\
The password is read from the environment variable {PASSWORD_ENV}, or asked for
when standard input is a terminal. It is never a command-line argument.

Type a line to say it in the current room (#lobby at first). Commands:
{help_text(Client.TERMINAL, "chat")}
A line starting with // sends the rest literally, starting with one /.
On a terminal the line being typed stays put while messages arrive above it;
Left/Right, Home/End and the usual Emacs keys edit it, Up/Down recall earlier
lines, Ctrl-D (or /exit) leaves. Piped input (a script) is sent at the pace
the server announces, so any number of lines gets through.

Messages go to stdout, one line each:
  HH:MM:SS #room <nick> text        public
  HH:MM:SS *alice -> bob* text      private
  HH:MM:SS #room -!- text           system notice
Continuation lines of a multi-line text are indented by four spaces; lines from
another day start with the date. Status and errors go to stderr.

Without --ca (and no certs/ca.pem here) the server is trusted on first use: its
CA is pinned, checked against the invite's fingerprint or, on a terminal, by you.

exit codes:
  {EXIT_OK}  ok: everything sent was acknowledged
  {EXIT_ERROR}  other error
  {EXIT_USAGE}  usage error, no password available, or the CA file cannot be read
  {EXIT_UNREACHABLE}  the server cannot be reached
  {EXIT_TLS}  TLS verification failed (certificate not trusted, expired, not the one
     the invite names, or host name mismatch); the fingerprint the server offered
     is printed for comparison
  {EXIT_LOGIN}  login refused (the server's code and message are printed)
  {EXIT_UNACKED}  messages were left unacknowledged when the client ended
"""

HELP_TEXT = EPILOG.split("\n\n")[1] + "\n" + MODERATION_HELP

# Anything that could move a terminal's cursor or change its state. The server
# refuses such text, but the client does not trust what it prints.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("\ufffd", text)


# Bidirectional text (Unicode UAX #9). Terminals that run the bidi algorithm
# (VTE, Konsole, mlterm) reorder each line by its letters and direction
# controls: a U+202E RIGHT-TO-LEFT OVERRIDE in a message would reverse what
# follows it, and right-to-left text on a line with no left-to-right letter
# before it flips the whole line. The time, room and nick must never move, so:
# - embeddings and overrides (LRE RLE PDF LRO RLO) are shown, not obeyed: chat
#   has no use for them but spoofing, and since Unicode 6.3 isolates do their
#   job. The line and paragraph separators too (U+2029 ends a bidi paragraph,
#   and with it any isolation);
# - isolates (LRI RLI FSI ... PDI) are kept when paired, shown when not: a
#   stray PDI would close the isolate wrapped around the text;
# - marks (LRM, RLM, ALM) and zero-width characters are kept: right-to-left
#   writers need the marks and emoji and Persian need ZWJ/ZWNJ, and none of
#   them can reach out of an isolated run;
# - text with anything right-to-left left in it becomes one isolated run,
#   FSI (U+2068) ... PDI (U+2069), both invisible: the run takes its direction
#   from its own first letter, and the line from the head (the algorithm skips
#   isolated runs when it picks a line's direction). Plain left-to-right text
#   is printed as it is, so pipes and greps see exactly what was sent.
_EMBEDDINGS_AND_SEPARATORS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2028\u2029")
_ISOLATE_OPENERS = frozenset("\u2066\u2067\u2068")
_FSI = "\u2068"
_PDI = "\u2069"
#: Bidi classes that can change a line's order: right-to-left letters, Arabic
#: digits, and the explicit controls (UAX #9 table 4).
_REORDERING_CLASSES = frozenset(
    {"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
)
#: Nicks and room names are printable ASCII by protocol; anything else in them
#: comes from a broken or hostile server and is shown as a code.
_NOT_NAME_CHARACTER = re.compile(r"[^\x20-\x7e]")


def _code(ch: str) -> str:
    return f"<U+{ord(ch):04X}>"


def neutralise_bidi(text: str) -> str:
    """*text* (one line) with the direction controls that could act beyond it shown as codes.

    Embeddings and overrides (U+202A-U+202E) and the separators U+2028/U+2029
    always become e.g. `<U+202E>`; isolates (U+2066-U+2069) only when they are
    not paired. Marks and zero-width characters are left alone.
    """
    out: list[str] = []
    open_at: list[int] = []  # where the still-unpaired isolate initiators are in out
    for ch in text:
        if ch in _EMBEDDINGS_AND_SEPARATORS:
            out.append(_code(ch))
        elif ch in _ISOLATE_OPENERS:
            open_at.append(len(out))
            out.append(ch)
        elif ch == _PDI:
            if open_at:
                open_at.pop()
                out.append(ch)
            else:
                out.append(_code(ch))
        else:
            out.append(ch)
    for i in open_at:
        out[i] = _code(out[i])
    return "".join(out)


def isolate_text(text: str) -> str:
    """One line of message text, safe to print after a time and a nick (docs/cli.md).

    Controls are neutralised (neutralise_bidi); if anything right-to-left is
    left, the line is wrapped in FSI ... PDI so it cannot reorder or flip what
    surrounds it. Left-to-right text comes back unchanged.
    """
    safe = neutralise_bidi(text)
    if any(unicodedata.bidirectional(ch) in _REORDERING_CLASSES for ch in safe):
        return f"{_FSI}{safe}{_PDI}"
    return safe


def _name(value: str | None) -> str:
    return _NOT_NAME_CHARACTER.sub(lambda m: _code(m.group()), value or "")


def status_text(text: str) -> str:
    """A stderr status text: control characters replaced, direction controls neutralised."""
    return "\n".join(neutralise_bidi(line) for line in _printable(text).split("\n"))


def _silence(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null, so that flushing it at exit
    does not fail again (as Python's own docs advise for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real descriptor (a test's StringIO)
        pass


def format_message(message: Message, now: datetime | None = None) -> str:
    """The stdout form of *message*: one line, plus indented continuation lines.

    Time is local; a message from another day than *now* (default: today) gets
    its date in front. The text never moves the time, room or nick: each of its
    lines is an isolated run (isolate_text), and the names are ASCII or codes.
    """
    when = parse_ts(message.ts).astimezone()
    today = (now or datetime.now().astimezone()).date()
    stamp = when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")
    text = message.text
    emote = message.kind != "system" and message.from_ is not None and is_emote(text)
    if emote:
        text = text.removeprefix(EMOTE_PREFIX)
    if message.kind == "private":
        head = f"*{_name(message.from_)} -> {_name(message.to)}*"
        head += f" * {_name(message.from_)}" if emote else ""
    elif message.kind == "system" or message.from_ is None:
        head = f"{_name(message.room)} -!-".lstrip()
    elif emote:
        head = f"{_name(message.room)} * {_name(message.from_)}"
    else:
        head = f"{_name(message.room)} <{_name(message.from_)}>"
    first, *rest = _printable(text).split("\n")
    lines = [f"{stamp} {head} {isolate_text(first)}"]
    lines += [f"    {isolate_text(line)}" for line in rest]
    return "\n".join(lines)


def unread_text(count: int) -> str:
    """An unread count as shown: the server counts up to UNREAD_CAP, which means
    that many or more."""
    return f"{UNREAD_CAP}+" if count >= UNREAD_CAP else str(count)


def conversations_text(items: Sequence[ConversationSummary], me: str = "") -> str:
    """The answer to /conversations: one line per room and private conversation,
    with its unread count and the latest message, flat and cut to PREVIEW_CHARS
    (its text an isolated run, as in format_message)."""
    if not items:
        return "no conversations"
    lines = []
    for c in items:
        name = _name(c.name) if c.kind == "room" else f"{_name(c.name)} (private)"
        line = f"{name}: {unread_text(c.unread)} unread" if c.unread else f"{name}: read"
        if c.last is not None:
            who = "you" if me and fold(c.last.from_ or "") == fold(me) else _name(c.last.from_)
            text = " ".join(_printable(c.last.text).split())
            if len(text) > PREVIEW_CHARS or c.cut:
                text = text[:PREVIEW_CHARS].rstrip() + "\u2026"
            line += (
                f" \u00b7 {who}: {isolate_text(text)}" if who else f" \u00b7 {isolate_text(text)}"
            )
        lines.append(line)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (its --help lists commands and exit codes)."""

    def nick_arg(value: str) -> str:
        if not valid_nick(value):
            raise argparse.ArgumentTypeError("a nick is 1 to 24 letters, digits, '_' or '-'")
        return value

    parser = argparse.ArgumentParser(
        prog="parley-cli",
        description="parley terminal client: chat over TLS from a terminal or a script.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "server",
        nargs="?",
        metavar="INVITE",
        help="an invite line from the server's operator (parley://HOST:PORT#sha256=...): "
        "where to connect and which certificate to trust on first use; HOST[:PORT] works too",
    )
    parser.add_argument(
        "--host",
        default=None,
        metavar="HOST[:PORT][,HOST2[:PORT2]...]",
        help="server address (default 127.0.0.1); several, comma-separated, to fail over: "
        "they are tried in order at start and whenever the connection breaks",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="server port where --host gives none (default 5555)"
    )
    parser.add_argument(
        "--ca",
        default=None,
        help="the CA certificate that signed the server's certificate (default certs/ca.pem "
        "if that file exists, else trust on first use)",
    )
    parser.add_argument("--nick", type=nick_arg, help="your nick (required to chat)")
    parser.add_argument(
        "--register",
        action="store_true",
        help="create the account if the nick is free (otherwise log in)",
    )
    parser.add_argument(
        "--ack-wait",
        type=float,
        default=EXIT_ACK_WAIT,
        metavar="SECONDS",
        help="at exit, how long to wait for the server to acknowledge what was sent "
        f"(default {EXIT_ACK_WAIT:.0f})",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="list the parley servers advertised on the LAN (mDNS), then exit",
    )
    parser.add_argument(
        "--discover-wait",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long --discover listens (default {DEFAULT_WAIT:.0f})",
    )
    parser.add_argument(
        "--mdns-interface",
        action="append",
        default=None,
        metavar="ADDRESS",
        help="browse only on the interface with this address (repeatable; default all, "
        "or env PARLEY_MDNS_INTERFACES)",
    )
    parser.add_argument(
        "--forget-pin",
        action="store_true",
        help="forget the certificate pinned for this server (after its operator confirmed "
        "a new CA), then exit",
    )
    parser.add_argument(
        "--keyring",
        action="store_true",
        help="keep this device's end-to-end keys encrypted under a key in the OS keyring "
        "(default: a passphrase, from env PARLEY_KEY_PASSPHRASE or asked on a terminal)",
    )
    parser.add_argument(
        "--no-e2e",
        action="store_true",
        help="no end-to-end encryption on this run: private messages go as plain text "
        "(the server can read them) and encrypted ones are not shown",
    )
    return parser


def read_password(
    nick: str,
    environ: Mapping[str, str],
    stdin: TextIO,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str | None:
    """The password from PARLEY_PASSWORD, else a prompt when *stdin* is a terminal, else None."""
    value = environ.get(PASSWORD_ENV)
    if value:
        return value
    if stdin.isatty():
        try:
            return prompt(f"password for {nick}: ") or None
        except (EOFError, KeyboardInterrupt):
            return None
    return None


class _Printer:
    """Consumes the client's events on its own thread and prints them."""

    STOP = object()

    def __init__(self, client: ChatClient, out: TextIO, err: TextIO) -> None:
        self._client = client
        self._out = out
        self._err = err
        self._lock = threading.Lock()  # one writer per stream at a time
        self._join_wanted: str | None = None
        self._join_result: str | None = None
        self._join_done = threading.Event()
        #: /ids: message ids in front of messages (for /delete and /edit).
        self.show_ids = False
        # Read markers: the newest message id printed per conversation
        # ((kind, name) as ChatClient.mark_read takes them), what the server
        # was last told, and whether to tell it by itself (a terminal: what is
        # printed there is read) READ_DELAY after printing.
        self._printed: dict[tuple[str, str], int] = {}
        self._marked: dict[tuple[str, str], int] = {}
        self._read_due: float | None = None
        self.auto_read = False
        self.pacer: Pacer | None = None  # read frames keep to the input's pace
        #: Standard output was closed (`parley-cli ... | head`): nothing more is printed there.
        self.stdout_gone = False
        self.thread = threading.Thread(target=self._run, name="cli-printer", daemon=True)

    def start(self) -> None:
        """Start printing events."""
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Print what is left in the queue, then end."""
        self._client.events.put(self.STOP)  # type: ignore[arg-type]
        self.thread.join(timeout)

    def expect_join(self, room: str) -> threading.Event:
        """Arm a wait for RoomJoined(room) (or a server error); returns the event to wait on."""
        with self._lock:
            self._join_wanted = fold(room)
            self._join_result = None
            self._join_done.clear()
        return self._join_done

    @property
    def joined_room(self) -> str | None:
        """The room name the last expected join ended with (None if it failed)."""
        return self._join_result

    def out(self, text: str) -> None:
        """A line (or lines) on stdout (nothing once its reader has gone)."""
        with self._lock:
            if self.stdout_gone:
                return
            try:
                print(text, file=self._out, flush=True)
            except BrokenPipeError:
                # The reader left (`| head`): say it once, then print nothing more
                # there; the session goes on, so what the input sends still counts.
                self.stdout_gone = True
                _silence(self._out)
                print(
                    "(standard output was closed: messages are no longer printed)",
                    file=self._err,
                    flush=True,
                )

    def err(self, text: str) -> None:
        """A status line on stderr (room names and server messages in it are made safe)."""
        with self._lock:
            print(status_text(text), file=self._err, flush=True)

    def mark_read(self, *, only_due: bool = False, first_free: bool = False) -> int:
        """Tell the server each conversation printed is read up to its newest
        line printed (what it already knows is not sent again). *only_due*:
        only once READ_DELAY has passed, and only with frames to spare (else
        later). Otherwise each frame waits for the pace, but the first when
        *first_free* (the /read line already took its frame). Returns how
        many markers were sent."""
        with self._lock:
            if only_due and (self._read_due is None or time.monotonic() < self._read_due):
                return 0
            news = [(k, i) for k, i in self._printed.items() if i > self._marked.get(k, 0)]
            self._read_due = None
        sent = 0
        for n, ((kind, name), message_id) in enumerate(news):
            pacer = self.pacer
            if pacer is not None and only_due:
                if not pacer.try_take():
                    with self._lock:  # no frame to spare now: try again shortly
                        self._read_due = time.monotonic() + READ_DELAY
                    break
            elif pacer is not None and (n or not first_free):
                pacer.wait()
            try:
                self._client.mark_read(kind, name, message_id)
            except (LocalProtocolError, ClientError, ValueError):
                continue
            with self._lock:
                self._marked[(kind, name)] = max(self._marked.get((kind, name), 0), message_id)
            sent += 1
        return sent

    def _printed_message(self, message: Message, batch: str | None) -> None:
        """Note *message* as printed (search results are not reading a conversation)."""
        if batch == "search":
            return
        if message.room is not None:
            key = ("room", message.room)
        else:
            me = fold(self._client.nick) if self._client is not None else ""
            other = message.to if fold(message.from_ or "") == me else message.from_
            if not other:
                return
            key = ("private", other)
        with self._lock:
            if message.id > self._printed.get(key, 0):
                self._printed[key] = message.id
                if self.auto_read and self._read_due is None:
                    self._read_due = time.monotonic() + READ_DELAY

    def _run(self) -> None:
        while True:
            due = self._read_due
            if due is not None and time.monotonic() >= due:
                # Checked before every event, so a busy room cannot put it off.
                self.mark_read(only_due=True)
                continue
            try:
                if due is None:
                    event = self._client.events.get()
                else:
                    event = self._client.events.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                continue
            if event is self.STOP:
                return
            try:
                self.show(event)
            except Exception as exc:  # a display problem must not stop the printing
                self.err(f"(could not show an event: {exc})")

    def show(self, event: ClientEvent) -> None:
        """Print one event where it belongs."""
        client = self._client
        if isinstance(event, MessageReceived):
            text = format_message(event.message)
            if event.message.edited is not None:
                text += " (edited)"
            if self.show_ids:
                text = f"[{event.message.id}] {text}"
            self.out(text)
            self._printed_message(event.message, event.batch)
            if event.e2e_error:
                self.err(f"(message {event.message.id} could not be decrypted: {event.e2e_error})")
        elif isinstance(event, E2ENotice):
            self.err(event.text)
        elif isinstance(event, Connected):
            how = "resumed session" if event.resumed else "logged in"
            created = ", account created" if event.created else ""
            self.err(
                f"connected as {event.nick} to {client.host}:{client.port} "
                f"({event.tls_version}, {how}{created}; server certificate SHA-256 "
                f"{event.fingerprint})"
            )
        elif isinstance(event, ConversationsListed):
            if event.tag == "conversations":
                self.err(conversations_text(event.items, client.nick if client else ""))
                return
            unread = [f"{c.name} {unread_text(c.unread)}" for c in event.items if c.unread]
            if unread:
                self.err(f"unread: {', '.join(unread)}")
        elif isinstance(event, BatchStarted):
            if event.kind == BatchKind.REPLAY and event.gap:
                self.err("(older messages were left out: /history pages back)")
            elif event.kind == BatchKind.HISTORY:
                self.err(f"-- history of {event.target} --")
            elif event.kind == BatchKind.SEARCH:
                self.err("-- search results, newest first --")
        elif isinstance(event, BatchEnded):
            if event.kind == BatchKind.REPLAY and event.target != "latest" and event.count:
                self.err(f"-- {event.count} missed message(s) replayed --")
            elif event.kind in (BatchKind.HISTORY, BatchKind.SEARCH):
                more = ", more before" if event.more else ""
                self.err(f"-- end of {event.kind} ({event.count} message(s){more}) --")
        elif isinstance(event, PresenceChanged):
            if event.tag == "who":
                self.err(f"online in {event.room}: {', '.join(event.online) or 'nobody'}")
        elif isinstance(event, RoomsListed):
            for name, members, joined in event.rooms:
                mark = " (joined)" if joined else ""
                self.err(f"{name}: {members} member(s){mark}")
        elif isinstance(event, RoomJoined):
            self.err(f"joined {event.room}")
            with self._lock:
                if self._join_wanted == fold(event.room):
                    self._join_result = event.room
                    self._join_wanted = None
                    self._join_done.set()
        elif isinstance(event, RoomLeft):
            self.err(f"left {event.room}")
        elif isinstance(event, ErrorReply):
            self.err(f"error {event.code}: {event.message}")
            with self._lock:
                if self._join_wanted is not None and event.ref is None:
                    self._join_wanted = None
                    self._join_done.set()
        elif isinstance(event, Disconnected):
            if event.by_user:
                return
            if event.will_retry:
                self.err(f"disconnected: {event.reason}")
            else:
                self.err(f"disconnected: {event.reason} (type /rejoin to connect again)")
        elif isinstance(event, Reconnecting):
            self.err(f"reconnecting in {event.delay:.1f} s (attempt {event.attempt})")
        elif (line := describe(event)) is not None:
            self.err(line)  # moderation (cli_moderation.py)


class Pacer:
    """Keeps input within the flood pace the server announced in `welcome`.

    The server's bucket holds `burst` frames and refills at `rate` a second;
    the login's `hello` took one. This bucket starts one lower still and never
    fills past `burst - 1`, leaving a frame spare for the library's own pings
    and pongs, so a script that waits here is never slowed by the server. With
    no announced pace (an older server) nothing waits.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._rate = rate if rate and rate > 0 else None
        self._cap = max(1.0, float((burst or 1) - 1))
        self._tokens = max(0.0, self._cap - 1.0)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()  # the printer takes frames too (read markers)

    @classmethod
    def for_client(cls, client: ChatClient) -> Pacer:
        """A pacer for what *client*'s server announced."""
        return cls(client.flood_rate, client.flood_burst)

    def try_take(self) -> bool:
        """Take one frame if one may go now, without waiting; False if not."""
        if self._rate is None:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self._cap, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def wait(self) -> float:
        """Block until one more frame may go; returns how long it waited."""
        if self._rate is None:
            return 0.0
        with self._lock:
            return self._wait_locked()

    def _wait_locked(self) -> float:
        rate = self._rate
        assert rate is not None  # wait() returns at once without a rate
        now = self._clock()
        self._tokens = min(self._cap, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        waited = 0.0
        if self._tokens < 1.0:
            waited = (1.0 - self._tokens) / rate
            self._sleep(waited)
            # Exactly one token is due now (recomputing it from the clock could
            # fall short by a rounding error and spin).
            self._tokens, self._stamp = 1.0, self._clock()
        self._tokens -= 1.0
        return waited


def script_lines(stdin: TextIO, pacer: Pacer) -> Iterator[str]:
    """Lines of *stdin* (a pipe or a file), each released at the server's pace."""
    while True:
        line = stdin.readline()
        if not line:
            return
        if line.strip():
            pacer.wait()
        yield line


def terminal_lines(prompt: Callable[[], str], pacer: Pacer, **session: object) -> Iterator[str]:
    """Lines typed at a prompt_toolkit prompt: line editing, Up/Down history.

    *prompt* gives the prompt text (the current room). Ends at Ctrl-D; Ctrl-C
    raises KeyboardInterrupt, as in the plain mode. *session* goes to
    PromptSession (tests pass their own input and output).
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    reader: PromptSession[str] = PromptSession(history=InMemoryHistory(), **session)  # type: ignore[arg-type]
    while True:
        try:
            line = reader.prompt(prompt)
        except EOFError:
            return
        if line.strip():
            pacer.wait()
        yield line


def use_terminal(stdin: TextIO, stdout: TextIO) -> bool:
    """True when both ends are a terminal and prompt_toolkit is there to drive it."""
    if not (stdin.isatty() and stdout.isatty()):
        return False
    try:
        import prompt_toolkit  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def screen(terminal: bool, stdout: TextIO, stderr: TextIO) -> Iterator[tuple[TextIO, TextIO]]:
    """The streams the printer writes to: on a terminal, prompt_toolkit's proxies,
    which print above the line being typed; otherwise *stdout* and *stderr*."""
    if not terminal:
        yield stdout, stderr
        return
    from prompt_toolkit.patch_stdout import patch_stdout

    with patch_stdout():
        yield sys.stdout, sys.stderr


class _Session:
    """The main thread's side: reads lines, runs commands, keeps the current room."""

    def __init__(
        self, client: ChatClient, printer: _Printer, e2e: TerminalE2E | None = None
    ) -> None:
        self.client = client
        self.printer = printer
        self.room = DEFAULT_ROOM
        self.moderation = ModerationCommands(client, lambda: self.room, printer)
        self.e2e = e2e

    def handle(self, line: str) -> bool:
        """Act on one input line. Returns False when the user asked to leave."""
        if has_surrogate(line):
            # Python reads bytes that are not UTF-8 as lone surrogates
            # (surrogateescape): nothing can send them, so say what is wrong.
            self.printer.err(
                "not sent: the line holds bytes that are not UTF-8 text "
                "(save the file as UTF-8, or set the terminal to UTF-8)"
            )
            return True
        command = commands.parse(line, Client.TERMINAL)
        if command is None:
            return True
        try:
            if (
                isinstance(command, UnknownCommand)
                and self.e2e is not None
                and self.e2e.command(command.name, command.args)  # /keys, /trust, ...
            ):
                return True
            if isinstance(command, Invalid):
                self.printer.err(command.message)
                return True
            return self._run(command)
        except LocalProtocolError as exc:
            self.printer.err(f"error {exc.code}: {exc.message}")
        except ClientError as exc:
            self.printer.err(f"error: {exc}")
        except Exception as exc:
            # A bug of ours. One line, and the session goes on: ending it would
            # lose the connection and whatever comes after this line.
            self.printer.err(
                f"error: parley could not do that ({type(exc).__name__}: {exc}); "
                "this is a bug in parley, please report it"
            )
        return True

    def _run(self, command: Command) -> bool:
        """Perform one parsed command; False for /exit."""
        match command:
            case commands.Say(text):
                return self._say(text)
            case commands.PrivateMessage(nick, text):
                return self._msg(nick, text)
            case commands.JoinRoom(room):
                return self._join(room)
            case commands.LeaveRoom(room):
                return self._leave(room)
            case commands.Who(room):
                self.client.who(room or self.room, tag="who")
            case commands.ListRooms():
                self.client.rooms(tag="rooms")
            case commands.ListConversations():
                self.client.conversations(tag="conversations")
            case commands.MarkRead():
                sent = self.printer.mark_read(first_free=True)
                self.printer.err(
                    f"marked {sent} conversation(s) read" if sent else "nothing new to mark read"
                )
            case commands.ShowHistory(limit):
                self.client.history(room=self.room, limit=limit or DEFAULT_HISTORY, tag="history")
            case commands.SearchMessages(words):
                self.client.search(words, tag="search")
                if self.e2e is not None:
                    self.e2e.search(words, format_message)
            case commands.Rejoin():
                self.printer.err("rejoining...")
                self.client.rejoin()
            case commands.Help():
                self.printer.err(HELP_TEXT)
                if self.e2e is not None:
                    self.printer.err(E2E_HELP)
            case commands.Exit():
                return False
            case commands.Moderate() | commands.ToggleIds():
                self.moderation.run(command)
        return True

    def _say(self, text: str) -> bool:
        try:
            self.client.send_text(text, room=self.room)
        except LocalProtocolError as exc:
            self.printer.err(f"not sent: {exc.message}")
            return True
        if not self.client.connected:
            self.printer.err("(not connected: the message is kept and sent after reconnecting)")
        return True

    def _msg(self, nick: str, text: str) -> bool:
        if self.e2e is not None:
            self.e2e.send_private(nick, text, lambda: self.client.send_text(text, to=nick))
            return True
        self.client.send_text(text, to=nick)
        return True

    def _join(self, room: str) -> bool:
        known = {fold(r): r for r in self.client.joined_rooms}
        if fold(room) in known:
            self.room = known[fold(room)]
            self.printer.err(f"talking in {self.room}")
            return True
        done = self.printer.expect_join(room)
        self.client.join(room)
        # Wait for the server, so the next line really goes to the new room.
        if done.wait(JOIN_WAIT) and self.printer.joined_room is not None:
            self.room = self.printer.joined_room
            self.printer.err(f"talking in {self.room}")
        elif not done.is_set():
            self.printer.err(f"no answer to /join yet; still talking in {self.room}")
        return True

    def _leave(self, arg: str | None) -> bool:
        room = arg or self.room
        self.client.leave(room)
        if fold(room) == fold(self.room) and fold(room) != fold(DEFAULT_ROOM):
            self.room = DEFAULT_ROOM
            self.printer.err(f"talking in {self.room}")
        return True


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the terminal client; returns the exit code."""
    if stdin is None and isinstance(sys.stdin, io.TextIOWrapper):
        # A UTF-8 locale reads stdin strictly: one byte that is not UTF-8 in a
        # piped file would end the client with a traceback. Read such bytes as
        # lone surrogates instead; _Session.handle refuses that line alone.
        sys.stdin.reconfigure(errors="surrogateescape")
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    env = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(code: int, text: str) -> int:
        print(status_text(text), file=stderr, flush=True)
        return code

    if args.discover:
        return _list_servers(args, env, stdout, stderr)
    try:
        target, addresses = _target(args)
    except InviteError as exc:
        return fail(EXIT_USAGE, f"bad invite: {exc}")
    except ValueError as exc:
        return fail(EXIT_USAGE, f"bad --host: {exc}")
    if args.forget_pin:
        forgot = _pins(env).forget_pin(target.host, target.port)
        return fail(EXIT_OK, f"{'forgot' if forgot else 'no'} pinned certificate for {target}")
    if args.nick is None:
        parser.print_usage(stderr)
        return fail(EXIT_USAGE, "--nick is required (except with --discover or --forget-pin)")
    trust = _settle_trust(args, target, env, stdin, stderr)
    if isinstance(trust, int):
        return trust
    password = read_password(args.nick, env, stdin)
    if password is None:
        return fail(
            EXIT_USAGE,
            f"no password: set {PASSWORD_ENV} in the environment, or run on a terminal "
            "to be asked for it",
        )
    try:
        client = ChatClient(
            addresses,
            nick=args.nick,
            password=password,
            register=args.register,
            client_name="parley-cli",
            **trust,  # type: ignore[arg-type]
        )
    except TrustStoreError as exc:
        return fail(EXIT_USAGE, f"cannot use the CA file: {exc}")
    except ValueError as exc:
        return fail(EXIT_USAGE, str(exc))
    # Attached before connecting, so the replay of encrypted messages is decrypted.
    e2e_parts = None
    if not args.no_e2e:
        try:
            e2e_parts = open_session(
                client, env, key_passphrase(env, stdin, args.keyring), config_dir(env)
            )
        except E2EError as exc:
            print(status_text(f"end-to-end encryption is off: {exc}"), file=stderr, flush=True)

    try:
        client.connect()
    except ServerUnreachable as exc:
        return fail(EXIT_UNREACHABLE, f"server unreachable: {exc}")
    except CertificateNotTrusted as exc:
        if "pinned_cert_pem" in trust and not isinstance(exc, CertificateExpired):
            return fail(EXIT_TLS, _changed_warning(exc, target, env))
        return fail(EXIT_TLS, _tls_failure(exc))
    except TLSVerificationFailed as exc:
        return fail(EXIT_TLS, _tls_failure(exc))
    except LoginRefused as exc:
        return fail(EXIT_LOGIN, f"login refused: {exc.code}: {exc.message}")
    except ClientError as exc:
        return fail(EXIT_ERROR, f"cannot connect: {exc}")

    terminal = use_terminal(stdin, stdout)
    pacer = Pacer.for_client(client)
    with screen(terminal, stdout, stderr) as (out, err):
        printer = _Printer(client, out, err)
        printer.auto_read = terminal  # a script's output is not someone reading
        printer.pacer = pacer
        printer.start()
        e2e = (
            TerminalE2E(*e2e_parts, printer.out, printer.err, env, stdin)
            if e2e_parts is not None
            else None
        )
        if e2e is not None:
            e2e.settle()
        session = _Session(client, printer, e2e)
        lines = (
            terminal_lines(lambda: f"{session.room}> ", pacer)
            if terminal
            else script_lines(stdin, pacer)
        )
        try:
            for line in lines:
                if not session.handle(line):
                    break
        except KeyboardInterrupt:
            pass
        if terminal:
            printer.mark_read()  # what is on the screen now has been seen
        all_acked = client.close(reason="bye", timeout=max(0.0, args.ack_wait))
        left = len(client.pending)
        printer.stop()
    if not all_acked:
        print(
            f"{left} message(s) were not acknowledged by the server and may not have been stored",
            file=stderr,
            flush=True,
        )
    print("goodbye", file=stderr, flush=True)
    return EXIT_OK if all_acked else EXIT_UNACKED


def _tls_failure(exc: TLSVerificationFailed) -> str:
    offered = exc.fingerprint or "unknown (could not fetch it)"
    return (
        f"TLS verification failed: {exc}\n"
        f"the server offered a certificate with SHA-256 fingerprint {offered}\n"
        f"compare it with the one the server printed at start; check --ca and --host"
    )


def _changed_warning(exc: TLSVerificationFailed, target: Invite, env: Mapping[str, str]) -> str:
    pin = _pins(env).get_pin(target.host, target.port)
    before = short_fingerprint(pin.fingerprint) if pin else "unknown"
    now = short_fingerprint(exc.anchor_fingerprint) if exc.anchor_fingerprint else "unknown"
    return (
        f"WARNING: {target.host}:{target.port} offered a certificate from a new CA, not the "
        "one you trusted before.\n"
        f"  trusted before: {before}\n"
        f"  offered now:    {now}\n"
        "Someone may be intercepting the connection, or the operator replaced the CA (a "
        "renewal alone never does this). Nothing was sent. Only if the operator confirms the "
        "new fingerprint, run again with --forget-pin, then connect and check it."
    )


def _target(args: argparse.Namespace) -> tuple[Invite, list[Address]]:
    """Where to connect: the invite (or HOST[:PORT]) argument, else --host/--port.

    Returns the first server (its pin is the trust anchor for all: they share
    one CA) and every address to try, in order. Raises InviteError or ValueError.
    """
    fingerprint = None
    port = args.port or 5555
    hosts = args.host or "127.0.0.1"
    if args.server:
        text = args.server if looks_like_invite(args.server) else f"parley://{args.server}"
        invite = parse_invite(text)
        fingerprint, port = invite.fingerprint, args.port or invite.port
        hosts = args.host or invite.host
    addresses = parse_addresses(hosts, port)
    first_host, first_port = addresses[0]
    return Invite(first_host, first_port, fingerprint), addresses


def _pins(env: Mapping[str, str]) -> SettingsStore:
    # The desktop client's pins: trusting a server once per machine covers both clients.
    return SettingsStore(config_dir(env))


def _settle_trust(
    args: argparse.Namespace,
    target: Invite,
    env: Mapping[str, str],
    stdin: TextIO,
    stderr: TextIO,
) -> dict[str, object] | int:
    """The trust anchor for ChatClient (ca_file or pinned_cert_pem), or an exit code.

    --ca FILE, else certs/ca.pem when it exists (a checkout), else trust on
    first use (client/trust.py): the pin, migrated to the CA when it was a
    server certificate; or, the first time, the certificate the invite names,
    or the one a person accepts at a terminal prompt.
    """
    if args.ca is not None:
        return {"ca_file": args.ca}
    if Path(DEFAULT_CA).is_file():
        return {"ca_file": DEFAULT_CA}
    where = f"{target.host}:{target.port}"

    def say(text: str) -> None:
        print(status_text(text), file=stderr, flush=True)

    store = _pins(env)
    pin = store.get_pin(target.host, target.port)
    if pin is not None and is_ca_certificate(pin.pem):
        return {"pinned_cert_pem": pin.pem}
    try:
        probed = probe_server_certificate(target.host, target.port)
    except (OSError, ssl.SSLError) as exc:
        if pin is not None:  # let the real connection say what is wrong
            return {"pinned_cert_pem": pin.pem}
        say(f"server unreachable: cannot fetch the certificate of {where}: {exc}")
        return EXIT_UNREACHABLE
    if pin is not None:
        ca_pem = upgraded_pin(pin.pem, probed)
        if ca_pem is not None and probed.ca_fingerprint is not None:
            store.forget_pin(target.host, target.port)
            store.set_pin(target.host, target.port, Pin(ca_pem, probed.ca_fingerprint))
            say(f"now trusting the CA that signed the certificate pinned for {where}")
            return {"pinned_cert_pem": ca_pem}
        return {"pinned_cert_pem": pin.pem}
    what = describe_anchor(probed)
    short = short_fingerprint(probed.anchor_fingerprint)
    if target.fingerprint is not None:
        try:
            pem = anchor_for_invite(probed, target.fingerprint, where)
        except InviteMismatch as exc:
            say(f"WARNING: {exc}")
            return EXIT_TLS
        say(f"first connection to {where}: its {what} {short} matches the invite; trusted")
    elif stdin.isatty():
        say(
            f"first connection to {where}. Its {what} fingerprint is\n    {short}\n"
            "Compare it with the one the server printed at start (ask its operator)."
        )
        print("Trust it and connect? [y/N] ", end="", file=stderr, flush=True)
        if stdin.readline().strip().lower() not in ("y", "yes"):
            say("not trusted; nothing was sent")
            return EXIT_TLS
        pem = probed.anchor_pem
    else:
        say(
            f"first connection to {where}, and nothing to check its certificate against: "
            "pass the invite line (`parley-server invite` on the server) or --ca FILE.\n"
            f"The server offers the {what} fingerprint {short}."
        )
        return EXIT_TLS
    store.set_pin(target.host, target.port, Pin(pem, probed.anchor_fingerprint))
    return {"pinned_cert_pem": pem}


def _list_servers(
    args: argparse.Namespace, env: Mapping[str, str], stdout: TextIO, stderr: TextIO
) -> int:
    """--discover: one line per server found, `HOST:PORT  NAME  FINGERPRINT`, on stdout."""
    if not enabled(env):
        print("mDNS is turned off (PARLEY_MDNS=off)", file=stderr, flush=True)
        return EXIT_USAGE
    interfaces = args.mdns_interface or interfaces_from_env(env)
    try:
        found = discover(max(0.1, args.discover_wait), interfaces)
    except OSError as exc:
        print(status_text(str(exc)), file=stderr, flush=True)
        return EXIT_ERROR
    for server in found:
        fp = short_fingerprint(server.fingerprint) if server.fingerprint else "-"
        print(f"{server.where}\t{status_text(server.name)}\t{fp}", file=stdout, flush=True)
    print(f"{len(found)} server(s) found", file=stderr, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
