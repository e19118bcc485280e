"""Shards of a grid for many machines: deterministic, disjoint, together the whole grid, and balanced
by each cell's predicted cost (longest first onto the least loaded shard), not by count."""

from __future__ import annotations

import re

from bench.cell import FACTS_PASS
from bench.grid import Cell, Grid, GridError
from bench.implementations import auto_lookup
from bench.pace import Pace
from bench.timing import blocks_for_budget, rounds_for_budget
from bench.workloads import predicted_family, uses_auto, uses_flex
from model import cost
from model.kernel_tuning import BUDGET_S as TUNING_BUDGET_S
from model.kernels import CANDIDATES, EXPLICIT_SOFTMAX

SHARD = re.compile(r"^(\d+)/(\d+)$")
# Rough sustained FLOP/s (the 2-core AMD EPYC's default run: MFU ~0.75 of 0.22 TFLOP/s in float32, ~0.4 of
# 0.88 in bfloat16; an H100 at a third of its peak), to rank cells by cost: the balance needs ratios.
NOMINAL_FLOPS = {
    "cpu": {"float32": 1.7e11, "bfloat16": 3.5e11, "float16": 5e9},
    "cuda": {"float32": 3e13, "bfloat16": 3e14, "float16": 3e14},
}
MIN_STEP_S = {"cpu": 2e-4, "cuda": 1e-4}  # launch and dispatch overhead of a step
# torch.compile of a layer on a 2-core CPU, averaged over a run's compiled cells: the first in a process loads
# the toolchain, later ones reuse it (measured with AVX2 forced on the AVX-512 EPYC: 22.7, 6.4, 6.9, 7.1 s)
COMPILE_S = 12.0
# the flex kernel compiled for a new shape and mask on the 2-core AVX-512 EPYC: 3.3-4.1 s, the process's first 11-21 s
FLEX_COMPILE_S = 5.0
SETUP_STEPS = 8  # check, FLOP count, observed step, memory, warm-up
# Building a cell's workload and its bookkeeping, per pass: about 0.1 s in the first H100 run; about 0.02 s on
# a 2-core CPU (30 cells of the default grid, one timed pass each: 6.2 s in all, 3.7 s of them timed samples,
# the rest its warm-up and check calls), where 0.1 s put a 6-minute grid's prediction near the 13-minute budget.
OVERHEAD_S = {"cpu": 0.02, "cuda": 0.1}


def overhead_s(cell: Cell) -> float:
    return OVERHEAD_S["cuda" if cell.device.startswith("cuda") else "cpu"]


