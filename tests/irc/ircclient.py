"""A raw IRC client for the IRC listener's tests: real TLS, lines by hand.

Used from one test thread only. Every read has a deadline; `sync()` is the
PING/PONG barrier irctest uses: everything the server sent before the PONG.
"""

from __future__ import annotations

import base64
import itertools
import socket
import ssl
import time
from collections import deque
from pathlib import Path

from parley_chat.ircproto import Message, parse

DEFAULT_TIMEOUT = 15.0
_tokens = itertools.count(1)


class IrcClient:
    """One TLS connection to the IRC port."""

    def __init__(self, address: tuple[str, int], ca_file: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        raw = socket.create_connection(address, timeout=DEFAULT_TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self._buf = b""
        self._lines: deque[Message] = deque()
        self.nick = "*"

    def send(self, line: str | bytes) -> None:
        """Send one line (CR LF added to text) or raw bytes."""
        self.sock.sendall(line if isinstance(line, bytes) else line.encode() + b"\r\n")

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message; TimeoutError past the deadline, EOFError at close."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no IRC line in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except (ssl.SSLError, OSError) as exc:
                raise EOFError(str(exc)) from exc
            if not data:
                raise EOFError("closed by the server")
            self._buf += data
            *lines, self._buf = self._buf.split(b"\r\n")
            for line in lines:
                self._lines.append(parse(line.decode()))
        return self._lines.popleft()

    def expect(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Read up to the first message with *command* (the others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg.command == command:
                return msg

    def until(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Every message up to and including the first with *command*."""
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            out.append(msg)
            if msg.command == command:
                return out

    def sync(self, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """What the server sent before it answered a PING (the PONG excluded)."""
        token = f"sync{next(_tokens)}"
        self.send(f"PING {token}")
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg.command == "PONG" and msg.params[-1] == token:
                return out
            out.append(msg)

    def login(self, account: str, password: str, caps: tuple[str, ...] = ()) -> list[Message]:
        """CAP + SASL PLAIN + NICK/USER; returns what came up to the end of the MOTD."""
        self.send("CAP LS 302")
        self.expect("CAP")
        self.send("CAP REQ :" + " ".join(("sasl", *caps)))
        ack = self.expect("CAP")
        assert ack.params[1] == "ACK", ack
        self.send(f"NICK {account.split('@')[0]}")
        self.send(f"USER {account} 0 * :{account}")
        self.send("AUTHENTICATE PLAIN")
        assert self.expect("AUTHENTICATE").params == ("+",)
        payload = base64.b64encode(f"\0{account}\0{password}".encode()).decode()
        self.send(f"AUTHENTICATE {payload}")
        done = self.until("903")
        assert done[-1].command == "903", done
        self.send("CAP END")
        out = self.until("422")
        self.nick = out[0].params[0]
        return out

    def close(self) -> None:
        """Close the socket."""
        try:
            self.sock.close()
        except OSError:
            pass
