"""One load-generator worker process: ONE epoll loop over
many non-blocking TLS client sockets, no thread per client.

Owns: the client state machines of both dialects (parley's hello/welcome,
IRC's NICK/USER/001/JOIN/366), TLS through ssl.SSLObject over MemoryBIO (the
socket I/O is ours, the SSL object only does crypto, as asyncio's sslproto),
the send schedule of this worker's senders, and the receive-side accounting
(deliveries, duplicates, gaps, latency histogram, bytes).

The parent (bench/loadgen.py) drives every worker through a Pipe whose fd sits
in the same epoll set, so sockets are served while commands wait. Commands:
  ("connect", None)              connect and log in every client; -> ("ready", {...})
  ("quiet", None)                -> ("quiet", {last_rx_ns, rx_bytes, cpu})
  ("load", LoadPlan)             send until plan.stop_ns, decrypt what was recorded;
                                 -> ("sent", {sent: {...}, stop_ns, caught_up_ns, cpu...})
  ("expect", (sent, deadline))   drain until every delivery owed arrived; -> ("done", {...})
  ("close", None)                close all sockets and exit; -> ("closed", {...})

Receive side, and why it does not json.loads every line: at saturation a
worker sees hundreds of thousands of deliveries per second. Every text carries
one token, "~<run>:<sender>:<seq>:<send ns>~", found with one compiled regex
over the whole block of complete lines (C speed). Control frames are rare and
found by substring first (ack, error, ping, welcome; IRC numerics), then
parsed with json.loads / split only when present. Presence lists, system
notices, JOIN storms and NAMES replies are only counted as bytes.

And why receivers decrypt late: while a load is sent (and while the others
are still logging in), a receiver only reads and keeps (arrival time, bytes);
decryption and accounting run once sending stops, in slices between polls,
with each chunk's arrival time as the delivery time. On a 2-core machine that
is the difference between the generator taking a core from the server it
measures and taking a fifth of one (docs/decisions.md, "Load generator").
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import select
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, cast

from bench.loadgen_stats import COARSE_OFFSET, COARSE_SHIFT, FINE_LIMIT_NS, FINE_SHIFT

PARLEY = "parley"
IRC = "irc"

#: A message text is exactly this many characters, as the issue's load says.
TEXT_CHARS = 64
_READ = 262_144
_RECORD = 16_384  # the most plaintext one TLS record carries
_DEFER_BUDGET = 1 << 30  # ciphertext a worker may hold back before decrypting it anyway
_CATCH_UP_SLICE_NS = 2_000_000  # decrypting after the stop: this long between polls
_MAX_TAIL = 1 << 20  # a partial line longer than 1 MiB means a broken stream

# Client states.
_CONNECTING, _HANDSHAKE, _LOGIN, _JOINING, _READY, _CLOSED = range(6)

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERR = select.EPOLLERR | select.EPOLLHUP


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker needs to know, fixed for its life."""

    worker: int
    workers: int
    dialect: str
    host: str
    port: int
    ca_file: str
    clients: int  # total over all workers; this worker has indices worker, worker+workers, ...
    senders: int  # clients 0..senders-1 send
    nonce: str  # marks this run's texts (a reused server may replay older ones)
    password: str
    connect_cap: int  # concurrent TCP connects + TLS handshakes in this worker
    login_timeout: float
    sources: int  # bind client sockets to 127.0.0.1 .. 127.0.0.<sources>
    nick_prefix: str = "lg"
    defer: bool = True  # record, decrypt later: see LoadPlan.defer and Worker._logged_in


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """One measured load: when to start and stop sending, and how fast."""

    start_ns: int
    stop_ns: int
    rate: float  # aggregate msgs/s over all senders (0 with saturate)
    saturate: bool
    window: int  # saturate: messages in flight per sender
    inflight_rule: str  # "ack" (parley's ack) or "peer" (receipt by the next client of this worker)
    #: Fraction of receivers that order-check every delivery (duplicates, gaps);
    #: the others only count and time theirs (cheaper when decrypting live).
    #: Senders and peers always check.
    check: float = 1.0
    #: Receivers that are neither senders nor peers record (arrival time,
    #: ciphertext) while the load runs and decrypt once sending stops.
    defer: bool = True


