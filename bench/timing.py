"""Timing that is right on CUDA: every timed call ends in a synchronisation, so pytest-benchmark's
wall clock covers the kernels the call launched, not just their launch."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def device_synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None  # CPU ops return when done


def synchronized(fn: Callable[[], object], sync: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        fn()
        sync()

    return call


def rounds_for_budget(one_call_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """How many timed rounds fit the cell's budget, at least min_rounds for a median worth the name."""
    if one_call_s <= 0:
        return max_rounds
    return max(min_rounds, min(max_rounds, int(budget_s / one_call_s)))


def time_once(call: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds of one call, synchronised before and after so queued work is neither counted nor missed."""
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start
