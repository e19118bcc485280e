"""Tuning the auto kernel on first use: time each candidate kernel on the shapes of the call that asked,
in seconds rather than minutes, so a machine with no measured table gets a measured choice."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from model.kernels import CANDIDATES

BUDGET_S = 0.3  # timing per candidate, after its first call
MAX_CALLS = 5
LOSING = 3.0  # a candidate whose first call is this much slower than the best so far is not timed further


def time_candidates(run: Callable[[str], None], device: str, budget_s: float = BUDGET_S) -> dict[str, float]:
    """Median seconds of `run(kernel)` per candidate that can run here. The first call is a warm-up and
    decides whether to go on: a clear loser (an emulated bf16 explicit softmax can take seconds a call)
    is recorded by that call alone, so tuning stays short on machines where some kernels are very slow."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds: dict[str, float] = {}
    for kernel in CANDIDATES["cuda" if device == "cuda" else "cpu"]:
        try:
            first = _timed(run, kernel, sync)
        except RuntimeError:  # "No available kernel": this backend cannot take these inputs
            continue
        best = min(seconds.values(), default=first)
        if first > LOSING * best:
            seconds[kernel] = first
            continue
        samples: list[float] = []
        while len(samples) < MAX_CALLS and sum(samples) < budget_s:
            samples.append(_timed(run, kernel, sync))
        seconds[kernel] = statistics.median(samples)
    return seconds


def _timed(run: Callable[[str], None], kernel: str, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    run(kernel)
    sync()
    return time.perf_counter() - start
