"""The device's memory bandwidth by working-set size, a fact of the run: the bandwidth roofs of the roofline.

A STREAM triad (a = b + s·c, McCalpin's kernel) over three float32 arrays, at working sets from inside the
last private cache to well past the last-level one, each timed in repeated samples whose median gets its
order-statistics interval, like the matmul peak. Measured once per device, when the first cell records."""

from __future__ import annotations

import time
from functools import cache

import torch

from infra.machine import cache_facts, memory_level, memory_levels
from infra.record import BandwidthPoint, pass_median
from infra.stats import median_bounds

SAMPLES = 11  # per working set: a 95% interval on the median from order statistics
MIN_SAMPLE_S = 0.002  # one sample's triads together: far above perf_counter's and CUDA events' resolution
ELEMENT_BYTES = 4  # float32
STEP = 4  # working sets grow by this factor
SMALLEST = {"cpu": 256 << 10, "cuda": 4 << 20}
PAST_LAST_LEVEL = 8  # the largest working set: this many times the largest cache, at least FLOOR_LARGEST
FLOOR_LARGEST = {"cpu": 256 << 20, "cuda": 2 << 30}
CEILING_LARGEST = {"cpu": 1 << 30, "cuda": 8 << 30}


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def working_sets(levels: list[tuple[str, int]], device: str) -> list[int]:
    """Sizes from SMALLEST, STEP apart, to PAST_LAST_LEVEL times the largest cache (within the floor and
    ceiling), so that each level with room for one holds at least one point and memory holds two."""
    kind = device_kind(device)
    caches = [capacity for _, capacity in levels[:-1]]
    largest = min(max(PAST_LAST_LEVEL * max(caches, default=0), FLOOR_LARGEST[kind]), CEILING_LARGEST[kind])
    sizes, size = [], SMALLEST[kind]
    while size <= largest:
        sizes.append(size)
        size *= STEP
    return sizes


def _triad_seconds(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, device: str, triads: int) -> float:
    """Seconds of one triad, over `triads` back to back: CUDA events on a GPU, the host clock on a CPU."""

    def run() -> None:
        for _ in range(triads):
            torch.add(b, c, alpha=3.0, out=a)

    if device_kind(device) == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / triads
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) / triads


def triad_point(device: str, working_set: int, level: str, samples: int = SAMPLES) -> BandwidthPoint:
    n = working_set // (3 * ELEMENT_BYTES)
    a, b, c = (torch.ones(n, device=device) for _ in range(3))
    one = _triad_seconds(a, b, c, device, 1)  # the warm-up: pages touched, caches filled
    triads = max(1, int(MIN_SAMPLE_S / max(one, 1e-9)))
    seconds = [_triad_seconds(a, b, c, device, triads) for _ in range(samples)]
    moved = 3 * n * ELEMENT_BYTES
    slow, fast = median_bounds(seconds)
    return BandwidthPoint(
        device=device,
        working_set_bytes=moved,
        level=level,
        bytes_per_triad=moved,
        triads_per_sample=triads,
        samples_s=seconds,
        median_bytes_per_s=moved / pass_median(seconds),
        low_bytes_per_s=moved / fast,
        high_bytes_per_s=moved / slow,
    )


_measured: dict[str, list[BandwidthPoint]] = {}


@cache
def bandwidth_probe(device: str) -> tuple[BandwidthPoint, ...]:
    """The run's bandwidth on this device at each working set, measured once per run (the first cell)."""
    levels = memory_levels(cache_facts(), device)
    points = tuple(triad_point(device, size, memory_level(size, levels)) for size in working_sets(levels, device))
    _measured[device] = list(points)
    return points


def measured_bandwidth() -> list[BandwidthPoint]:
    """Every bandwidth point this run measured, for its machine facts."""
    return [point for points in _measured.values() for point in points]
