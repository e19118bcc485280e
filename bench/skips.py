"""Why a cell cannot run here, decided before it runs, so nothing is half-measured."""

from __future__ import annotations

import importlib.util

import psutil
import torch

from bench.grid import Cell, Shape
from bench.hf_reference import INSTALL
from bench.workloads import predicted_peak_bytes
from infra.machine import cpu_model_and_flags, native_dtypes
from infra.registry import lookup

ROTATING = ("rope",)  # encodings that rotate q and k inside attention: only our layer has the hook


def memory_budget(device: str, budget_gb: float | None) -> int:
    """Bytes a cell may use: the given budget, else 90% of free GPU memory or 80% of available RAM."""
    if budget_gb is not None:
        return int(budget_gb * 2**30)
    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0] * 0.9)
    return int(psutil.virtual_memory().available * 0.8)


def fast_fp16(flags: list[str]) -> bool:
    return native_dtypes(flags)["float16"]


def unsupported(cell: Cell) -> str | None:
    """A combination the implementation cannot express (not a limit of this machine)."""
    if cell.compile == "cudagraph" and cell.device != "cuda":
        return "unsupported: cudagraph capture needs a CUDA device"
    if cell.compile != "eager" and cell.dropout > 0:
        return "unsupported: compiled cells run with dropout 0 (the check would need a second compilation)"
    # a variant that is the dense cell under another name is named as such, never timed twice or under a false name
    if cell.kv_heads and cell.kv_heads == cell.heads:
        return (
            f"unsupported: kv_heads={cell.kv_heads} equals heads={cell.heads}, the dense cell (kv_heads 0) under "
            "another name; it is measured as that cell"
        )
    if cell.window and cell.window >= cell.seq_len:
        return (
            f"unsupported: window={cell.window} at n={cell.seq_len} sees every key, the dense cell (window 0) under "
            "another name; give a window below n"
        )
    entry = lookup(cell.group, cell.impl)
    title = entry.label
    if cell.group == "layer" and cell.pos_encoding != "none":
        style = entry.positional
        if style == "none":
            return f"unsupported: {title} takes no positional encoding ({cell.pos_encoding})"
        if style != "ours" and cell.pos_encoding in ROTATING:
            return f"unsupported: {title} has no hook to rotate q and k ({cell.pos_encoding})"
    if cell.variant and entry.kernel is None:
        return (
            f"unsupported: {title} takes no grouped key/value heads or window of keys "
            f"({', '.join(f'{k}={v}' for k, v in cell.variant.items())}): only our attention does"
        )
    if cell.varlen != "none" and entry.kernel is None:
        return f"unsupported: {title} takes no variable-length batch ({cell.varlen}): only our attention does"
    if cell.varlen == "nested" and (entry.kernel not in ("sdpa", "math") or cell.variant):
        return (
            f"unsupported: a nested tensor runs through SDPA's kernels with every key and head only "
            f"({title}{''.join(f', {k}={v}' for k, v in cell.variant.items())})"
        )
    if entry.kernel == "flex" and cell.mode == "train" and cell.device == "cpu":
        return "unsupported: FlexAttention has no backward on the CPU (torch raises NotImplementedError)"
    if entry.kernel == "flex" and cell.dropout > 0:
        return "unsupported: FlexAttention has no attention dropout"
    if entry.requires and importlib.util.find_spec(entry.requires) is None:
        return f"needs {entry.requires}: {title} is an optional extra; install it with {INSTALL}"
    return None


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
    if cell.device == "cpu" and cell.dtype == "float16" and not allow_slow_fp16 and not fast_fp16(flags):
        return (
            "unsupported: float16 has no fast kernel on this CPU (no avx512_fp16/amx_fp16; about 1-3 GFLOP/s); "
            "pass --allow-slow-fp16 to run it"
        )
    reason = unsupported(cell)
    if reason:
        return reason
    predicted = predicted_peak_bytes(cell, shape)
    if predicted > budget_bytes:
        return f"would not fit: predicted {predicted} bytes > budget {budget_bytes} bytes (set with --mem-budget-gb)"
    return None
