# The scale design's promises, at a size CI can afford: hundreds of TLS
# connections on one server (a few I/O threads, not a thread each), presence
# as deltas, fan-out that reaches everyone once, a slow reader dropped without
# holding anyone up. Speed itself is measured by bench/, not here.

from __future__ import annotations

import threading
import time

import pytest

from parley_chat.protocol import Ack, Error, Message, Ping, Pong, Presence, Send
from tests.support import RawClient

pytestmark = pytest.mark.slow


def _login_many(server, ca_file, n, prefix="u"):
    clients = []
    for i in range(n):
        c = RawClient(server.address, ca_file)
        c.login(f"{prefix}{i:03d}")
        clients.append((f"{prefix}{i:03d}", c))
    return clients


class _View:
    """Who one client believes is online in #lobby, from full lists and deltas."""

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.pages: list[str] | None = None
        self.messages: list[int] = []

    def apply(self, frame) -> None:
        if isinstance(frame, Presence) and frame.room == "#lobby":
            if frame.online is not None:
                self.pages = (self.pages or []) + list(frame.online)
                if not frame.more:
                    self.online, self.pages = set(self.pages), None
            else:
                if frame.joined:
                    self.online.add(frame.joined)
                if frame.left:
                    self.online.discard(frame.left)
        elif isinstance(frame, Message) and frame.kind == "public":
            self.messages.append(frame.id)


def _count_acks(client, frame) -> int:
    if isinstance(frame, Ack):
        client.acks = getattr(client, "acks", 0) + 1
    return getattr(client, "acks", 0)


def _read_until(client, view, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not done():
        view.apply(client.recv(max(0.01, deadline - time.monotonic())))


def test_300_connections_see_a_correct_presence_view_and_every_message_once(make_server, ca_file):
    server = make_server(max_connections_per_ip=400, max_handshakes=400, max_handshakes_per_ip=400)
    n = 300
    clients = _login_many(server, ca_file, n)
    nicks = {nick for nick, _ in clients}
    views = {nick: _View() for nick in nicks}
    # Everyone's view converges on all 300, built from one full list and deltas.
    for nick, c in clients:
        _read_until(c, views[nick], lambda v=views[nick]: v.online == nicks)
    senders = [clients[0], clients[150], clients[299]]
    ids = []
    for k, (_, c) in enumerate(senders):
        for j in range(5):
            c.send(Send(id=f"s{k}-{j}", text=f"hello {k} {j}", room="#lobby"))
    for nick, c in senders:
        for frame in c.recv_until(lambda f, c=c: _count_acks(c, f) == 5):
            views[nick].apply(frame)
            if isinstance(frame, Ack):
                ids.append(frame.id)
    for nick, c in clients:
        _read_until(c, views[nick], lambda v=views[nick]: set(ids) <= set(v.messages))
    # A ping/pong barrier after everything arrived: nothing more, nothing twice.
    for nick, c in clients:
        c.send(Ping(token="end"))
        for frame in c.recv_until(lambda f: isinstance(f, Pong) and f.token == "end"):
            views[nick].apply(frame)
        assert sorted(views[nick].messages) == sorted(ids), nick
    assert server.connection_count() == n
    # The server serves them with a few threads, not one per connection.
    assert threading.active_count() < 60


def test_a_join_storm_costs_each_member_one_small_delta(make_server, ca_file):
    server = make_server(max_connections_per_ip=200, max_handshakes=200, max_handshakes_per_ip=200)
    members: list[tuple[str, RawClient]] = []
    per_join: list[int] = []
    for i in range(60):
        nick = f"j{i:03d}"
        before = sum(c.received_bytes for _, c in members)
        newcomer = RawClient(server.address, ca_file)
        newcomer.login(nick)
        newcomer.expect(Presence, room="#lobby", more=None)  # its own full list, the last page
        # A ping barrier: whatever else the login sends (room settings) is read
        # before this client's bytes count as a member's.
        newcomer.send(Ping(token=nick))
        newcomer.expect(Pong, token=nick)
        for _, c in members:
            c.expect(Presence, joined=nick)
        per_join.append(sum(c.received_bytes for _, c in members) - before)
        members.append((nick, newcomer))
    # The k-th join costs each of the k members one delta of constant size: the
    # bytes grow linearly with the room, not with its square as full lists did.
    for k, spent in enumerate(per_join[1:], start=1):
        assert spent <= k * 80, (k, spent)
    assert per_join[-1] >= 59 * 30


def test_a_slow_reader_is_dropped_without_delaying_the_others(make_server, ca_file):
    server = make_server(send_queue_bytes=64 * 1024)
    sender = RawClient(server.address, ca_file)
    sender.login("sender")
    readers = _login_many(server, ca_file, 20, prefix="r")
    # The slow reader has a small receive buffer and never reads. The buffer is set
    # before connect, so TCP sizes its segments to the window from the start: shrunk
    # afterwards, a window smaller than one loopback segment is only reopened by the
    # server's persist probes, backing off to seconds apiece, and reading to the EOF
    # below took 16 s.
    slow = RawClient(server.address, ca_file, rcvbuf=4096)
    slow.login("slowpoke")
    text = "x" * 3000
    views = {nick: _View() for nick, _ in readers}
    # Each reader reads on its own thread (one thread per TLS socket), as a
    # real client would, while the sender posts.
    threads = [
        threading.Thread(
            target=_read_until,
            args=(c, views[nick], lambda v=views[nick]: len(v.messages) >= 400, 60),
            daemon=True,
        )
        for nick, c in readers
    ]
    for t in threads:
        t.start()
    started = time.monotonic()
    sent_frames = []
    for i in range(400):
        # Lock-step (send, then read to the ack): the sender reads its own echoes.
        sender.send(Send(id=f"m{i}", text=text, room="#lobby"))
        sent_frames += sender.recv_until(lambda f, i=i: isinstance(f, Ack) and f.ref == f"m{i}")
    for t in threads:
        t.join(90)
    elapsed = time.monotonic() - started

    def left(f):
        return isinstance(f, Presence) and f.left == "slowpoke"

    gone = sent_frames if any(map(left, sent_frames)) else sent_frames + sender.recv_until(left)
    assert not [f for f in gone if isinstance(f, Error)]
    # Everyone else got all 400 messages while the slow reader sat on its queue.
    assert all(len(v.messages) >= 400 for v in views.values())
    assert elapsed < 60
    with pytest.raises(EOFError):
        while True:
            slow.recv(10)
