"""Shards of a grid for many machines: deterministic, disjoint, together the whole grid, and balanced
by each cell's predicted cost (longest first onto the least loaded shard), not by count."""

from __future__ import annotations

import re

from bench.grid import Cell, Grid, GridError
from model import cost

SHARD = re.compile(r"^(\d+)/(\d+)$")
# Rough sustained FLOP/s (the 2-core AMD EPYC's default run: MFU ~0.75 of 0.22 TFLOP/s in float32, ~0.4 of
# 0.88 in bfloat16; an H100 at a third of its peak), to rank cells by cost: the balance needs ratios.
NOMINAL_FLOPS = {"cpu": {"float32": 1.7e11, "bfloat16": 3.5e11, "float16": 5e9},
                 "cuda": {"float32": 3e13, "bfloat16": 3e14, "float16": 3e14}}  # fmt: skip
MIN_STEP_S = {"cpu": 2e-4, "cuda": 1e-4}  # launch and dispatch overhead of a step
COMPILE_S = 30.0  # one torch.compile of a layer
SETUP_STEPS = 8  # check, FLOP count, observed step, memory, warm-up
OVERHEAD_S = 0.1  # building a cell's workload and its bookkeeping, per pass (the first H100 run: ~0.1 s)


def parse_shard(text: str) -> tuple[int, int]:
    match = SHARD.match(text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise GridError(f"--shard {text!r} is not accepted; write K/N with 1 <= K <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def step_flops(cell: Cell, grid: Grid) -> int:
    s = grid.shapes[cell.shape]
    b, n, d, f = s.batch, cell.seq_len, s.d_model, s.d_ff
    if cell.group == "attention":
        forward = 2 * b * n * 4 * d * d + cost.attention_score_flops(b, n, d)
    elif cell.group == "layer":
        forward = cost.layer_forward_flops(b, n, d, f).total
    else:
        forward = cost.model_forward_flops(b, n, d, f, s.model_layers, None, s.model_vocab).total
    return forward * (3 if cell.pass_ == "train" else 1)


def predicted_seconds(cell: Cell, grid: Grid) -> float:
    """Wall time of a cell over all its passes, as the timing budget will spend it."""
    if cell.group == "calibration":
        return 1.0
    device = "cuda" if cell.device.startswith("cuda") else "cpu"
    step = max(step_flops(cell, grid) / NOMINAL_FLOPS[device][cell.dtype], MIN_STEP_S[device])
    t = grid.timing
    rounds = max(t.min_rounds, min(t.max_rounds, int(t.budget_s / step)))
    per_pass = OVERHEAD_S + step * (rounds * 2 + t.warmup_rounds + 1)
    compile_s = COMPILE_S if cell.compile == "inductor" else 0.0  # later passes load it from inductor's cache
    return step * SETUP_STEPS + compile_s + grid.repeats * per_pass


def assign_shards(cells: list[Cell], grid: Grid, n_shards: int) -> dict[str, int]:
    """Cell id -> shard number 1..n_shards. Calibration cells are in every shard (each machine needs its
    own matmul peak), so they are not assigned."""
    loads = [0.0] * n_shards
    owner: dict[str, int] = {}
    work = [c for c in cells if c.group != "calibration"]
    for cell in sorted(work, key=lambda c: (-predicted_seconds(c, grid), c.trace_name)):
        k = min(range(n_shards), key=lambda i: (loads[i], i))
        loads[k] += predicted_seconds(cell, grid)
        owner[cell.trace_name] = k + 1
    return owner


def in_shard(cell: Cell, owner: dict[str, int], shard: int) -> bool:
    return cell.group == "calibration" or owner[cell.trace_name] == shard
