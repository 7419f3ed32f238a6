# bench/loadgen_stats.py: the load generator's pure helpers, no I/O of its own
# beyond reading /proc files it is pointed at.
#
# Owns: the latency histogram (fixed buckets, mergeable across processes,
# percentiles), the /proc parsers that turn a PID into CPU seconds and RSS,
# and whole-machine CPU from /proc/stat. Kept apart from the event loop so
# tests/bench can check them without sockets.

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Latencies are bucketed in microseconds. Below LINEAR_US every microsecond has
#: its own bucket (the hot path indexes the list directly, no function call);
#: above it each power of two is split into 2**SUB_BITS buckets (error < 0.4%).
LINEAR_US = 4096
SUB_BITS = 8
_LINEAR_BITS = LINEAR_US.bit_length() - 1  # 12
#: Enough octaves for latencies up to 2**40 us (12 days): nothing real is larger.
MAX_OCTAVE = 40
HIST_SIZE = LINEAR_US + ((MAX_OCTAVE - _LINEAR_BITS + 1) << SUB_BITS)


def bucket_of(us: int) -> int:
    """The histogram index of a latency of *us* microseconds (negatives count as 0)."""
    if us < LINEAR_US:
        return us if us > 0 else 0
    e = us.bit_length() - 1
    if e > MAX_OCTAVE:
        return HIST_SIZE - 1
    return (
        LINEAR_US
        + ((e - _LINEAR_BITS) << SUB_BITS)
        + ((us >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1))
    )


def bucket_bounds(index: int) -> tuple[int, int]:
    """The [low, high) microsecond range of bucket *index*."""
    if index < LINEAR_US:
        return index, index + 1
    k = index - LINEAR_US
    e = (k >> SUB_BITS) + _LINEAR_BITS
    sub = k & ((1 << SUB_BITS) - 1)
    width = 1 << (e - SUB_BITS)
    low = (1 << e) + sub * width
    return low, low + width


def new_histogram() -> list[int]:
    """An empty histogram: a plain list of counts, indexed by bucket_of()."""
    return [0] * HIST_SIZE


def sparse(hist: list[int]) -> dict[int, int]:
    """Only the non-empty buckets (what a worker sends to the parent)."""
    return {i: n for i, n in enumerate(hist) if n}


def merge(parts: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Sum sparse histograms."""
    total: dict[int, int] = {}
    for part in parts:
        for i, n in part.items():
            total[i] = total.get(i, 0) + n
    return total


def count(hist: Mapping[int, int]) -> int:
    """How many samples a sparse histogram holds."""
    return sum(hist.values())


def percentiles(hist: Mapping[int, int], qs: Iterable[float]) -> list[float]:
    """The q-th percentiles (0-100) of a sparse histogram, in milliseconds.

    A sample's value is taken as the middle of its bucket; "max" is q=100 and
    gives the top of the highest non-empty bucket. NaN for an empty histogram.
    """
    qs = list(qs)
    total = count(hist)
    if total == 0:
        return [float("nan")] * len(qs)
    items = sorted(hist.items())
    out: list[float] = []
    for q in qs:
        if q >= 100:
            low, high = bucket_bounds(items[-1][0])
            out.append((high - 1) / 1000)
            continue
        # Nearest rank: the smallest value with at least q% of samples at or below it.
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for index, n in items:
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(index)
                out.append((low + high - 1) / 2 / 1000)
                break
    return out


# --- /proc ------------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_KB = (os.sysconf("SC_PAGE_SIZE") // 1024) if hasattr(os, "sysconf") else 4


def parse_proc_stat_cpu(text: str, ticks: int = CLOCK_TICKS) -> float:
    """User + system CPU seconds from the text of /proc/PID/stat (all threads).

    The command name (field 2) is in parentheses and may itself contain spaces
    and parentheses, so fields are counted from after the last ')'.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / ticks


def parse_vmrss_kb(text: str) -> int:
    """VmRSS in KiB from the text of /proc/PID/status (0 if the line is missing)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process *pid* has used so far."""
    return parse_proc_stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def process_rss_mb(pid: int) -> float:
    """Resident memory of *pid* in MiB (VmRSS)."""
    return parse_vmrss_kb(Path(f"/proc/{pid}/status").read_text()) / 1024


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Cumulative whole-machine CPU time from /proc/stat, in seconds."""

    busy: float
    total: float


def parse_machine_cpu(text: str, ticks: int = CLOCK_TICKS) -> MachineCpu:
    """The aggregate `cpu` line of /proc/stat: busy = total - idle - iowait."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            total = sum(values[:8])
            idle = values[3] + values[4]
            return MachineCpu((total - idle) / ticks, total / ticks)
    raise ValueError("no aggregate cpu line in /proc/stat")


def machine_cpu() -> MachineCpu:
    """Whole-machine CPU counters now."""
    return parse_machine_cpu(Path("/proc/stat").read_text())
