"""Peak memory of one step, in bytes above what was allocated when the step began.

CUDA: the caching allocator's own peak counter. CPU: the profiler's allocation events, summed in
order; exact and repeatable, unlike RSS (which counts pages the allocator keeps). The profiler cannot see
the free of a block allocated before it started (it warns "Memory block of unknown size"), so the step
runs twice under it and only the second, marked call counts: whatever that call frees, the first call
allocated in view.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch._C._profiler import _EventType
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

MEASURED = "attnbench::measured_step"


def _walk(events, out: list) -> None:
    for event in events:
        out.append(event)
        _walk(event.children, out)


def flatten(prof: profile) -> list:
    """Every event of a finished profile (ops and allocations), nested ones included."""
    events: list = []
    _walk(prof.profiler.kineto_results.experimental_event_tree(), events)
    return events


def measured_window(events: list) -> tuple[int, int]:
    marker = next(e for e in events if e.name == MEASURED)
    return marker.start_time_ns, marker.end_time_ns


def cpu_peak_from_events(events: list) -> int:
    """Peak of the running sum of CPU allocation sizes (frees are negative) inside the marked call."""
    start, end = measured_window(events)
    allocations = sorted(
        (e.start_time_ns, e.extra_fields.alloc_size)
        for e in events
        if e.tag == _EventType.Allocation and e.extra_fields.device.type == "cpu" and start <= e.start_time_ns <= end
    )
    running = peak = 0
    for _, size in allocations:
        running += size
        peak = max(peak, running)
    return peak


def run_twice_profiled(fn: Callable[[], object], activities: list[ProfilerActivity], **options) -> profile:
    """Call fn once, then once more inside the MEASURED marker, under one profiler session."""
    with profile(activities=activities, **options) as prof:
        fn()
        with record_function(MEASURED):
            fn()
    return prof


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    return cpu_peak_from_events(flatten(run_twice_profiled(fn, [ProfilerActivity.CPU], profile_memory=True)))


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
