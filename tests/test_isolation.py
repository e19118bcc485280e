"""What a time limit may leave behind when it lands inside our own instrumentation around user code."""

import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.isolation import CellTimeLimit, clear_instrumentation, time_limit


def test_a_mode_and_the_profiler_left_on_are_named_and_stopped():
    FlopCounterMode(display=False).__enter__()  # as an __exit__ cut short by the limit would leave it
    torch.autograd.profiler.profile().__enter__()
    left = clear_instrumentation()
    assert any("FlopCounterMode" in what for what in left) and "the profiler" in left
    assert torch._C._len_torch_dispatch_stack() == 0 and not torch.autograd._profiler_enabled()
    assert clear_instrumentation() == []  # nothing left the second time


def test_a_limit_inside_the_flop_counter_leaves_nothing_running():
    x = torch.randn(32, 32)
    with pytest.raises(CellTimeLimit), time_limit(0.05), FlopCounterMode(display=False):
        while True:  # torch ops through the mode's Python dispatch, where the alarm lands
            x = (x @ x).tanh()
    assert clear_instrumentation() == []


def test_a_limit_that_falls_inside_an_import_waits_for_the_import_to_end(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures" / "hostile"))
    sys.modules.pop("slow_import", None)
    started = time.perf_counter()
    with pytest.raises(CellTimeLimit), time_limit(0.1):
        import slow_import  # noqa: F401  (0.6 s at its top level: the limit falls inside it)

        while True:
            time.sleep(0.01)
    assert sys.modules["slow_import"].DONE  # whole, not half-initialised for the next cell to trip over
    assert time.perf_counter() - started >= 0.6