class _Client:
    """One TLS client connection and its accounting."""

    __slots__ = (
        "acks",
        "buddy_of",
        "check",
        "closed_reason",
        "defer",
        "fd",
        "idx",
        "inbio",
        "inflight",
        "login_ns",
        "nick",
        "nxt",
        "outbio",
        "raw",
        "raw_ns",
        "rx_bytes",
        "sender",
        "seq",
        "sock",
        "ssl",
        "start_ns",
        "state",
        "tail",
        "wbuf",
        "writing",
    )

    def __init__(self, idx: int, senders: int, prefix: str) -> None:
        self.idx = idx
        self.nick = f"{prefix}{idx}"
        self.sender = idx if idx < senders else -1
        self.state = _CONNECTING
        self.sock: socket.socket | None = None
        self.ssl: ssl.SSLObject | None = None
        self.inbio = ssl.MemoryBIO()
        self.outbio = ssl.MemoryBIO()
        self.fd = -1
        self.wbuf = bytearray()
        self.writing = False  # EPOLLOUT registered
        self.tail = b""
        self.rx_bytes = 0
        self.start_ns = 0
        self.login_ns = 0
        self.seq = 0
        self.inflight = 0
        self.acks = 0
        self.nxt: list[int] = []
        self.buddy_of: frozenset[int] | None = None
        self.check = True  # order-checks every delivery (duplicates, gaps)
        self.defer = False  # records ciphertext now, decrypts after sending stops
        self.raw: list[bytes] = []
        self.raw_ns: list[int] = []
        self.closed_reason = ""


