# Tests for server/memory.py: when the heap trimmer decides a burst is over.

import gc
import sys
import weakref

import pytest

from parley_chat.server.memory import (
    GC_YOUNG_THRESHOLD,
    HeapTrimmer,
    settle_heap,
    space_young_collections,
)


def _trimmer(threshold=10, quiet_looks=2):
    calls = []
    trimmer = HeapTrimmer(threshold, quiet_looks, trim=lambda pad: calls.append(pad) or 1)
    return trimmer, calls


def test_a_burst_is_trimmed_once_it_has_been_quiet_for_the_looks_asked():
    trimmer, calls = _trimmer()
    assert not trimmer.look(0, 0, busy=False)
    assert not trimmer.look(20, 5, busy=True)  # the storm: handshakes in flight
    assert not trimmer.look(20, 20, busy=False)  # logins still landing
    assert not trimmer.look(20, 20, busy=False)  # one quiet look
    assert trimmer.look(20, 20, busy=False)  # two: over
    assert calls == [0] and trimmer.trims == 1
    # One follow-up once what the burst queued for its clients has gone out.
    looks = [trimmer.look(20, 20, busy=False) for _ in range(10)]
    assert looks.count(True) == 1 and trimmer.trims == 2
    assert not any(trimmer.look(20, 20, busy=False) for _ in range(20)), "then no more"


def test_small_changes_do_not_trim_and_in_flight_handshakes_are_not_quiet():
    trimmer, calls = _trimmer()
    trimmer.look(0, 0, busy=False)
    for n in range(1, 4):  # a few reconnects: below the threshold
        trimmer.look(n, n, busy=False)
    for _ in range(5):
        trimmer.look(3, 3, busy=False)
    assert calls == []
    trimmer.look(30, 30, busy=False)
    for _ in range(5):
        assert not trimmer.look(30, 30, busy=True)
    assert calls == []


def test_leaving_counts_as_a_burst_too():
    trimmer, calls = _trimmer()
    trimmer.look(50, 50, busy=False)
    trimmer.look(0, 0, busy=False)
    trimmer.look(0, 0, busy=False)
    assert trimmer.look(0, 0, busy=False) and calls == [0]


def test_a_due_trim_waits_for_a_lull_in_chat_traffic_but_not_for_ever():
    calls: list[int] = []
    trimmer = HeapTrimmer(10, 2, trim=lambda pad: calls.append(pad) or 1, traffic_defer_looks=5)
    trimmer.look(0, 0, busy=False)
    trimmer.look(20, 20, busy=False)  # a burst of logins
    # Chat flows: the trim waits (its collection would hold the messages up)...
    assert not any(trimmer.look(20, 20, busy=False, traffic=True) for _ in range(5))
    assert calls == []
    # ...at most the looks asked; then it runs although traffic goes on.
    looks = [trimmer.look(20, 20, busy=False, traffic=True) for _ in range(2)]
    assert looks == [False, True] and calls == [0]
    # The next burst waits for a lull again, and a lull lets it run at once.
    trimmer.look(40, 40, busy=False)
    assert not trimmer.look(40, 40, busy=False, traffic=True)
    assert not trimmer.look(40, 40, busy=False)
    assert trimmer.look(40, 40, busy=False) and len(calls) == 2


def test_traffic_alone_never_makes_a_trim_due():
    trimmer, calls = _trimmer()
    trimmer.look(5, 5, busy=False)
    for _ in range(50):
        trimmer.look(5, 5, busy=False, traffic=True)
    assert calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux's")
def test_the_real_allocator_can_be_trimmed_here():
    trimmer = HeapTrimmer()
    assert trimmer.available
    assert trimmer.trim() and trimmer.trims == 1


def test_settle_heap_freezes_survivors_and_a_full_one_collects_what_was_frozen() -> None:
    class Node:
        pass

    node = Node()
    node.me = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    try:
        settle_heap(full=True)
        assert gc.get_freeze_count() > 0
        del node
        settle_heap(full=False)  # walks only what is new: the frozen cycle stays
        assert alive() is not None
        settle_heap(full=True)  # unfreezes first: last time's survivors are collected now
        assert alive() is None
    finally:
        gc.unfreeze()


def test_every_few_trims_one_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import parley_chat.server.memory as memory

    seen: list[bool] = []
    monkeypatch.setattr(memory, "settle_heap", lambda *, full: seen.append(full))
    trimmer = HeapTrimmer(trim=lambda pad: 1)
    for _ in range(2 * memory.FULL_SETTLE_EVERY):
        trimmer.trim()
    every = memory.FULL_SETTLE_EVERY
    assert seen == ([False] * (every - 1) + [True]) * 2


_ARENAS_PROBE = """
import sys, threading
from parley_chat.server.memory import limit_malloc_arenas
if sys.argv[1] != "default":
    assert limit_malloc_arenas(int(sys.argv[1]))
go = threading.Barrier(9)
def work():
    keep = [bytearray(4096) for _ in range(200)]  # malloc, not pymalloc: over 512 bytes
    go.wait()
    go.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
go.wait()  # all eight hold their allocations now
# glibc's thread arenas are anonymous mappings aligned to their 64 MiB reservation.
heaps = 0
for line in open("/proc/self/maps"):
    fields = line.split()
    start = int(fields[0].split("-")[0], 16)
    if len(fields) == 5 and start % (64 << 20) == 0 and fields[1].startswith("rw"):
        heaps += 1
go.wait()
for t in threads:
    t.join()
print(heaps)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_the_arena_cap_keeps_allocating_threads_to_the_arenas_asked() -> None:
    import subprocess

    def heaps(arg: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _ARENAS_PROBE, arg],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return int(out.stdout.split()[-1])

    # Eight threads allocating at once get arenas of their own by default; with
    # the cap they share the main one and one more.
    assert heaps("default") >= 4
    assert heaps("2") <= 1


def test_young_collections_are_spaced_and_never_made_more_frequent() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        space_young_collections(10_000)
        assert gc.get_threshold() == (10_000, 10, 10)
        gc.set_threshold(50_000, 5, 5)  # someone chose rarer ones already
        space_young_collections(10_000)
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*before)


def test_a_started_server_spaces_young_collections(make_server) -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, before[1], before[2])
    try:
        make_server()
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.set_threshold(*before)
