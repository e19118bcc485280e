"""Known slowdowns for validating the gate (`python -m bench.noise_floor --paired`), off on every branch.

The experiment commits a throwaway revision that sets one of these and checks that `python -m bench ab`
catches it, as examples/extra_work_attention.py's EXTRA_FRACTION does for one implementation:
- STEP_STRETCH: every timed call of every cell takes this fraction longer (a busy wait after it, as long as
  the call took times the fraction): every cell slower, the reference matmul not.
- BACKGROUND_DUTY: a thread started with the run keeps a core busy this fraction of every millisecond
  (hashing, which releases the GIL), as leftover background work would: the whole process slower, the
  reference matmul included.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

STEP_STRETCH = 0.0
BACKGROUND_DUTY = 0.0
PERIOD_S = 1e-3  # short beside a cell's call, so that every round (and so its median) is hit alike
THREAD_NAME = "attnbench-injected-background-work"


def stretched(step: Callable[[], object]) -> Callable[[], object]:
    """The step, each call followed by a busy wait of STEP_STRETCH times its own duration (itself where off)."""
    if not STEP_STRETCH:
        return step

    def call() -> object:
        start = time.perf_counter()
        out = step()
        end = time.perf_counter()
        until = end + STEP_STRETCH * (end - start)
        while time.perf_counter() < until:
            pass
        return out

    return call


def _background_work(duty: float, stop: threading.Event) -> None:
    chunk = bytes(4096)  # hashlib releases the GIL above 2 KiB: the main thread's Python is not held up
    while not stop.is_set():
        until = time.perf_counter() + duty * PERIOD_S
        while time.perf_counter() < until:
            hashlib.sha256(chunk).digest()
        time.sleep((1 - duty) * PERIOD_S)


def start_background_work() -> threading.Event | None:
    """Where BACKGROUND_DUTY is set, a daemon thread that keeps a core busy that share of the time, for the rest
    of the process (a run's): the event that stops it; None where it is off."""
    if not BACKGROUND_DUTY:
        return None
    stop = threading.Event()
    threading.Thread(target=_background_work, args=(BACKGROUND_DUTY, stop), daemon=True, name=THREAD_NAME).start()
    return stop