class Worker:
    """The event loop of one worker process. run() returns when told to close."""

    def __init__(self, spec: WorkerSpec, ctl: Pipe) -> None:
        self.spec = spec
        self.ctl = ctl
        self.ep = select.epoll()
        self.by_fd: dict[int, _Client] = {}
        self.clients = [
            _Client(i, spec.senders, spec.nick_prefix)
            for i in range(spec.worker, spec.clients, spec.workers)
        ]
        self.local_senders = {c.sender: c for c in self.clients if c.sender >= 0}
        self.ctx = ssl.create_default_context(cafile=spec.ca_file)
        self.rbuf = bytearray(_READ)
        self.rview = memoryview(self.rbuf)
        self.pbuf = bytearray(_MAX_TAIL + _READ + 4 * _RECORD)
        self.pview = memoryview(self.pbuf)
        self.room = len(self.pbuf) - _RECORD  # decrypt no further than this
        self.irc = spec.dialect == IRC
        nonce = spec.nonce.encode()
        self.token_re = re.compile(rb"~" + re.escape(nonce) + rb":(\d+):(\d+):(\d+)~")
        self.stamp_re = re.compile(rb"~" + re.escape(nonce) + rb":\d+:\d+:(\d+)~")
        self.prefix = nonce
        if not self.irc:
            from parley_chat.protocol import Send, encode

            # The send line comes from the protocol's own encoder once; each
            # message then only fills in its id and text (ASCII, nothing to
            # escape), which keeps encoding off the hot path.
            line = encode(Send(id="@ID@", text="@TEXT@", room="#lobby"))
            head, rest = line.split(b"@ID@")
            mid, end = rest.split(b"@TEXT@")
            self.send_parts = (head, mid, end)
        # Connect phase.
        self.pending = list(self.clients)
        self.pending.reverse()  # pop() from the end connects in index order
        self.connecting = 0
        self.finished = 0  # clients logged in or failed
        self.connect_deadline = 0.0
        self.connect_reply_due = False
        self.errors: Counter[str] = Counter()
        # Load phase.
        self.plan: LoadPlan | None = None
        self.hist: Counter[int] = Counter()
        self.delivered = 0
        self.dups = 0
        self.skipped = 0
        self.own = 0
        self.last_delivery_ns = 0
        self.last_rx_ns = 0
        self.rx_bytes = 0
        self.next_slot = 0
        self.send_late_max_ns = 0
        self.sending = False
        self.expected = -1
        self.drain_deadline_ns = 0
        self.cpu_start = (0.0, 0.0)
        self.load_rx_start = 0
        self.receivers_at_load = 0
        self.closed_in_load = 0
        self.checked = 0
        self.load_no = 0
        self.poll_ns = 0
        self.reads = 0  # socket reads (recv calls that returned data) during the load
        self.polls = 0
        self.stop_ns = 0
        self.cpu_sending = 0.0
        self.cpu_sending_sys = 0.0
        self.backlog: list[_Client] | None = None  # deferred clients still to decrypt
        self.after_backlog: Callable[[], None] | None = None
        self.defer_off = False  # the deferral budget ran out in this phase
        self.deferred_bytes = 0
        self.caught_up_early = 0
        self.rx_lag_max_ns = 0
        self.running = True

    # --- control ------------------------------------------------------------------------

    def run(self) -> None:
        """Serve sockets and commands until told to close (or the parent goes away)."""
        self._raise_nofile()
        ctl_fd = self.ctl.fileno()
        self.ep.register(ctl_fd, _EPOLLIN)
        poll = self.ep.poll
        by_fd = self.by_fd
        while self.running:
            timeout = self._timeout()
            events = poll(timeout, 1024)
            self.poll_ns = time.monotonic_ns()
            self.polls += 1
            for fd, ev in events:
                if fd == ctl_fd:
                    self._commands()
                    continue
                c = by_fd.get(fd)
                if c is None:
                    continue
                if ev & _EPOLLOUT:
                    self._on_writable(c)
                if ev & (_EPOLLIN | _EPOLLERR) and c.state != _CLOSED:
                    self._on_readable(c)
            self._tick()
        self.ep.close()

    def _timeout(self) -> float:
        if self.backlog is not None:
            return 0.0  # decrypting what was recorded: poll, then go on with it
        plan = self.plan
        if plan is not None and self.sending:
            if plan.saturate:
                return 0.05
            due = plan.start_ns + int(self.next_slot * 1e9 / plan.rate)
            return max(0.0, min(0.05, (due - time.monotonic_ns()) / 1e9))
        return 0.05

    def _commands(self) -> None:
        while self.ctl.poll():
            try:
                cmd, arg = self.ctl.recv()
            except EOFError:
                self.running = False
                return
            if cmd == "connect":
                self.connect_deadline = time.monotonic() + self.spec.login_timeout
                self.connect_reply_due = True
            elif cmd == "quiet":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                quiet = {
                    "last_rx_ns": self.last_rx_ns,
                    "rx_bytes": self.rx_bytes,
                    "cpu": usage.ru_utime + usage.ru_stime,
                }
                self.ctl.send(("quiet", quiet))
            elif cmd == "load":
                self._start_load(arg)
            elif cmd == "expect":
                sent, deadline_ns = arg
                self._expect(sent, deadline_ns)
            elif cmd == "close":
                self._close_all()
                self.ctl.send(("closed", {"errors": dict(self.errors)}))
                self.running = False

    def _tick(self) -> None:
        if self.connect_reply_due:
            self._connect_more()
        if self.backlog is not None and (not self.sending or self.defer_off):
            self._catch_up_step(time.monotonic_ns() + _CATCH_UP_SLICE_NS)
            if not self.sending:
                return
        plan = self.plan
        if plan is None:
            return
        now = time.monotonic_ns()
        if self.sending:
            if now >= plan.stop_ns:
                self.sending = False
                self.stop_ns = now
                usage = resource.getrusage(resource.RUSAGE_SELF)
                self.cpu_sending = (
                    usage.ru_utime - self.cpu_start[0] + usage.ru_stime - self.cpu_start[1]
                )
                self.cpu_sending_sys = usage.ru_stime - self.cpu_start[1]
                self._start_catch_up(self._report_sent)
            elif now >= plan.start_ns:
                if plan.saturate:
                    self._refill()
                else:
                    self._send_due(plan, now)
        elif self.expected >= 0 and (
            self.delivered >= self.expected or now >= self.drain_deadline_ns
        ):
            self._report_done()

    # --- connect and log in -------------------------------------------------------------

    @staticmethod
    def _raise_nofile() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def _connect_more(self) -> None:
        spec = self.spec
        while self.pending and self.connecting < spec.connect_cap:
            c = self.pending.pop()
            self.connecting += 1
            c.start_ns = time.monotonic_ns()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if spec.sources > 1:
                sock.bind((f"127.0.0.{1 + c.idx % spec.sources}", 0))
            c.sock = sock
            c.fd = sock.fileno()
            self.by_fd[c.fd] = c
            err = sock.connect_ex((spec.host, spec.port))
            if err not in (0, errno.EINPROGRESS):
                self._fail(c, f"connect: {os.strerror(err)}")
                continue
            c.writing = True
            self.ep.register(c.fd, _EPOLLIN | _EPOLLOUT)
        if self.finished == len(self.clients) or time.monotonic() > self.connect_deadline:
            self.connect_reply_due = False
            for c in self.clients:
                if c.state not in (_READY, _CLOSED):
                    self._fail(c, "login timeout")
            self._start_catch_up(self._report_ready)

    def _report_ready(self) -> None:
        ready = [c for c in self.clients if c.state == _READY]
        first = next((c for c in ready if c.ssl is not None), None)
        tls = ""
        if first is not None and first.ssl is not None:
            cipher = first.ssl.cipher()
            tls = f"{first.ssl.version()} {cipher[0] if cipher else ''}"
        self.ctl.send(
            (
                "ready",
                {
                    "ready": len(ready),
                    "failed": len(self.clients) - len(ready),
                    "login_done_ns": [c.login_ns for c in ready],
                    "login_ms": [(c.login_ns - c.start_ns) / 1e6 for c in ready],
                    "tls": tls,
                    "errors": dict(self.errors),
                },
            )
        )

    def _handshake(self, c: _Client) -> None:
        assert c.ssl is not None
        try:
            c.ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush(c)
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(c, f"TLS: {exc}")
            return
        self.connecting -= 1
        c.state = _LOGIN
        if self.irc:
            self._write(c, f"NICK {c.nick}\r\nUSER {c.nick} 0 * :parley bench\r\n".encode())
        else:
            from parley_chat.protocol import Hello, encode

            hello = Hello(version=1, nick=c.nick, password=self.spec.password, register=True)
            self._write(c, encode(hello))

    def _logged_in(self, c: _Client) -> None:
        c.state = _READY
        self.finished += 1
        c.login_ns = time.monotonic_ns()
        # Until every client of this worker is in, what a logged-in client gets
        # (everyone else's join notices and presence: O(clients^2) small reads)
        # is only recorded, so the generator's CPU goes to the handshakes and
        # the login time measures the server, not our decrypting.
        c.defer = self.spec.defer and not self.defer_off

    # --- socket I/O ---------------------------------------------------------------------

    def _on_writable(self, c: _Client) -> None:
        if c.state == _CONNECTING:
            assert c.sock is not None
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(c, f"connect: {os.strerror(err)}")
                return
            c.state = _HANDSHAKE
            c.ssl = self.ctx.wrap_bio(c.inbio, c.outbio, server_hostname=self.spec.host)
            self._set_writing(c, False)
            self._handshake(c)
            return
        self._send_buffered(c)

    def _on_readable(self, c: _Client) -> None:
        # No allocation per read: ciphertext goes through one worker-wide
        # buffer into the client's MemoryBIO, plaintext is decrypted record by
        # record into another (behind the client's partial last line), and the
        # block is scanned in place. A fresh 256 KiB bytes object per read
        # cost more than the regex. At 1000 clients nearly every read is one
        # small record, so this and _on_plain are written for few calls.
        sock = c.sock
        assert sock is not None
        try:
            n = sock.recv_into(self.rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(c, f"recv: {exc.strerror}")
            return
        if not n:
            self._fail(c, "closed by the server")
            return
        self.reads += 1
        if c.defer:
            # Decryption, the regex and the bookkeeping cost ~10 us per read on
            # this machine, a core at 1000 clients x 100 msgs/s; keeping the
            # bytes and their arrival time costs a fifth of that, and the
            # latency comes out the same (it is taken at arrival either way).
            now = time.monotonic_ns()
            c.raw.append(bytes(self.rview[:n]))
            c.raw_ns.append(now)
            self.last_rx_ns = now
            self.deferred_bytes += n
            if self.deferred_bytes > _DEFER_BUDGET and not self.defer_off:
                # Too much to hold (a presence storm, a very fast server): nobody
                # else starts recording in this phase, and what was recorded is
                # decrypted from now on, a slice per poll.
                self.caught_up_early += 1
                self.defer_off = True
                self._start_catch_up(None)
            return
        c.inbio.write(self.rview[:n])
        if c.state == _HANDSHAKE:
            self._handshake(c)
            if c.state == _HANDSHAKE or c.state == _CLOSED:
                return
        self._decrypt(c, 0)

    def _decrypt(self, c: _Client, arrived_ns: int) -> None:
        # Everything the client's BIO holds, record by record, into pbuf and on
        # to _on_plain. *arrived_ns* is when the bytes came (0: just now).
        inbio = c.inbio
        assert c.ssl is not None
        read = c.ssl.read
        pbuf, pview, room = self.pbuf, self.pview, self.room
        while True:
            tail = c.tail
            off = start = len(tail)
            if off:
                pbuf[:off] = tail
            try:
                # One read returns one whole record (at most _RECORD bytes), so
                # once the BIO is empty there is nothing left to decrypt: asking
                # again would only raise SSLWantReadError, and an exception per
                # read was a tenth of the worker's time at 1000 clients.
                while inbio.pending and off <= room:
                    # With a buffer, read() returns a count (typeshed says bytes).
                    got = cast(int, read(_RECORD, pview[off : off + _RECORD]))
                    if not got:
                        break
                    off += got
            except ssl.SSLWantReadError:  # a partial record waits for the next read
                pass
            except ssl.SSLZeroReturnError:
                self._fail(c, "TLS closed by the server")
                return
            except ssl.SSLError as exc:
                self._fail(c, f"TLS: {exc}")
                return
            if off > start:
                self._on_plain(c, off, off - start, arrived_ns)
            # Stop unless the buffer filled up with ciphertext still waiting.
            if off <= room or not inbio.pending or c.state == _CLOSED:
                break
        if c.outbio.pending:  # key updates, alerts: whatever TLS itself wants to send
            self._flush(c)

    def _catch_up_step(self, until_ns: int) -> None:
        # After the logins and after the stop: decrypt the recorded bytes a
        # slice at a time between polls, so live clients are still read promptly (their deliveries would
        # otherwise look seconds late). A client keeps recording until its own
        # backlog is done: its TLS stream must be decrypted in order.
        backlog = self.backlog
        assert backlog is not None
        while backlog:
            c = backlog[-1]
            if c.raw and c.state == _READY:
                chunks, times = c.raw, c.raw_ns
                take = min(len(chunks), 64)
                for i in range(take):
                    c.inbio.write(chunks[i])
                    self._decrypt(c, times[i])
                    if c.state != _READY:
                        break
                del chunks[:take], times[:take]
                if time.monotonic_ns() >= until_ns:
                    return
                continue
            c.raw, c.raw_ns = [], []
            c.defer = False
            backlog.pop()
        self.backlog = None
        self.deferred_bytes = 0
        done, self.after_backlog = self.after_backlog, None
        if done is not None:
            done()

    def _start_catch_up(self, then: Callable[[], None] | None) -> None:
        # (A catch-up already under way keeps its list: once the budget ran out
        # nobody started recording, so every recording client is on it.)
        if self.backlog is None:
            self.backlog = [c for c in self.clients if c.defer]
            self.backlog.reverse()
        self.after_backlog = then

    def _report_sent(self) -> None:
        sent = {c.sender: c.seq for c in self.local_senders.values()}
        reply = {
            "sent": sent,
            "stop_ns": self.stop_ns,
            "caught_up_ns": time.monotonic_ns(),
            "cpu_sending": self.cpu_sending,
            "cpu_sending_sys": self.cpu_sending_sys,
            "reads": self.reads,
            "polls": self.polls,
        }
        self.ctl.send(("sent", reply))

    def _catch_up_client(self, c: _Client) -> None:
        chunks, times = c.raw, c.raw_ns
        c.raw, c.raw_ns = [], []
        for chunk, arrived in zip(chunks, times, strict=True):
            if c.state != _READY:
                break
            c.inbio.write(chunk)
            self._decrypt(c, arrived)

    def _write(self, c: _Client, data: bytes) -> None:
        obj = c.ssl
        if obj is None or c.state == _CLOSED:
            return
        try:
            obj.write(data)
        except ssl.SSLError as exc:
            self._fail(c, f"TLS write: {exc}")
            return
        self._flush(c)

    def _write_lines(self, c: _Client, lines: list[bytes]) -> None:
        # One TLS record per line, as interactive clients write, then one socket
        # send for all of them. Why not one record for the batch: a server that
        # reads a record in pieces and does not look at what the TLS library
        # still holds (ngIRCd reads 2048 bytes per call and never asks GnuTLS
        # for pending data) would sit on the rest of a large record until the
        # next packet arrives: messages stranded at the end of a run.
        obj = c.ssl
        if obj is None or c.state == _CLOSED:
            return
        try:
            for line in lines:
                obj.write(line)
        except ssl.SSLError as exc:
            self._fail(c, f"TLS write: {exc}")
            return
        self._flush(c)

    def _flush(self, c: _Client) -> None:
        out = c.outbio.read()
        if out:
            c.wbuf += out
        self._send_buffered(c)

    def _send_buffered(self, c: _Client) -> None:
        if not c.wbuf or c.sock is None:
            if c.writing:
                self._set_writing(c, False)
            return
        try:
            n = c.sock.send(c.wbuf)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(c, f"send: {exc.strerror}")
            return
        del c.wbuf[:n]
        want = bool(c.wbuf)
        if want != c.writing:
            self._set_writing(c, want)

    def _set_writing(self, c: _Client, on: bool) -> None:
        c.writing = on
        self.ep.modify(c.fd, _EPOLLIN | _EPOLLOUT if on else _EPOLLIN)

    def _fail(self, c: _Client, reason: str) -> None:
        if c.state == _CLOSED:
            return
        if c.raw:  # what arrived before the end still counts
            self._catch_up_client(c)
            if c.state == _CLOSED:
                return
        if c.state in (_CONNECTING, _HANDSHAKE):
            self.connecting -= 1
        if c.state == _READY and self.plan is not None:
            self.closed_in_load += 1
        if c.state != _READY:
            self.finished += 1
        c.state = _CLOSED
        c.closed_reason = reason
        self.errors[reason[:120]] += 1
        if c.sock is not None:
            self.by_fd.pop(c.fd, None)
            try:
                self.ep.unregister(c.fd)
            except (OSError, ValueError):
                pass
            c.sock.close()
            c.sock = None

    def _close_all(self) -> None:
        for c in self.clients:
            if c.state == _CLOSED:
                continue
            if c.state == _READY:
                if self.irc:
                    self._write(c, b"QUIT :bench done\r\n")
                else:
                    from parley_chat.protocol import Bye, encode

                    self._write(c, encode(Bye(reason="bench done")))
            c.state = _CLOSED
            if c.sock is not None:
                self.by_fd.pop(c.fd, None)
                c.sock.close()

    # --- receive ------------------------------------------------------------------------

    def _on_plain(self, c: _Client, end: int, fresh: int, arrived_ns: int = 0) -> None:
        # self.pbuf[:end] holds the client's earlier partial line and *fresh*
        # new bytes. Only complete lines are looked at; the rest waits.
        #
        # The deliveries are the hot path, inlined here: one regex pass over the
        # block, a tight loop for the per-(receiver, sender) order check
        # (duplicates, gaps), then the latency keys, loadgen_stats.latency_key()
        # inlined, counted in a Counter (in C for big blocks).
        pbuf = self.pbuf
        if arrived_ns:
            now = arrived_ns
        else:
            now = time.monotonic_ns()
            self.last_rx_ns = now
            # How long this read waited behind the others of the same poll: the
            # part of a measured latency that is the generator's own queueing.
            lag = now - self.poll_ns
            if lag > self.rx_lag_max_ns:
                self.rx_lag_max_ns = lag
        c.rx_bytes += fresh
        self.rx_bytes += fresh
        cut = pbuf.rfind(b"\n", 0, end) + 1
        if cut < end:
            if end - cut > _MAX_TAIL:
                self._fail(c, "line longer than 1 MiB")
                return
            c.tail = bytes(pbuf[cut:end])
            if cut == 0:
                return
        elif c.tail:
            c.tail = b""
        if c.state != _READY:
            self._login_lines(c, bytes(pbuf[:cut]))
            if c.state != _READY:
                return
        tokens = 0
        nxt = c.nxt
        if nxt:  # measuring (before the load, tokens can only be an older run's replay)
            if c.check:
                found = self.token_re.findall(pbuf, 0, cut)
                tokens = len(found)
                stamps: list[bytes] = []
                if found:
                    me = c.sender
                    bud = c.buddy_of
                    keep = stamps.append
                    for s_b, q_b, t_b in found:
                        s = int(s_b)
                        if s == me:
                            self.own += 1
                            continue
                        q = int(q_b)
                        e = nxt[s]
                        if q == e:
                            nxt[s] = q + 1
                        elif q > e:
                            self.skipped += q - e
                            nxt[s] = q + 1
                        else:
                            self.dups += 1
                            continue
                        keep(t_b)
                        if bud is not None and s in bud:
                            self.local_senders[s].inflight -= 1
            else:
                # Sampled out of the order check (LoadPlan.check): count and time only.
                stamps = self.stamp_re.findall(pbuf, 0, cut)
                tokens = len(stamps)
            if stamps:
                self.delivered += len(stamps)
                if now > self.last_delivery_ns:  # recorded chunks come in any client order
                    self.last_delivery_ns = now
                hist = self.hist
                if len(stamps) < 4:  # most reads at a fixed rate: a loop beats two lists
                    for t in stamps:
                        d = now - int(t)
                        hist[
                            (d >> FINE_SHIFT)
                            if d < FINE_LIMIT_NS
                            else (d >> COARSE_SHIFT) + COARSE_OFFSET
                        ] += 1
                else:
                    hist.update(
                        [
                            (d >> FINE_SHIFT)
                            if d < FINE_LIMIT_NS
                            else (d >> COARSE_SHIFT) + COARSE_OFFSET
                            for d in [now - int(t) for t in stamps]
                        ]
                    )
        # Every line but the deliveries is control (acks, presence, notices,
        # pings, errors, IRC numerics). Counting newlines is cheap; the
        # substring searches below run only when such lines are there.
        others = pbuf.count(b"\n", 0, cut) - tokens
        if others <= 0:
            return
        if not self.irc and c.sender >= 0:
            acks = pbuf.count(b'{"type":"ack"', 0, cut)
            if acks:
                c.acks += acks
                others -= acks
                if self.plan is not None and self.plan.inflight_rule == "ack":
                    c.inflight -= acks
            if others <= 0:
                return
        data = bytes(pbuf[:cut])
        if self.irc:
            if b"PING" in data or b" 4" in data or b"ERROR" in data:
                self._irc_control(c, data)
        elif b'"type":"error"' in data or b'"type":"ping"' in data:
            self._parley_control(c, data)

    def _login_lines(self, c: _Client, data: bytes) -> None:
        if self.irc:
            for line in data.split(b"\r\n"):
                parts = line.split(b" ", 3)
                if len(parts) < 2:
                    continue
                code = parts[1]
                if code == b"001" and c.state == _LOGIN:
                    c.state = _JOINING
                    self._write(c, b"JOIN #lobby\r\n")
                elif code == b"366" and c.state == _JOINING:
                    self._logged_in(c)
                elif parts[0] == b"PING":
                    self._write(c, b"PONG " + b" ".join(parts[1:]) + b"\r\n")
                elif parts[0] == b"ERROR" or (code[:1] in (b"4", b"5") and len(code) == 3):
                    self._fail(c, "irc: " + line.decode(errors="replace")[:100])
                    return
            return
        if c.state == _LOGIN and b'"type":"welcome"' in data:
            self._logged_in(c)
        elif b'"type":"error"' in data:
            for line in data.split(b"\n"):
                if line.startswith(b'{"type":"error"'):
                    code = json.loads(line).get("code", "?")
                    self._fail(c, f"parley error at login: {code}")
                    return

    def _parley_control(self, c: _Client, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line.startswith(b'{"type":"ping"'):
                from parley_chat.protocol import Pong, encode

                token = json.loads(line).get("token")
                self._write(c, encode(Pong(token=token)))
            elif line.startswith(b'{"type":"error"'):
                frame: dict[str, Any] = json.loads(line)
                self.errors[f"parley error: {frame.get('code')}"] += 1
                if frame.get("ref") is not None and self.plan and self.plan.inflight_rule == "ack":
                    c.inflight -= 1  # a refused send is no longer in flight either

    def _irc_control(self, c: _Client, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if line.startswith(b"PING"):
                self._write(c, b"PONG" + line[4:] + b"\r\n")
            elif line.startswith(b"ERROR"):
                self.errors["irc: " + line.decode(errors="replace")[:100]] += 1
            else:
                parts = line.split(b" ", 2)
                if len(parts) > 2 and parts[1][:1] in (b"4", b"5") and len(parts[1]) == 3:
                    self.errors["irc: " + line.decode(errors="replace")[:100]] += 1

    # --- send ---------------------------------------------------------------------------

    def _start_load(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.load_no += 1
        self.sending = True
        self.next_slot = 0
        senders = self.spec.senders
        ready = [c for c in self.clients if c.state == _READY]
        self.receivers_at_load = len(ready)
        for c in ready:
            c.nxt = [0] * max(1, senders)
            c.seq = 0
            c.inflight = 0
        if plan.saturate and plan.inflight_rule == "peer":
            # Each local sender's message is in flight until the next client of
            # this worker (its "peer") has received it: the same rule for both
            # dialects, since ngIRCd never echoes to the sender.
            owners: dict[int, set[int]] = {}
            for pos, c in enumerate(ready):
                if c.sender >= 0 and len(ready) > 1:
                    peer = ready[(pos + 1) % len(ready)]
                    owners.setdefault(id(peer), set()).add(c.sender)
            for c in ready:
                got = owners.get(id(c))
                c.buddy_of = frozenset(got) if got else None
        step = max(1, round(1 / plan.check)) if plan.check > 0 else 0
        self.checked = 0
        for pos, c in enumerate(ready):
            c.check = c.sender >= 0 or c.buddy_of is not None or (step > 0 and pos % step == 0)
            self.checked += c.check
            # At saturation senders and peers steer the load (acks, in flight), so
            # they stay live; at a fixed rate nothing needs reading on time.
            c.defer = plan.defer and (not plan.saturate or (c.sender < 0 and c.buddy_of is None))
        self.deferred_bytes = 0
        self.caught_up_early = 0
        self.defer_off = False
        self.reads = self.polls = 0
        self.hist = Counter()
        self.rx_lag_max_ns = self.send_late_max_ns = 0
        self.delivered = self.dups = self.skipped = self.own = 0
        self.last_delivery_ns = 0
        self.closed_in_load = 0
        self.load_rx_start = self.rx_bytes
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_start = (usage.ru_utime, usage.ru_stime)

    def _text(self, c: _Client, now: int) -> bytes:
        token = b"~%s:%d:%d:%d~" % (self.prefix, c.sender, c.seq, now)
        return token + b"." * (TEXT_CHARS - len(token))

    def _line(self, c: _Client, now: int) -> bytes:
        text = self._text(c, now)
        c.seq += 1
        c.inflight += 1
        if self.irc:
            return b"PRIVMSG #lobby :" + text + b"\r\n"
        head, mid, end = self.send_parts
        return head + b"%s-%d-%d" % (self.prefix, self.load_no, c.seq) + mid + text + end

    def _send_due(self, plan: LoadPlan, now: int) -> None:
        # Global slot k belongs to sender k % senders at start + k / rate; this
        # worker sends the slots of its own senders, so the aggregate is exact.
        senders = self.spec.senders
        local = self.local_senders
        batch: dict[int, list[bytes]] = {}
        while True:
            due = plan.start_ns + int(self.next_slot * 1e9 / plan.rate)
            if due > now:
                break
            c = local.get(self.next_slot % senders)
            self.next_slot += 1
            if c is None or c.state != _READY:
                continue
            late = now - due
            if late > self.send_late_max_ns:
                self.send_late_max_ns = late
            batch.setdefault(c.sender, []).append(self._line(c, time.monotonic_ns()))
        for s, lines in batch.items():
            c = local[s]
            self._write_lines(c, lines)

    def _refill(self) -> None:
        window = self.plan.window if self.plan else 1
        for c in self.local_senders.values():
            if c.state != _READY or c.inflight >= window:
                continue
            now = time.monotonic_ns()
            lines = [self._line(c, now) for _ in range(window - c.inflight)]
            self._write_lines(c, lines)

    # --- drain and report ---------------------------------------------------------------

    def _expect(self, sent: dict[int, int], deadline_ns: int) -> None:
        total = sum(sent.values())
        expected = 0
        for c in self.clients:
            if c.nxt:  # was ready when the load started
                expected += total - (sent.get(c.sender, 0) if c.sender >= 0 else 0)
        self.expected = expected
        self.drain_deadline_ns = deadline_ns

    def _report_done(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime - self.cpu_start[0] + usage.ru_stime - self.cpu_start[1]
        self.ctl.send(
            (
                "done",
                {
                    "expected": self.expected,
                    "delivered": self.delivered,
                    "dups": self.dups,
                    "skipped": self.skipped,
                    "own": self.own,
                    "hist": dict(self.hist),
                    "last_delivery_ns": self.last_delivery_ns,
                    "rx_bytes": self.rx_bytes - self.load_rx_start,
                    "receivers": self.receivers_at_load,
                    "checked": self.checked,
                    "closed": self.closed_in_load,
                    "cpu": cpu,
                    "send_late_max_ms": self.send_late_max_ns / 1e6,
                    "rx_lag_max_ms": self.rx_lag_max_ns / 1e6,
                    "caught_up_early": self.caught_up_early,
                    "acks": sum(c.acks for c in self.local_senders.values()),
                    "errors": dict(self.errors),
                },
            )
        )
        self.expected = -1
        self.plan = None
        for c in self.clients:
            c.nxt = []
            c.buddy_of = None
            c.inflight = 0


def worker_main(spec: WorkerSpec, ctl: Pipe) -> None:
    """Process entry: run one worker until the parent says close."""
    profile_dir = os.environ.get("LOADGEN_PROFILE")  # a directory: cProfile each worker there
    try:
        if profile_dir:
            import cProfile

            cProfile.runctx(
                "Worker(spec, ctl).run()",
                globals(),
                {"spec": spec, "ctl": ctl},
                filename=os.path.join(profile_dir, f"worker{spec.worker}.prof"),
            )
        else:
            Worker(spec, ctl).run()
    except KeyboardInterrupt:
        pass
