"""How busy the machine is with other work while a run measures: the CPU time of every process but this one
(and its children), as a share of the machine's cores, from psutil. A benchmark on a laptop shares it with a
browser and a build; the run records how much, so the report can say which cells were measured on a busy
machine and the time budget can tell a slow machine from a busy one."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

BUSY_SHARE = 0.10  # other processes using more than this share of the cores: the machine was busy


@dataclass(frozen=True)
class CpuClock:
    wall_s: float
    busy_s: float  # every process's CPU seconds on the machine, idle and I/O wait excluded
    ours_s: float  # this process's and its children's


# the busy fields of /proc/stat (guest time is inside user already; steal is another VM's use of this one's cores)
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def _busy(times: object) -> float:
    return sum(getattr(times, name, 0.0) for name in BUSY_FIELDS)


def _live_children_s(process: psutil.Process) -> float:
    """CPU seconds of this process's live descendants (inductor's compile workers): cpu_times' children_* count
    only children that ended and were waited for, so a worker pool still running would read as another
    process's load."""
    total = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        total += times.user + times.system
    return total


def read_clock() -> CpuClock:
    process = psutil.Process()
    own = process.cpu_times()
    ours = own.user + own.system + own.children_user + own.children_system + _live_children_s(process)
    return CpuClock(time.perf_counter(), _busy(psutil.cpu_times()), ours)


def others_share(start: CpuClock, end: CpuClock | None = None) -> float | None:
    """Other processes' CPU time between two readings over the cores' time (0: they ran nothing, 1: they took
    every core); None over too short a span to tell."""
    end = end or read_clock()
    wall = end.wall_s - start.wall_s
    if wall < 0.05:
        return None
    others = (end.busy_s - start.busy_s) - (end.ours_s - start.ours_s)
    return min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1))))
