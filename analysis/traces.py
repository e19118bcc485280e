"""Profiler traces -> where the time goes: self time per op category, per cell.

Reads the *.pt.trace.json files that bench's --profile-dir writes (one folder per cell, named by
the cell id). Self time is an op's duration minus that of the ops nested in it on the same thread,
so the categories add up to the time the ops took, without double counting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError

CATEGORIES = (
    "attention_scores",
    "softmax",
    "feed_forward_gemm",
    "projection_gemm",
    "layernorm",
    "elementwise",
    "other",
)
SCORE_OPS = (
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::_flash_attention",
    "aten::_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
)
GEMM_OPS = ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul")
SOFTMAX_OPS = ("aten::_softmax", "aten::_softmax_backward_data", "aten::softmax", "aten::_safe_softmax")
NORM_OPS = ("aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::layer_norm")
ELEMENTWISE_WORDS = (
    "add",
    "mul",
    "div",
    "sub",
    "relu",
    "gelu",
    "threshold",
    "dropout",
    "bernoulli",
    "copy",
    "fill",
    "zero",
    "masked",
    "where",
    "neg",
    "exp",
    "sqrt",
    "clone",
    "contiguous",
    "to",
    "sum",
)


def categorize(name: str, input_dims: list | None, d_ff: int) -> str:
    if name in SCORE_OPS or "attention" in name and "flash" in name:
        return "attention_scores"
    if name in SOFTMAX_OPS:
        return "softmax"
    if name in GEMM_OPS:
        dims = [d for shape in (input_dims or []) if isinstance(shape, list) for d in shape]
        return "feed_forward_gemm" if d_ff in dims else "projection_gemm"
    if name in NORM_OPS:
        return "layernorm"
    base = name.removeprefix("aten::").strip("_").split("_")[0]
    return "elementwise" if base in ELEMENTWISE_WORDS else "other"


def find_traces(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise AnalysisError(f"{folder}: no such traces folder")
    traces = sorted(folder.rglob("*.pt.trace.json"))
    if not traces:
        raise AnalysisError(f"{folder}: no *.pt.trace.json traces inside (run python -m bench without --no-traces)")
    return traces


def self_times(events: list[dict]) -> list[tuple[dict, float]]:
    """(event, self time in us) for each complete CPU op event."""
    ops = sorted(
        (e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"),
        key=lambda e: (e["pid"], e["tid"], e["ts"], -e["dur"]),
    )
    out, stack = [], []  # stack of [event, child time]
    for e in ops:
        while stack and (stack[-1][0]["tid"] != e["tid"] or stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]):
            parent, child = stack.pop()
            out.append((parent, parent["dur"] - child))
        if stack:
            stack[-1][1] += e["dur"]
        stack.append([e, 0.0])
    out += [(parent, parent["dur"] - child) for parent, child in reversed(stack)]
    return out


def trace_breakdown(path: Path, d_ff: int) -> pd.DataFrame:
    """Self seconds and share per category for one trace, per profiled step."""
    try:
        events = json.loads(path.read_text())["traceEvents"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as err:
        raise AnalysisError(f"{path}: not a readable profiler trace ({err})") from None
    steps = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith("ProfilerStep#")]
    n_steps = max(1, len(steps))
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event, self_us in self_times(events):
        totals[categorize(event["name"], event.get("args", {}).get("Input Dims"), d_ff)] += self_us
    step_s = sum(e["dur"] for e in steps) / n_steps / 1e6 if steps else float("nan")
    total = sum(totals.values())
    return pd.DataFrame(
        [
            {"category": c, "self_s": t / n_steps / 1e6, "share": t / total if total else 0.0, "step_s": step_s}
            for c, t in totals.items()
        ]
    )


def load_breakdowns(folder: Path, d_ff: int) -> pd.DataFrame:
    """One row per (cell, category); the trace's folder is named GROUP.CELL_ID (bench's trace_name)."""
    frames = []
    for path in find_traces(folder):
        frame = trace_breakdown(path, d_ff)
        frame.insert(0, "trace_name", path.parent.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
