"""IrcConnection: one IRC client on the parley I/O design.

It is a server.connection.Connection (the same TLS stream, bounded queue, flood
bucket, deadlines and I/O loop) that decodes IRC lines instead of JSON frames,
writes IRC lines for the errors and pings the connection sends by itself, and
renders what the hub delivers (encoded parley frames) as IRC lines (render.py).
It is a hub Peer like any other connection.

Answers keep the order of the commands: a command that waits for the database
runs as the connection's one job (begin_job/end_job), and the next line is read
only once it is done; its reply lines, and the lines the hub renders for it
meanwhile that it caused (its echo, its own JOIN or TOPIC), go out together at
its end, in one labeled-response batch when the client asked for labels.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from parley_chat.ircproto import (
    MAX_CLIENT_TAG_BYTES,
    CapNegotiation,
    ChunkAssembler,
    LineDecoder,
    Message,
    encode,
    sendable,
)
from parley_chat.protocol import Error, Frame, Ping, fold

from ..config import ServerConfig
from ..connection import Connection, Finished
from .render import Renderer, View

if TYPE_CHECKING:
    from .gateway import IrcGateway

PLAINTEXT_REFUSAL = (
    b"ERROR :This port speaks IRC over TLS only: turn on TLS (SSL) in your IRC client\r\n"
)


def _no_dispatch(conn: Connection, frame: Frame) -> None:  # pragma: no cover - never called
    raise AssertionError("an IRC connection dispatches IRC lines, not frames")


class Command:
    """The reply being gathered for one command: its lines and its label."""

    def __init__(self, label: str | None) -> None:
        """*label*: the client's label tag, if labeled-response applies."""
        self.label = label
        self.lines: list[Message] = []


