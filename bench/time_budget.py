"""Fitting a profile into its time budget on the CPU at hand: which cells to leave out (an emulated dtype's
longest lengths, then whole comparisons by priority, then a native dtype's longest lengths), chosen from the
cost model and this CPU's measured pace, each with the reason written down."""

from __future__ import annotations

from collections import defaultdict

from bench.grid import Cell, Grid
from bench.pace import Pace
from bench.sharding import predicted_seconds
from infra.comparisons import COMPARISONS, comparisons_of
from infra.machine import NATIVE_NEEDS, native_dtypes

LENGTH_PRIORITY = min(c.priority for c in COMPARISONS)  # the length series: kept until step 3


def emulated(device: str, dtype: str, cpu_flags: list[str]) -> bool:
    return device == "cpu" and dtype in ("bfloat16", "float16") and not native_dtypes(cpu_flags)[dtype]


def emulation_note(dtype: str, cpu_flags: list[str]) -> str:
    return f" ({dtype} emulated here: no {NATIVE_NEEDS[dtype]})" if emulated("cpu", dtype, cpu_flags) else ""


UNCOMPARED = 99  # the priority of a cell no declared comparison of the run reads


def importance(cells: list[Cell]) -> dict[str, int]:
    """trace_name -> the priority of the most important declared comparison the cell takes part in here, as
    the cell judged or as its base (infra/comparisons.py: lower is more important); UNCOMPARED where none."""
    present = {c.id for c in cells}
    out = {c.trace_name: UNCOMPARED for c in cells}
    by_id = {c.id: c for c in cells}
    for cell in cells:
        for comparison, base in comparisons_of(cell):
            if base.id in present:
                for side in (cell, by_id[base.id]):
                    out[side.trace_name] = min(out[side.trace_name], comparison.priority)
    return out


def leave_out(
    cells: list[Cell],
    grid: Grid,
    pace: Pace | None,
    budget_s: float,
    cpu_flags: list[str],
    partners: dict[str, Cell] | None = None,
) -> dict[str, str]:
    """trace_name -> reason, for the cells left out so that the predicted time fits `budget_s`. While it does
    not fit:
    1. a dtype the CPU emulates loses its longest length (in every group): its numbers say least, and at one
       length it can cost more than the whole float32 grid;
    2. then whole comparisons go, the least important first (infra/comparisons.py's priorities; cells no
       comparison reads before them), each from its longest length down, a base with the cells it is the base
       of; the length series (priority 1), the question the run is made for, never goes here;
    3. then the dtype whose cells cost most loses its longest length (in every group), so each native dtype
       keeps its shortest lengths."""
    cost = {c.trace_name: predicted_seconds(c, grid, pace, partners) for c in cells}
    remaining = list(cells)
    left: dict[str, str] = {}

    def drop(dropped: list[Cell], reason: str) -> None:
        nonlocal remaining
        for c in dropped:
            left[c.trace_name] = reason
        remaining = [c for c in remaining if c.trace_name not in left]

    def total() -> float:
        return sum(cost[c.trace_name] for c in remaining)

    def by_length(native_too: bool) -> bool:
        """Steps 1 and 3: one dtype's longest length; False where none can go."""
        by_dtype: dict[tuple[str, str], float] = defaultdict(float)  # (device, dtype) -> predicted seconds
        lengths: dict[tuple[str, str], set[int]] = defaultdict(set)
        for c in remaining:
            by_dtype[(c.device, c.dtype)] += cost[c.trace_name]
            lengths[(c.device, c.dtype)].add(c.seq_len)
        droppable = [key for key in by_dtype if emulated(*key, cpu_flags) or (native_too and len(lengths[key]) > 1)]
        if not droppable:
            return False
        # an emulated dtype's lengths go first, then the costliest dtype's
        device, dtype = max(droppable, key=lambda key: (emulated(*key, cpu_flags), by_dtype[key]))
        n = max(lengths[(device, dtype)])
        dropped = [c for c in remaining if (c.device, c.dtype, c.seq_len) == (device, dtype, n)]
        seconds = sum(cost[c.trace_name] for c in dropped)
        note = emulation_note(dtype, cpu_flags) if device == "cpu" else ""
        drop(
            dropped,
            f"left out to fit the {budget_s / 60:g}-minute budget: the {device} {dtype} cells at n={n} are "
            f"predicted to take {seconds:.0f} s here{note}; --time-budget-min 0 runs them",
        )
        return True

    while total() > budget_s and by_length(native_too=False):
        pass
    while total() > budget_s:
        ranks = importance(remaining)
        levels = {rank for rank in ranks.values() if rank > LENGTH_PRIORITY}
        if not levels:
            break
        level = max(levels)
        group = [c for c in remaining if ranks[c.trace_name] == level]
        n = max(c.seq_len for c in group)
        dropped = [c for c in group if c.seq_len == n]
        seconds = sum(cost[c.trace_name] for c in dropped)
        names = sorted({c.name for c in COMPARISONS if c.priority == level}) or ["no comparison the run makes"]
        drop(
            dropped,
            f"left out to fit the {budget_s / 60:g}-minute budget: {len(dropped)} cells at n={n} of the least "
            f"important comparisons left ({', '.join(names)}; priority {level}) are predicted to take "
            f"{seconds:.0f} s here; --time-budget-min 0 runs them",
        )
    while total() > budget_s and by_length(native_too=True):
        pass
    return left
