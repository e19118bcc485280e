"""Peak memory of one step, in bytes above what was allocated before it.

CUDA: the caching allocator's own peak counter. CPU: the profiler's allocation events, summed in
order; exact and repeatable, unlike RSS (see DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile


def _walk(events, out: list[tuple[int, int]]) -> None:
    for event in events:
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            out.append((event.start_time_ns, event.extra_fields.alloc_size))
        _walk(event.children, out)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations: list[tuple[int, int]] = []
    _walk(prof.profiler.kineto_results.experimental_event_tree(), allocations)
    running = peak = 0
    for _, size in sorted(allocations):
        running += size
        peak = max(peak, running)
    return peak


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    return cuda_peak_bytes(fn, torch.device(device)) if device.startswith("cuda") else cpu_peak_bytes(fn)