class IrcConnection(Connection):
    """An IRC client connection (see the module docstring)."""

    plaintext_refusal = PLAINTEXT_REFUSAL

    def __init__(
        self,
        cfg: ServerConfig,
        raw: socket.socket,
        peer: tuple[str, int],
        *,
        gateway: IrcGateway,
        finished: Finished,
        refuse: Any = None,
    ) -> None:
        """A connection served by *gateway*'s handlers."""
        super().__init__(cfg, raw, peer, dispatch=_no_dispatch, finished=finished, refuse=refuse)
        self.gw = gateway
        self.caps = CapNegotiation(gateway.capabilities())
        self.sasl = ChunkAssembler()
        self.sasl_mech: str | None = None
        self.account: tuple[Any, str] | None = None  # (UserRecord, device) after SASL
        self.wanted_nick: str | None = None
        self.user_given = False
        self.username = "user"
        self.realname = ""
        self.password: str | None = None
        self.registering = False  # the login job is running
        self.guest = False  # logged in with a temporary (guest) account
        self.guest_claim: str | None = None  # the guest nick this connection holds
        self.device = "default"
        #: The newest message id when the session started (what this device has seen).
        self.baseline = 0
        self._later: list[Callable[[], None]] = []
        self._state_lock = threading.Lock()
        self._shown: dict[str, str] = {}  # fold(room) -> room: the channels this client has
        self._refs: dict[str, None] = {}  # client ids of this connection's own PRIVMSGs
        self._ids = itertools.count(1)
        self._command: Command | None = None
        #: The first parameter of the command being answered (for refusals).
        self.current_target: str | None = None
        self.renderer = Renderer(
            View(
                nick="*",
                server=gateway.server_name,
                has_cap=self.caps.has,
                shows=self.shows,
                show=self.show,
                hide=self.hide,
                is_echo=self._is_echo,
                is_online=gateway.hub.is_online,
                mask=gateway.mask,
                is_notice=gateway.is_notice,
                part_reason=gateway.part_reason,
                quit_reason=gateway.quit_reason,
            )
        )

    # --- the Connection hooks ----------------------------------------------------

    def _new_decoder(self, cfg: ServerConfig) -> Any:
        return LineDecoder(max_tags=MAX_CLIENT_TAG_BYTES)

    def _handle_line(self, line: Any) -> None:
        self.gw.handle(self, line)

    def _encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Ping):
            return encode(Message("PING", (frame.token or self.gw.server_name,)))
        if isinstance(frame, Error):
            # Errors the connection sends by itself close it (flood, time-outs, shutdown).
            return encode(Message("ERROR", (f"Closing link: {frame.message}",)))
        return b""

    def send_frame(self, frame: Frame) -> None:
        """Parley frames from shared handlers: an error in a command becomes its reply."""
        command = self._command
        if isinstance(frame, Error) and command is not None:
            command.lines.extend(self.gw.error_reply(self, frame))
            return
        data = self._encode(frame)
        if data:
            self.send_bytes(data)

    # --- the hub's deliveries, rendered --------------------------------------------

    def _rendered(self, data: bytes) -> bytes:
        command = self._command
        out: list[bytes] = []
        for msg, own in self.renderer.render(data):
            if command is not None and (own or self._caused(msg)):
                # An empty command only marks an echo's place (a label's ACK needs none).
                command.lines.append(msg)
                continue
            if msg.command:
                out.append(encode(msg))
        return b"".join(out)

    def _caused(self, msg: Message) -> bool:
        # The current command's own effects come back from the hub with our nick as source.
        src = msg.source or ""
        return msg.command in ("JOIN", "PART", "TOPIC", "KICK", "MODE") and (
            fold(src.split("!", 1)[0]) == fold(self.renderer.v.nick)
        )

    def deliver(self, data: bytes, message_id: int | None = None, *, lazy: bool = False) -> None:
        """Queue the IRC form of encoded parley frames (never blocks)."""
        out = self._rendered(data)
        if out:
            super().deliver(out, message_id, lazy=lazy)

    def deliver_many(self, chunks: list[tuple[int | None, bytes]]) -> None:
        """Queue several deliveries, in order."""
        out = [(mid, r) for mid, d in chunks if (r := self._rendered(d))]
        if out:
            super().deliver_many(out)

    def deliver_shared(self, data: bytes, chunks: list[tuple[int | None, bytes]]) -> None:
        """Shared bytes are rendered per connection anyway: treat them as chunks."""
        self.deliver_many(chunks)

    # --- channels shown, own message ids ------------------------------------------

    def shows(self, room: str) -> str | None:
        """The channel's name if this client has it, else None."""
        with self._state_lock:
            return self._shown.get(fold(room))

    def show(self, room: str) -> None:
        """This client now has the channel *room*."""
        with self._state_lock:
            self._shown[fold(room)] = room

    def hide(self, room: str) -> None:
        """This client no longer has the channel *room*."""
        with self._state_lock:
            self._shown.pop(fold(room), None)

    def channels(self) -> list[str]:
        """The channels this client has."""
        with self._state_lock:
            return sorted(self._shown.values(), key=fold)

    def new_ref(self) -> str:
        """A client message id for the next PRIVMSG of this connection."""
        ref = f"irc-{self.session_id}-{next(self._ids)}"
        with self._state_lock:
            self._refs[ref] = None
            if len(self._refs) > 1024:
                self._refs.pop(next(iter(self._refs)))
        return ref

    def _is_echo(self, ref: str | None) -> bool:
        if ref is None:
            return False
        with self._state_lock:
            return ref in self._refs

    def set_nick(self, nick: str) -> None:
        """The nick this connection renders as its own."""
        self.renderer.v.nick = nick

    # --- replies -------------------------------------------------------------------

    def begin_command(self, label: str | None) -> Command:
        """Start gathering the reply of a command."""
        self._command = Command(label)
        return self._command

    def end_command(self) -> None:
        """Send the gathered reply (labeled as the client asked) and stop gathering."""
        command, self._command = self._command, None
        if command is None:
            return
        lines = command.lines
        real = [m for m in lines if m.command]
        label = command.label
        if label is None or not self.caps.has("labeled-response"):
            if real:
                self.send_bytes(b"".join(encode(m) for m in real))
            return
        if not real:
            self.send_bytes(encode(Message("ACK", (), self.gw.server_name, {"label": label})))
        elif len(real) == 1:
            self.send_bytes(encode(real[0].with_tags(label=label)))
        else:
            ref = self.gw.batch_id()
            out = [
                Message(
                    "BATCH", (f"+{ref}", "labeled-response"), self.gw.server_name, {"label": label}
                )
            ]
            out += [m.with_tags(batch=ref) for m in real]
            out.append(Message("BATCH", (f"-{ref}",), self.gw.server_name))
            self.send_bytes(b"".join(encode(m) for m in out))

    def later(self, step: Callable[[], None]) -> None:
        """Run *step* once the current command's reply has been sent."""
        self._later.append(step)

    def take_later(self) -> list[Callable[[], None]]:
        """The steps later() queued (and forget them)."""
        steps, self._later = self._later, []
        return steps

    def reply(self, *msgs: Message) -> None:
        """Add lines to the current command's reply (or send them at once).

        Replies often repeat what the client sent (a channel, a nick, a
        subcommand), which need not fit in a middle parameter: sendable()."""
        sent = [sendable(m) for m in msgs]
        command = self._command
        if command is not None:
            command.lines.extend(sent)
        else:
            self.send_bytes(b"".join(encode(m) for m in sent))
