"""Node: one server among several sharing a PostgreSQL database.

It sits between the bus (server/bus.py, server/bus_postgres.py), the store
and the hub, and owns one thread, `bus-deliver`, that does all of the
following in order:

* Messages. Every committed message, this node's own (handed over by the hub:
  Hub.sequencer) and the other nodes' (told of by the bus), is delivered
  strictly by id (server/bus_order.py): a later id waits until the earlier
  ones are settled, a gap is read from the database after HOLD, and a row is
  read only when a connection here needs it (the event's routing says).
  Acks, leaves and moderation notices that follow a message wait with it.
* Catching up. After the bus lost and remade its listening connection, and
  every TAIL_CHECK seconds whatever happened, the node reads the largest id
  and delivers everything after the last one it delivered: a notification
  lost with a crashed node, or missed while deaf, is found that way.
* Presence. Each node tells the others when a user's first connection on it
  begins and when the last one ends (`up` / `down`); a user is online while
  connected on any node, and listed once. A starting node says `hello`: the
  others announce their own users to it, and forget what they knew of its
  earlier run RESTART_GRACE later (unless it lists the same users again). Each node says `alive` every quarter of node_timeout; one
  silent for node_timeout is taken for dead and its users go offline.
* Membership, moderation, read markers. A user's rooms changed on another
  node (join, leave, kick, ban): read them, and tell this node's connections.
  A mute, a room's settings, an edit or a deletion, a notice, a disconnection,
  an announcement, a moved read marker: read what changed, and tell this
  node's connections.

Start order (DESIGN.md 4b): listen first, then read the largest id, then
serve: whatever commits after the read is either notified or found by the
tail check, and nothing before it is delivered live.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from parley_chat.protocol import Error, ErrorCode, Presence, Read, encode, format_ts
from parley_chat.protocol.moderation import Deleted, Edited, Notice

from .bus import Bus, Event
from .bus_order import Order
from .hub import Hub, presence_pages
from .store import Store, bus_reads
from .store import moderation as mstore
from .store.models import REASON_CHARS

log = logging.getLogger("parley.node")

#: Seconds a gap in the ids waits for its notification before it is read.
HOLD: Final = 0.05
#: Seconds of silence after which another node is taken for dead (the default
#: of the node_timeout setting); a node says `alive` every quarter of it.
NODE_TIMEOUT: Final = 20.0
#: Seconds between reads of the largest id (finds notifications that never came).
TAIL_CHECK: Final = 2.0
#: Ids read from the database per query when catching up.
READ_PAGE: Final = 1000
#: Seconds to wait after a failed read before trying again.
READ_RETRY: Final = 1.0
#: Seconds a restarted node's earlier users stay listed after its hello: long
#: enough for it to announce those it lists again (cut off by the restart,
#: within presence_grace), so their rooms read neither "left" nor "joined".
RESTART_GRACE: Final = 5.0


@dataclass(frozen=True, slots=True)
class _Local:
    """A message committed by this node, in hand."""

    msg: Any  # StoredMessage
    sender_id: int | None
    ref: str | None
    then: Callable[[], None] | None


_STOP = object()
_RESYNC = object()


def identity(name: str) -> str:
    """A node's identity on the bus for this run: its name and a random tag, so a
    restarted node is told apart from its earlier run."""
    return f"{name}#{secrets.token_hex(4)}"


class Node:
    """This server's part in a cluster of nodes: ordered delivery, presence, moderation."""

    def __init__(
        self,
        identity: str,
        bus: Bus,
        store: Store,
        hub: Hub,
        mutes: Any,
        *,
        timeout: float = NODE_TIMEOUT,
        restart_grace: float = RESTART_GRACE,
    ) -> None:
        """*identity* is this run of the node: its name, "#", a random tag (see
        identity()). *mutes* is the handlers' MuteCache (server/moderation.py).
        *timeout*: seconds of silence after which another node is taken for dead;
        this node speaks every quarter of it. *restart_grace*: see RESTART_GRACE."""
        self.timeout = timeout
        self.heartbeat = timeout / 4
        self.restart_grace = restart_grace
        self.identity = identity
        self.name = identity.rsplit("#", 1)[0]
        self.bus = bus
        self._store = store
        self._hub = hub
        self._mutes = mutes
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._order: Order[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="bus-deliver", daemon=True)
        self._heard: dict[str, float] = {}  # other node -> when it last said anything
        # (nick, rooms) of the users a payload's `up` events name, read at once.
        self._users_read: dict[int, tuple[str, list[str]]] = {}
        # Earlier runs of restarted nodes -> when to forget their users.
        self._forget_at: dict[str, float] = {}
        self._started = False
        #: Counters for tests and logs.
        self.read_rows = 0
        self.catch_ups = 0
        self._idle = threading.Condition()
        self._busy = 0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Listen, read the largest id, take over the hub's ordering, announce this node."""
        if not self.bus.shared:
            return  # alone: the hub delivers directly, as before nodes existed
        self.bus.start(self._received, self._resync)
        with self._store.read() as s:
            last = bus_reads.max_message_id(s)
        self._order = Order(last, HOLD)
        self._hub.sequencer = self
        self._hub.observer = self
        self._started = True
        self._thread.start()
        self.bus.publish([Event("hello")])
        log.info("node %s listening; delivering after message %d", self.name, last)

    def stop(self) -> None:
        """Stop delivering, then the bus (it sends what was published first)."""
        if not self._started:
            return
        self._hub.observer = None
        self._inbox.put(_STOP)
        self._thread.join(10)
        self.bus.stop()

    @property
    def last_delivered(self) -> int:
        """The largest id delivered (or passed) here."""
        return self._order.last if self._order is not None else 0

    def settle(self, timeout: float) -> bool:
        """Block until everything handed to the node before this call was handled
        (True), or *timeout*: a barrier for tests and for shutdown."""
        done = threading.Event()
        self._inbox.put(done)
        return done.wait(timeout)

    def wait_idle(self, upto: int, timeout: float) -> bool:
        """Block until every id up to *upto* was delivered here (True), or *timeout*."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.last_delivered < upto:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # --- what the hub and handlers call (any thread) -------------------------------------

    def offer(
        self,
        msg: Any,
        sender_id: int | None,
        ref: str | None,
        then: Callable[[], None] | None,
    ) -> None:
        """Hub.sequencer: a message this node committed; delivered in its turn."""
        self._inbox.put(_Local(msg, sender_id, ref, then))
        if msg.room is not None:
            event = Event("message", msg.id, room=msg.room)
        else:
            # The recipient's id when some node has them online; 0 (unknown) makes
            # every node read the row and route it by name.
            recipient = self._hub.user_id_of(msg.recipient) if msg.recipient else None
            event = Event("message", msg.id, users=(sender_id or 0, recipient or 0))
        self.bus.publish([event])

    def presence_changed(self, user_id: int, online: bool) -> None:
        """Hub.observer: the user's presence on this node began or ended."""
        self.bus.publish([Event("up" if online else "down", users=(user_id,))])

    def membership_changed(self, user_id: int) -> None:
        """Hub.observer: the user's rooms changed here."""
        self.bus.publish([Event("member", users=(user_id,))])

    def moderated(self, f: Any, out: Any) -> None:
        """Commands.cluster: a moderation action was carried out here (server/moderation.py)."""
        if not self._started:
            return
        events: list[Event] = []
        if out.mute is not None:
            room, user_id, _until, _on = out.mute
            events.append(Event("mute", room=room, users=(user_id,)))
        for st in out.rooms:
            events.append(Event("roominfo", room=st.name))
        if f.action in ("edit", "delete") and (out.to_room or out.to_users) and f.id is not None:
            room = out.to_room[0][0] if out.to_room else None
            users = tuple(sorted({uid for uid, _ in out.to_users}))
            events.append(Event(f.action, f.id, room=room, users=users))
        if (out.notices or out.disconnect or out.broadcast) and out.audit_id is not None:
            events.append(Event("moderation", out.audit_id))
        if events:
            self.bus.publish(events)

    def read_moved(self, user_id: int, frame: Any, peer_id: int | None) -> None:
        """Commands.cluster: the user's read marker moved here."""
        if not self._started:
            return
        users = (user_id,) if peer_id is None else (user_id, peer_id)
        self.bus.publish([Event("read", frame.id, room=frame.room, users=users)])

    # --- what the bus calls (its listener thread) --------------------------------------

    def _received(self, node: str, events: list[Event]) -> None:
        self._inbox.put((node, events))

    def _resync(self) -> None:
        self._inbox.put(_RESYNC)

    # --- the delivery thread ---------------------------------------------------------------

    def _run(self) -> None:
        assert self._order is not None
        now = time.monotonic()
        next_beat = now + self.heartbeat
        next_tail = now + TAIL_CHECK
        retry_at = 0.0
        while True:
            now = time.monotonic()
            wake = min(next_beat, next_tail, *self._forget_at.values())
            due = self._order.deadline()
            if due is not None:
                wake = min(wake, max(due, retry_at))
            try:
                item = self._inbox.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                item = None
            items = [] if item is None else [item]
            while True:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            stop = False
            resync = False
            before = self._order.last
            settled: list[threading.Event] = []
            for it in items:
                if it is _STOP:
                    stop = True
                elif it is _RESYNC:
                    resync = True
                elif isinstance(it, threading.Event):
                    settled.append(it)
                else:
                    self._guard(self._take_in, it)
            now = time.monotonic()
            if now >= next_tail or resync:
                next_tail = now + TAIL_CHECK
                if not self._guard(self._catch_up, resync):
                    retry_at = now + READ_RETRY
            if now >= retry_at and not self._guard(self._advance):
                retry_at = now + READ_RETRY
            if now >= next_beat:
                next_beat = now + self.heartbeat
                self._beat(now)
            for old, at in list(self._forget_at.items()):
                if now >= at:
                    del self._forget_at[old]
                    self._tell_left(self._hub.forget_node(old))
            if self._order.last != before:  # delivered or passed: wait_idle() may return
                with self._idle:
                    self._idle.notify_all()
            for marker in settled:
                marker.set()
            if stop:
                break

    def _guard(self, step: Callable[..., None], *args: Any) -> bool:
        try:
            step(*args)
        except Exception:  # a database hiccup or a bug must not stop delivery
            log.exception("node %s: %s failed", self.name, getattr(step, "__name__", step))
            return False
        return True

    def _take_in(self, item: object) -> None:
        assert self._order is not None
        if isinstance(item, _Local):
            # A read of the database may have delivered this very message
            # already (another node's notification made this node read past
            # it before its own writer handed it over): then only what follows
            # it (the ack, a leave) is still to do.
            if not self._order.offer(item.msg.id, item, replace=True) and item.then is not None:
                with self._hub.batch():
                    item.then()
            return
        node, events = cast(tuple[str, list[Event]], item)
        if node == self.identity:
            return  # our own, already handled here
        hello = any(e.kind == "hello" for e in events)
        name = node.rsplit("#", 1)[0]
        if name == self.name:
            log.error(
                "node %s: another node runs under this name (%s); give each its own --node",
                self.name,
                node,
            )
        if hello:
            # The same node started again: what it had before is gone, once it
            # had a moment to announce the users it lists again.
            for old in [n for n in self._heard if n != node and n.rsplit("#", 1)[0] == name]:
                del self._heard[old]
                self._forget_at[old] = time.monotonic() + self.restart_grace
        first = node not in self._heard
        self._heard[node] = time.monotonic()
        if first and not any(e.kind in ("hello", "up") for e in events):
            # A node we took for dead (or never heard start): its users may be
            # unknown here. (One answering our hello announces them anyway.)
            self.bus.publish([Event("sync")])
        ups = [e.users[0] for e in events if e.kind == "up" and e.users]
        if len(ups) > 1:  # a node announcing its users: one read for all of them
            with self._store.read() as s:
                self._users_read = bus_reads.online_users(s, ups)
        try:
            for event in events:
                self._event(node, event)
        finally:
            self._users_read = {}

    def _event(self, node: str, e: Event) -> None:
        assert self._order is not None
        hub = self._hub
        if e.kind == "message" and e.id is not None:
            if e.room is not None:
                wanted = hub.reaches(e.room)
            else:
                wanted = 0 in e.users or hub.reaches(None, e.users)
            if wanted:
                self._order.need(e.id)
            else:
                self._order.skip(e.id)
        elif e.kind == "up" and e.users:
            self._remote_up(node, e.users[0])
        elif e.kind == "down" and e.users:
            gone = hub.remote_down(e.users[0], node)
            if gone is not None:
                self._tell_left([gone])
        elif e.kind == "hello":
            self._tell_left(hub.forget_node(node))
            self._announce()
        elif e.kind == "sync":
            self._announce()
        elif e.kind == "member" and e.users:
            self._member(e.users[0])
        elif e.kind == "mute" and e.room is not None and e.users:
            self._mute(e.room, e.users[0])
        elif e.kind == "roominfo" and e.room is not None:
            self._roominfo(e.room)
        elif e.kind in ("edit", "delete") and e.id is not None:
            if hub.reaches(e.room, e.users):
                self._changed(e.kind, e.id)
        elif e.kind == "moderation" and e.id is not None:
            self._moderation(e.id)
        elif e.kind == "read" and e.id is not None and e.users:
            self._read_marker(e.id, e.room, e.users)

    # --- messages -------------------------------------------------------------------------

    def _advance(self) -> None:
        """Deliver what is ready; read what is needed; until nothing more can be done now."""
        assert self._order is not None
        while True:
            ready = self._order.take(time.monotonic())
            if ready:
                self._deliver(ready)
            wanted = self._order.to_read(time.monotonic())
            if wanted is None:
                return
            upto = min(wanted.upto, wanted.after + READ_PAGE)
            self._read(wanted.after, upto)

    def _read(self, after: int, upto: int) -> None:
        assert self._order is not None
        with self._store.read() as s:
            rows = bus_reads.messages_between(s, after, upto)
        self.read_rows += len(rows)
        self._order.filled(upto, {m.message.id: m for m in rows if not m.deleted})

    def _catch_up(self, forced: bool) -> None:
        """Read the largest id; deliver everything up to it not delivered yet."""
        assert self._order is not None
        with self._store.read() as s:
            top = bus_reads.max_message_id(s)
        if top <= self._order.last:
            return
        if not forced and self._order.waiting:
            return  # ids are on their way (notified or held): the order reads gaps itself
        self.catch_ups += 1
        # After a lost listener that is news; the tail check also meets ids
        # whose notification is a moment away, which is not.
        log.log(
            logging.INFO if forced else logging.DEBUG,
            "node %s: catching up from %d to %d",
            self.name,
            self._order.last,
            top,
        )
        while self._order.last < top:
            upto = min(top, self._order.last + READ_PAGE)
            self._read(self._order.last, upto)
            ready = self._order.take(time.monotonic())
            if ready:
                self._deliver(ready)
        if forced:
            self.bus.publish([Event("sync")])  # presence may have changed while deaf

    def _deliver(self, ready: list[Any]) -> None:
        hub = self._hub
        with hub.batch():
            for item in ready:
                if isinstance(item, _Local):
                    hub.deliver_now(item.msg, item.sender_id, item.ref)
                    if item.then is not None:
                        item.then()
                else:
                    msg = item.message
                    hub.deliver_now(msg, item.sender_id, msg.client_msg_id)

    # --- presence -------------------------------------------------------------------------

    def _remote_up(self, node: str, user_id: int) -> None:
        found = self._users_read.get(user_id)
        if found is None:
            with self._store.read() as s:
                found = bus_reads.online_user(s, user_id)
        if found is None:
            return
        nick, rooms = found
        if self._hub.remote_up(user_id, nick, rooms, node):
            with self._hub.batch():
                for room in rooms:
                    self._hub.publish_presence(room, joined=nick)

    def _tell_left(self, gone: list[tuple[str, list[str]]]) -> None:
        if not gone:
            return
        with self._hub.batch():
            for nick, rooms in gone:
                for room in rooms:
                    self._hub.publish_presence(room, left=nick)

    def _announce(self) -> None:
        users = self._hub.local_users()
        if users:
            self.bus.publish([Event("up", users=(uid,)) for uid in users])

    def _beat(self, now: float) -> None:
        self.bus.publish([Event("alive")])
        for node, heard in list(self._heard.items()):
            if now - heard > self.timeout:
                log.warning(
                    "node %s: node %s silent for %.0f s: its users are offline",
                    self.name,
                    node,
                    now - heard,
                )
                del self._heard[node]
                self._tell_left(self._hub.forget_node(node))

    # --- membership and moderation ---------------------------------------------------------

    def _member(self, user_id: int) -> None:
        hub = self._hub
        if not hub.knows(user_id):
            return
        with self._store.read() as s:
            found = bus_reads.online_user(s, user_id)
            if found is None:
                return
            nick, rooms = found
            added, dropped = hub.set_rooms(user_id, rooms)
            infos = {r: mstore.room_settings(s, r) for r in added}
        from .moderation import roominfo_frame

        conns = hub.connections_of(user_id)
        with hub.batch():
            for room in added:
                # The user's connections here learn they joined, as on the node it happened.
                hub.send_to_user(user_id, encode(Presence(room=room, joined=nick)))
                st = infos.get(room)
                if st is not None:
                    hub.send_to_user(user_id, encode(roominfo_frame(st)))
                hub.publish_presence(room, joined=nick)
                for conn in conns:
                    for page in presence_pages(room, hub.online_in(room)):
                        hub.reply(conn, page)
            for room in dropped:
                hub.publish_presence(room, left=nick, extra_user=user_id)

    def _mute(self, room: str, user_id: int) -> None:
        from .commands import utcnow

        with self._store.read() as s:
            on, until = bus_reads.mute_in_force(s, room, user_id, utcnow())
        self._mutes.set(room, user_id, until, on)

    def _roominfo(self, room: str) -> None:
        from .moderation import roominfo_frame

        with self._store.read() as s:
            st = mstore.room_settings(s, room)
        if st is not None:
            self._hub.send_to_room(st.name, encode(roominfo_frame(st)))

    def _changed(self, kind: str, message_id: int) -> None:
        with self._store.read() as s:
            found = bus_reads.message_state(s, message_id)
        if found is None:
            return
        row, by = found
        m = row.message
        if kind == "delete":
            data = encode(Deleted(id=m.id, room=m.room, by=by))
        else:
            if m.edited_at is None:
                return
            data = encode(Edited(id=m.id, text=m.body, edited=format_ts(m.edited_at), room=m.room))
        if m.room is not None:
            self._hub.send_to_room(m.room, data)
        else:
            for uid in {row.sender_id, row.recipient_id}:
                if uid is not None:
                    self._hub.send_to_user(uid, data)

    def _read_marker(self, marker: int, room: str | None, users: tuple[int, ...]) -> None:
        user_id = users[0]
        if not self._hub.reaches(None, (user_id,)):
            return
        if room is not None:
            frame = Read(id=marker, room=room)
        else:
            if len(users) < 2:
                return
            with self._store.read() as s:
                found = bus_reads.online_user(s, users[1])
            if found is None:
                return
            frame = Read(id=marker, with_=found[0])
        self._hub.send_to_user(user_id, encode(frame))

    def _moderation(self, audit_id: int) -> None:
        with self._store.read() as s:
            entry = bus_reads.audit_entry(s, audit_id)
        if entry is None:
            return
        hub = self._hub
        a = entry
        why = f": {a.reason}" if a.reason else ""
        until = f" until {format_ts(a.until)}" if a.until is not None else ""
        ts = format_ts(a.created_at)
        text = {
            "kick": f"{a.target} was kicked from {a.room} by {a.actor}{why}",
            "ban": f"{a.target} was banned from {a.room} by {a.actor}{until}{why}",
            "mute": f"{a.target} was muted in {a.room} by {a.actor}{until}{why}",
            "unban": f"{a.target} was unbanned from {a.room} by {a.actor}",
            "unmute": f"{a.target} was unmuted in {a.room} by {a.actor}",
            "invite": f"{a.actor} invited you to {a.room} (/join {a.room})",
        }.get(a.action)
        if text is not None and a.target_id is not None:
            notice = Notice(
                text=text,
                ts=ts,
                kind=a.action,
                from_=a.actor if a.action not in ("unban", "unmute") else None,
                room=a.room,
            )
            hub.send_to_user(a.target_id, encode(notice))
        elif a.action in ("disconnect", "lock") and a.target_id is not None:
            reason = (
                f"disconnected by {a.actor}{why}"
                if a.action == "disconnect"
                else f"your account was locked by {a.actor}{why}"
            )
            error = Error(code=ErrorCode.DISCONNECTED, message=reason)
            for peer in hub.connections_of(a.target_id):
                peer.close_after_flush(reason[:REASON_CHARS], error)  # type: ignore[attr-defined]
        elif a.action == "announce" and a.detail:
            data = encode(Notice(text=a.detail, ts=ts, kind="announce", from_=a.actor))
            for peer in hub.all_connections():
                peer.deliver(data)
