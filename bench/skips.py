"""Why a cell cannot run here, decided before it runs, so nothing is half-measured."""

from __future__ import annotations

import psutil
import torch

from bench.grid import Cell, Shape
from bench.workloads import predicted_peak_bytes
from model.machine import cpu_model_and_flags

FAST_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


def memory_budget(device: str, budget_gb: float | None) -> int:
    """Bytes a cell may use: the given budget, else 90% of free GPU memory or 80% of available RAM."""
    if budget_gb is not None:
        return int(budget_gb * 2**30)
    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0] * 0.9)
    return int(psutil.virtual_memory().available * 0.8)


def skip_reason(
    cell: Cell,
    shape: Shape,
    budget_bytes: int,
    allow_slow_fp16: bool = False,
    cuda_available: bool | None = None,
    cpu_flags: list[str] | None = None,
) -> str | None:
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cell.device == "cuda" and not cuda_available:
        return "no cuda: torch sees no CUDA device on this machine"
    flags = cpu_model_and_flags()[1] if cpu_flags is None else cpu_flags
    if cell.device == "cpu" and cell.dtype == "float16" and not allow_slow_fp16:
        if not any(flag in flags for flag in FAST_FP16_FLAGS):
            return ("unsupported: float16 has no fast kernel on this CPU (no avx512_fp16/amx_fp16; about 1-3 GFLOP/s); "
                    "pass --allow-slow-fp16 to run it")  # fmt: skip
    predicted = predicted_peak_bytes(cell, shape)
    if predicted > budget_bytes:
        return f"would not fit: predicted {predicted} bytes > budget {budget_bytes} bytes (set with --mem-budget-gb)"
    return None
