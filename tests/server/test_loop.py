"""IOLoop: notify() from other threads takes no lock, and no notification is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from parley_chat.server.loop import IOLoop


class _Stub:
    """The part of a Connection the loop calls, for a connection with no socket:
    interest 0 keeps it out of the selector, so only notify() brings the loop to it."""

    paused_until = 0.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wanted = 0  # bumped before each notify()
        self.seen = 0  # the value of `wanted` at the last service()
        self.changed = threading.Condition(self.lock)
        self.finished: str | None = None

    def attach_loop(self, loop: IOLoop) -> None:
        self.loop = loop

    def on_readable(self, now: float) -> None:
        pass

    def service(self, now: float) -> None:
        with self.changed:
            self.seen = self.wanted
            self.changed.notify_all()

    def interest(self) -> int:
        return 0

    def wants_another_turn(self) -> bool:
        return False

    def check_timers(self, now: float) -> None:
        pass

    def finish(self, reason: str) -> None:
        self.finished = reason


def test_notifications_from_many_threads_all_reach_the_loop() -> None:
    loop = IOLoop("test-loop")
    loop.start()
    stubs = [_Stub() for _ in range(50)]
    try:
        for stub in stubs:
            loop.adopt(stub)  # type: ignore[arg-type]

        def hammer(offset: int) -> None:
            for i in range(2000):
                stub = stubs[(i * 7 + offset) % len(stubs)]
                with stub.lock:
                    stub.wanted += 1
                loop.notify(stub)  # type: ignore[arg-type]

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        deadline = time.monotonic() + 30
        for stub in stubs:
            with stub.changed:
                # Every bump was followed by a notify: the loop must serve the
                # stub after its last one, whatever the interleaving.
                assert stub.changed.wait_for(
                    lambda s=stub: s.seen == s.wanted, max(0.0, deadline - time.monotonic())
                ), f"a notification was lost: served at {stub.seen} of {stub.wanted}"
        assert sum(s.wanted for s in stubs) == 4 * 2000
    finally:
        loop.stop()
    assert all(s.finished == "server shutdown" for s in stubs)


def test_a_notify_on_the_loop_thread_is_served_on_the_next_turn() -> None:
    loop = IOLoop("test-loop-self")
    loop.start()
    first, second = _Stub(), _Stub()
    try:
        loop.adopt(first)  # type: ignore[arg-type]
        loop.adopt(second)  # type: ignore[arg-type]
        # first's service (on the loop thread) notifies second, as a handler
        # that answers another connection would.
        original = first.service

        def chained(now: float) -> None:
            original(now)
            with second.lock:
                second.wanted += 1
            loop.notify(second)  # type: ignore[arg-type]

        first.service = chained  # type: ignore[method-assign]
        with first.lock:
            first.wanted += 1
        loop.notify(first)  # type: ignore[arg-type]
        with second.changed:
            assert second.changed.wait_for(lambda: second.seen >= 1, 10)
    finally:
        loop.stop()


def test_posted_steps_run_on_the_loop_thread_in_order_past_a_failing_one() -> None:
    loop = IOLoop("test-loop-post")
    loop.start()
    ran: list[tuple[int, bool]] = []
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    try:

        def step(i: int) -> None:
            ran.append((i, loop.handing_over()))
            if i == 0:  # hold the loop until the others are posted behind it
                started.set()
                assert release.wait(10)
            if i == 2:
                raise RuntimeError("a broken step")  # logged; the next ones still run
            if i == 4:
                finished.set()

        loop.post(lambda: step(0))
        assert started.wait(10)
        for i in range(1, 5):
            loop.post(lambda i=i: step(i))  # type: ignore[misc]
        release.set()
        assert finished.wait(10)
        # In order; and only a step with nothing posted behind it writes through
        # (step 0 had none when it began; 1-3 had; 4 is the last).
        assert ran == [(0, True), (1, False), (2, False), (3, False), (4, True)]
        assert not loop.handing_over(), "never on another thread"
    finally:
        loop.stop()


def test_a_connection_notified_inside_a_posted_step_is_served_at_once() -> None:
    loop = IOLoop("test-loop-through")
    loop.start()
    first, second = _Stub(), _Stub()
    order: list[str] = []
    done = threading.Event()
    try:
        for stub in (first, second):
            loop.adopt(stub)  # type: ignore[arg-type]
            with stub.lock:
                stub.wanted += 1
            loop.notify(stub)  # type: ignore[arg-type]
            with stub.changed:  # served once: adopted
                assert stub.changed.wait_for(lambda s=stub: s.seen >= 1, 10)
        for stub, name in ((first, "first"), (second, "second")):
            original = stub.service

            def served(now: float, original: Any = original, name: str = name) -> None:
                original(now)
                order.append(f"served {name}")

            stub.service = served  # type: ignore[method-assign]

        def hand_over() -> None:
            for stub, name in ((first, "first"), (second, "second")):
                order.append(f"queued {name}")
                loop.notify(stub)  # type: ignore[arg-type]
            done.set()

        loop.post(hand_over)
        assert done.wait(10)
        # Each is written before the next is queued: the first member's bytes
        # do not wait for the last member's.
        assert order == ["queued first", "served first", "queued second", "served second"]
    finally:
        loop.stop()


def test_reads_run_inside_the_read_scope_and_a_step_posted_at_its_end_runs() -> None:
    events: list[str] = []
    posted = threading.Event()

    def step() -> None:
        events.append("posted")
        posted.set()

    @contextmanager
    def scope() -> Iterator[None]:
        events.append("enter")
        yield
        # Where the store commits what the reads gathered: the hand-over posts
        # to this loop from its own thread, which does not wake it.
        events.append("exit")
        loop.post(step)

    loop = IOLoop("test-loop-scope", read_scope=scope)
    stub = _Stub()
    stub.on_readable = lambda now: events.append("read")  # type: ignore[method-assign]
    loop.start()
    try:
        loop.adopt(stub)  # type: ignore[arg-type]  # an adopted connection is read at once
        assert posted.wait(10)
    finally:
        loop.stop()
    assert events[:4] == ["enter", "read", "exit", "posted"]
