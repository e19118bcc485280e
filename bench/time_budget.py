"""Fitting a profile into its time budget on the CPU at hand: which lengths of which dtype to leave out,
chosen from the cost model and this CPU's measured pace, each with the reason written down."""

from __future__ import annotations

from collections import defaultdict

from bench.grid import Cell, Grid
from bench.pace import Pace
from bench.sharding import predicted_seconds
from infra.machine import NATIVE_NEEDS, native_dtypes


def emulated(device: str, dtype: str, cpu_flags: list[str]) -> bool:
    return device == "cpu" and dtype in ("bfloat16", "float16") and not native_dtypes(cpu_flags)[dtype]


def emulation_note(dtype: str, cpu_flags: list[str]) -> str:
    return f" ({dtype} emulated here: no {NATIVE_NEEDS[dtype]})" if emulated("cpu", dtype, cpu_flags) else ""


def leave_out(
    cells: list[Cell],
    grid: Grid,
    pace: Pace | None,
    budget_s: float,
    cpu_flags: list[str],
    partners: dict[str, Cell] | None = None,
) -> dict[str, str]:
    """trace_name -> reason, for the cells left out so that the predicted time fits `budget_s`. While it does
    not fit, a dtype the CPU emulates, else the dtype whose cells cost most, loses its longest length (in
    every group), so each native dtype keeps its shortest lengths and the costliest work goes first. A
    dtype's last length is dropped only where the CPU emulates it: its numbers say least, and at one length
    it can cost more than the whole float32 grid."""
    cost = {c.trace_name: predicted_seconds(c, grid, pace, partners) for c in cells}
    total = sum(cost.values())
    remaining = list(cells)
    left: dict[str, str] = {}
    while total > budget_s:
        by_dtype: dict[tuple[str, str], float] = defaultdict(float)  # (device, dtype) -> predicted seconds
        lengths: dict[tuple[str, str], set[int]] = defaultdict(set)
        for c in remaining:
            by_dtype[(c.device, c.dtype)] += cost[c.trace_name]
            lengths[(c.device, c.dtype)].add(c.seq_len)
        droppable = [key for key in by_dtype if len(lengths[key]) > 1 or emulated(*key, cpu_flags)]
        if not droppable:
            break
        # an emulated dtype's lengths go first, then the costliest dtype's
        device, dtype = max(droppable, key=lambda key: (emulated(*key, cpu_flags), by_dtype[key]))
        n = max(lengths[(device, dtype)])
        dropped = [c for c in remaining if (c.device, c.dtype, c.seq_len) == (device, dtype, n)]
        seconds = sum(cost[c.trace_name] for c in dropped)
        note = emulation_note(dtype, cpu_flags) if device == "cpu" else ""
        reason = (
            f"left out to fit the {budget_s / 60:g}-minute budget: the {device} {dtype} cells at n={n} are "
            f"predicted to take {seconds:.0f} s here{note}; --time-budget-min 0 runs them"
        )
        for c in dropped:
            left[c.trace_name] = reason
        remaining = [c for c in remaining if c.trace_name not in left]
        total -= seconds
    return left
