"""The load generator's pure helpers, no I/O of its own
beyond reading /proc files it is pointed at.

Owns: the latency histogram (sparse counts per latency key, mergeable
across processes, percentiles), the /proc parsers that turn a PID into CPU seconds and RSS,
and whole-machine CPU from /proc/stat. Kept apart from the event loop so
tests/bench can check them without sockets.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Latencies are kept as counts per key, in nanoseconds: below FINE_LIMIT_NS a key
#: spans 2**FINE_SHIFT ns (8.2 us), above it 2**COARSE_SHIFT ns (1.05 ms, under 1.6%
#: of any value there). The worker computes keys in one list comprehension per
#: block of received lines (no function call per delivery) and counts them with
#: collections.Counter (C); a run with latencies up to a minute needs at most
#: ~65,000 keys.
FINE_SHIFT = 13
COARSE_SHIFT = 20
FINE_LIMIT_NS = 1 << 26  # 67 ms
#: Coarse keys start right after the fine ones.
COARSE_OFFSET = (FINE_LIMIT_NS >> FINE_SHIFT) - (FINE_LIMIT_NS >> COARSE_SHIFT)


def latency_key(ns: int) -> int:
    """The histogram key of a latency of *ns* nanoseconds (the worker inlines this)."""
    if ns < FINE_LIMIT_NS:
        return ns >> FINE_SHIFT
    return (ns >> COARSE_SHIFT) + COARSE_OFFSET


def key_bounds(key: int) -> tuple[int, int]:
    """The [low, high) nanosecond range of *key* (negative keys: clock noise, count as 0)."""
    if key < 0:
        return 0, 1
    if key < FINE_LIMIT_NS >> FINE_SHIFT:
        return key << FINE_SHIFT, (key + 1) << FINE_SHIFT
    base = key - COARSE_OFFSET
    return base << COARSE_SHIFT, (base + 1) << COARSE_SHIFT


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

    Nearest rank; a sample's value is taken as the middle of its key's range,
    except q=100 (the maximum), which is the top of the highest key's range.
    NaN for an empty histogram.
    """
    qs = list(qs)
    total = count(hist)
    if total == 0:
        return [float("nan")] * len(qs)
    items = sorted(hist.items())
    out: list[float] = []
    for q in qs:
        if q >= 100:
            out.append(key_bounds(items[-1][0])[1] / 1e6)
            continue
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for key, n in items:
            seen += n
            if seen >= rank:
                low, high = key_bounds(key)
                out.append((low + high) / 2 / 1e6)
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


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM a server process, wait up to *grace* seconds, SIGKILL it if it hangs."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last *lines* of a server's log file (for failure reports)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