def parse_shard(text: str) -> tuple[int, int]:
    match = SHARD.match(text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise GridError(f"--shard {text!r} is not accepted; write K/N with 1 <= K <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def forward_flops(cell: Cell, grid: Grid) -> cost.Flops:
    """The matmul FLOPs of one forward of the cell, split into attention scores and projections."""
    s = grid.shapes[cell.shape]
    b, n, d, f = s.batch, cell.seq_len, s.d_model, s.d_ff
    if cell.group == "attention":
        return cost.attention_forward_flops(b, n, d)
    if cell.group == "layer":
        return cost.layer_forward_flops(b, n, d, f)
    return cost.model_forward_flops(b, n, d, f, s.model_layers, None, s.model_vocab)


def step_seconds(cell: Cell, grid: Grid, pace: Pace | None = None) -> float:
    """One step of the cell: from this CPU's measured pace per kind of work where there is one, else from
    a nominal FLOP rate."""
    device = "cuda" if cell.device.startswith("cuda") else "cpu"
    flops, train = forward_flops(cell, grid), cell.mode == "train"
    if pace is None or device == "cuda" or (cell.dtype, "linear", train) not in pace.seconds_per_flop:
        return max(flops.total * (3 if train else 1) / NOMINAL_FLOPS[device][cell.dtype], MIN_STEP_S[device])
    kind = "explicit" if predicted_family(cell) in EXPLICIT_SOFTMAX else "fused"
    step = pace.seconds(cell.dtype, "linear", train, flops.linear)
    step += pace.seconds(cell.dtype, kind, train, flops.attention_scores)
    return max(step, MIN_STEP_S[device])


def pass_seconds(
    cell: Cell, grid: Grid, pass_index: int, pace: Pace | None = None, partner: Cell | None = None
) -> float:
    """Wall time of one pass of a cell: its untimed pass (FACTS_PASS) checks, counts, observes and compiles it;
    a timed pass times it (beside `partner`, where it has one in the run)."""
    step = step_seconds(cell, grid, pace)
    t = grid.timing_for(cell)
    if pass_index == FACTS_PASS:
        compile_s = (COMPILE_S if cell.compile == "inductor" else 0.0) + (FLEX_COMPILE_S if uses_flex(cell) else 0.0)
        return overhead_s(cell) + step * SETUP_STEPS + compile_s + tuning_seconds(cell, grid, pace, step)
    if partner is not None:  # ABBA blocks with the partner's step, the two sharing the budget (bench/pairs.py)
        both = step + step_seconds(partner, grid, pace)
        blocks = blocks_for_budget(both, t.budget_s, t.min_rounds, t.max_rounds)
        seconds = overhead_s(cell) + both * (2 * blocks + t.warmup_rounds + 2)
    else:
        rounds = rounds_for_budget(step, t.budget_s, t.min_rounds, t.max_rounds)
        timed = rounds * (2 if cell.device.startswith("cuda") else 1)  # on CPU the device time is the host time
        seconds = overhead_s(cell) + step * (timed + t.warmup_rounds + 1)
    return seconds


def tuning_seconds(cell: Cell, grid: Grid, pace: Pace | None, step: float) -> float:
    """An auto cell on a machine with no measured choice for it tunes first (model/kernel_tuning.py): one call
    of each candidate on the attention alone, and the timed calls of the ones still in the running."""
    if not uses_auto(cell) or auto_lookup(cell)[1] != "fallback":
        return 0.0
    timed = 2 * TUNING_BUDGET_S
    train, scores = cell.mode == "train", forward_flops(cell, grid).attention_scores
    if pace is None or (cell.dtype, "fused", train) not in pace.seconds_per_flop:
        return len(CANDIDATES["cuda" if cell.device.startswith("cuda") else "cpu"]) * step + timed
    fused, explicit = (pace.seconds(cell.dtype, kind, train, scores) for kind in ("fused", "explicit"))
    return fused + 3 * explicit + timed  # on a CPU: flash, then math, blocked and naive (explicit softmaxes)


def predicted_seconds(
    cell: Cell, grid: Grid, pace: Pace | None = None, partners: dict[str, Cell] | None = None
) -> float:
    """Wall time of a cell over all its passes, as the timing budget will spend it (`partners`: the run's
    pairs, bench.pairs.declared_partners)."""
    other = (partners or {}).get(cell.id)
    return sum(pass_seconds(cell, grid, r, pace, other) for r in (FACTS_PASS, *range(grid.passes)))


def assign_shards(cells: list[Cell], grid: Grid, n_shards: int) -> dict[str, int]:
    """Cell id -> shard number 1..n_shards (each shard measures its own matmul peak, a fact of its run)."""
    loads = [0.0] * n_shards
    owner: dict[str, int] = {}
    # priced unpaired: which cells pair depends on the shards (a pair needs both cells in one)
    for cell in sorted(cells, key=lambda c: (-predicted_seconds(c, grid), c.trace_name)):
        k = min(range(n_shards), key=lambda i: (loads[i], i))
        loads[k] += predicted_seconds(cell, grid)
        owner[cell.trace_name] = k + 1
    return owner


def in_shard(cell: Cell, owner: dict[str, int], shard: int) -> bool:
    return owner[cell.trace_name] == shard
