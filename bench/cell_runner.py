"""Runs one grid cell: check it, count it, measure its memory, then time it with pytest-benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.calibration import peak_matmul_flops
from bench.flops import count_flops
from bench.grid import Cell, Grid
from bench.memory import peak_bytes
from bench.profiling import capture_trace
from bench.timing import device_synchronizer, rounds_for_budget, synchronized, time_once
from bench.workloads import TOLERANCE, WORKLOADS


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def run_cell(benchmark, cell: Cell, grid: Grid, profile_dir: Path | None = None) -> None:
    device, dtype = cell.device, getattr(torch, cell.dtype)
    benchmark.group = f"{cell.group} {cell.device} {cell.dtype} n={cell.seq_len}"
    try:
        workload = WORKLOADS[cell.group](cell, grid.shape, device, dtype)
        error = workload.check()
        if not error <= TOLERANCE[cell.dtype]:  # also catches NaN
            pytest.fail(f"numerical check failed at {cell.id}: relative error {error:.3g} against the float32 "
                        f"reference exceeds {TOLERANCE[cell.dtype]:g}", pytrace=False)  # fmt: skip
        counted, added = count_flops(workload.step)
        memory = peak_bytes(workload.step, device)
        sync = device_synchronizer(device)
        call = synchronized(workload.step, sync)
        call()  # warm-up outside the timed rounds: first-call allocations and kernel selection
        t = grid.timing
        rounds = rounds_for_budget(time_once(call, sync), t.budget_s, t.min_rounds, t.max_rounds)
        benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=t.warmup_rounds)
        if profile_dir is not None:
            capture_trace(workload.step, sync, profile_dir, cell.trace_name, device)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        pytest.skip(f"oom: {str(err).splitlines()[0][:200]}")
    median = benchmark.stats.stats.median
    peak = peak_matmul_flops(device, cell.dtype)
    backend = workload.backend()
    flops = workload.flops(backend)
    achieved = flops / median
    benchmark.extra_info.update({
        **cell.params(),
        "id": cell.id,
        "trace_name": cell.trace_name if profile_dir is not None else None,
        "flops_analytic": flops,
        "flops_counted": counted,
        "flops_counted_with_added_formulas": added,
        "flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "mfu": achieved / peak,
        "peak_mem_bytes": memory,
        "predicted_mem_bytes": workload.predicted_bytes,
        "sdpa_backend": backend,
        "tokens_per_s": workload.tokens / median,
        "check_relative_error": error,
        "check_passed": True,
        "rounds": rounds,
    })  # fmt: skip
