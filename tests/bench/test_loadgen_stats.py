# tests/bench/test_loadgen_stats.py: the load generator's pure helpers: the
# latency histogram (keys, bounds, percentiles) and the /proc parsers.

from __future__ import annotations

import os

import pytest

from bench.loadgen_stats import (
    FINE_LIMIT_NS,
    key_bounds,
    latency_key,
    merge,
    parse_machine_cpu,
    parse_proc_stat_cpu,
    parse_vmrss_kb,
    percentiles,
    process_cpu,
    process_rss_mb,
)


@pytest.mark.parametrize(
    "ns", [0, 1, 8191, 8192, 400_000, FINE_LIMIT_NS - 1, FINE_LIMIT_NS, 3 * 10**9, 60 * 10**9]
)
def test_every_latency_falls_inside_its_keys_bounds(ns: int) -> None:
    low, high = key_bounds(latency_key(ns))
    assert low <= ns < high
    # Precision: under 1.6% of the value above the fine range, 8.2 us below it.
    assert high - low <= max(8192, ns * 0.016)


def test_keys_are_ordered_like_latencies() -> None:
    values = [0, 5_000, 70_000_000, 2**27, 10**9, 10**10]
    keys = [latency_key(v) for v in values]
    assert keys == sorted(keys)
    assert latency_key(FINE_LIMIT_NS) == latency_key(FINE_LIMIT_NS - 1) + 1


def test_percentiles_by_nearest_rank_in_milliseconds() -> None:
    # 98 deliveries at ~1 ms, one at 50 ms, one at 2 s.
    hist = merge(
        [{latency_key(1_000_000): 98}, {latency_key(50_000_000): 1}, {latency_key(2 * 10**9): 1}]
    )
    p50, p99, top = percentiles(hist, (50, 99, 100))
    assert p50 == pytest.approx(1.0, abs=0.01)
    assert p99 == pytest.approx(50.0, abs=0.01)
    assert top == pytest.approx(2000.0, rel=0.01)
    assert top >= 2000.0  # the maximum is the top of its bucket, never below the sample


def test_percentiles_of_nothing_are_nan() -> None:
    assert all(v != v for v in percentiles({}, (50, 100)))


def test_proc_stat_with_a_hostile_command_name() -> None:
    # Field 2 may hold spaces and parentheses; utime/stime are fields 14 and 15.
    fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "250", "50"] + ["0"] * 40
    text = "4242 (evil) name) (x) " + " ".join(fields)
    assert parse_proc_stat_cpu(text, ticks=100) == pytest.approx(3.0)


def test_vmrss_and_machine_cpu() -> None:
    assert parse_vmrss_kb("Name:\tpython\nVmRSS:\t  51200 kB\nThreads:\t3\n") == 51200
    assert parse_vmrss_kb("Name:\tkthread\n") == 0
    cpu = parse_machine_cpu("cpu  100 10 50 800 40 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n", ticks=100)
    assert cpu.total == pytest.approx(10.0)
    assert cpu.busy == pytest.approx(1.6)


def test_this_process_can_be_measured() -> None:
    assert process_cpu(os.getpid()) > 0
    assert process_rss_mb(os.getpid()) > 1
