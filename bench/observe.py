"""What really ran: one profiled step, read for the attention ops and (on CUDA) kernels it launched,
and for its exact CPU peak memory. Labels are observations, never predictions of a dispatcher."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from torch.profiler import ProfilerActivity

from bench.memory import MEASURED, cpu_peak_from_events, flatten, run_twice_profiled
from model.kernels import (
    BLOCKED_SCOPE,
    FLEX_SCOPE,
    FLEX_UNFUSED,
    FUSED_OPS,
    RECOMPUTING,
    SDPA_OPS,
    SOFTMAX_OPS,
    attention_family,
)

COMPILED_GRAPH = "## Call CompiledFxGraph"  # the profiler's event around a graph inductor compiled
NONE_OBSERVED = "none observed"  # the label of a step in which no attention op ran


@dataclass
class Observation:
    attention_kernel: str  # the label: flash, efficient, cudnn, math, naive, fused:OP/INNER, ...
    attention_ops: list[str]  # every attention-related aten op seen in the step, forward and backward
    device_kernels: list[str]  # on CUDA: the GPU kernels those ops launched, longest first
    cpu_peak_bytes: int | None  # exact on CPU (see memory.py); None on CUDA, where the allocator counts
    device_kernel_count: int | None = None  # on CUDA: every GPU kernel the step launched (0: the profiler went blind)


def attention_label(op_names: list[str]) -> str:
    """The attention kernel a step ran, from the aten ops it called, in call order."""
    backends = list(dict.fromkeys(SDPA_OPS[n] for n in op_names if n in SDPA_OPS))
    softmax = any(n in SOFTMAX_OPS for n in op_names)
    inner = "+".join(backends) if backends else ("explicit softmax" if softmax else "")
    fused = [n for n in op_names if n in FUSED_OPS]
    if fused:
        return f"fused:{fused[0].removeprefix('aten::')}" + (f"/{inner}" if inner else "")
    if backends:
        return inner
    if BLOCKED_SCOPE in op_names:
        return "blocked"
    if FLEX_SCOPE in op_names:  # compiled, the kernel runs inside a compiled graph; eager, flex's unfused reference
        return "flex" if any(n.startswith(COMPILED_GRAPH) for n in op_names) else FLEX_UNFUSED
    if softmax:
        return "naive"
    if "aten::bmm" in op_names and any(n.startswith(COMPILED_GRAPH) for n in op_names):
        return "inductor:bmm+generated softmax"  # scores by an aten bmm, softmax in inductor's own kernel
    return NONE_OBSERVED


def recomputes_scores(label: str) -> bool:
    """Whether the kernel keeps no score matrix and computes QK^T again in backward."""
    return attention_family(label) in RECOMPUTING


def _is_attention_op(name: str) -> bool:
    return name in SDPA_OPS or name in FUSED_OPS or "attention" in name or "softmax" in name


def observe(step: Callable[[], object], device: str) -> Observation:
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    prof = run_twice_profiled(step, activities, profile_memory=not cuda)
    window = next(e for e in prof.events() if e.name == MEASURED).time_range
    ops = sorted(
        (e for e in prof.events() if window.start <= e.time_range.start <= window.end and e.name != MEASURED),
        key=lambda e: e.time_range.start,
    )
    names = [e.name for e in ops]
    kernels: Counter[str] = Counter()
    launched = sum(len(event.kernels) for event in ops) if cuda else None
    for event in ops:
        if _is_attention_op(event.name):
            for kernel in event.kernels:
                kernels[kernel.name] += kernel.duration
    return Observation(
        attention_label(names),
        sorted({n.removeprefix("aten::") for n in names if _is_attention_op(n)}),
        [name for name, _ in kernels.most_common(4)],
        None if cuda else cpu_peak_from_events(flatten(prof)),
        launched,
    )
