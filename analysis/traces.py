"""Profiler traces -> where a step's time goes, per component, on the device that did the work.

torch-tb-profiler parses each trace (op tree, kernels tied to the ops that launched them, the step
split into kernel / CPU exec / other, GPU utilisation); this module only assigns each op's own time to
a component: on CUDA the kernel time it launched, on CPU its self time (what its children did not take).

- Linear layers are told apart by their weight operand: aten::linear's second input, or addmm's bias
  and second matrix, compared with the layer's (3d, d), (d, d) [projection] and (d_ff, d), (d, d_ff)
  [feed_forward] weights; never by whether some dimension happens to equal d_ff. Everything a linear
  does (bias add, views) is its component's, and so is everything in an autograd backward node: it
  inherits the component of the forward op it differentiates (linked by the "Sequence number").
- The op map covers every SDPA backend (flash, efficient, cudnn, math; CPU and CUDA) by name.
- Two fixes before tb-profiler 0.4.3 reads a trace of today's torch: steps are counted once (torch
  writes each ProfilerStep as a CPU and a GPU annotation, and tb-profiler counts both, so the GPU copies
  are dropped), and kernel launches are found (kineto now names them "cuda_runtime" and "cuda_driver";
  tb-profiler knows only "runtime", and without it ties every kernel to the trace's root, not its op).
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis.errors import AnalysisError, MissingDependency
from model.kernels import FUSED_OPS, SCORE_OPS, SOFTMAX_OPS

if TYPE_CHECKING:
    from torch_tb_profiler.profiler.data import RunProfileData

# tb-profiler warns about every kernel launch kineto records without an op (the profiler's own
# synchronisations): expected here, and noise in a report's output.
logging.getLogger("pytorch_profiler").setLevel(logging.ERROR)

# The components of a step: every op's own time goes to exactly one, so they add up to the step.
CATEGORIES = (
    "attention_scores",
    "softmax",
    "feed_forward",
    "projection",
    "linear",
    "layernorm",
    "elementwise",
    "other",
)
GEMM_OPS = ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul", "aten::_addmm_activation")
NORM_OPS = ("aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::layer_norm")
# The feed-forward block is linear, activation, linear: its activation (on the (b, n, d_ff) hidden) is part of
# it, not element-wise work of the layer; its backward follows it through the autograd link.
ACTIVATION_OPS = ("aten::relu", "aten::relu_", "aten::gelu", "aten::gelu_", "aten::silu", "aten::threshold")
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
    "clamp",
    "cat",
    "stack",
    "native",
)
BACKWARD_NODE = "autograd::engine::evaluate_function: "


@dataclass(frozen=True)
class LayerShape:
    d_model: int
    d_ff: int

    def weight_category(self, out_features: int, in_features: int) -> str:
        d, f = self.d_model, self.d_ff
        projection = {(3 * d, d), (d, d)}
        feed_forward = {(f, d), (d, f)}
        pair = (out_features, in_features)
        if pair in projection and pair in feed_forward:
            return "linear"  # d_ff equals d or 3d: the weight's shape cannot tell which
        return "projection" if pair in projection else "feed_forward" if pair in feed_forward else "linear"

    def is_hidden(self, input_shapes: list | None) -> bool:
        """Whether an op's first input is the feed-forward's (..., d_ff) hidden (undecidable where d_ff = d)."""
        first = (input_shapes or [[]])[0]
        return self.d_ff != self.d_model and bool(first) and first[-1] == self.d_ff


def read_trace(path: Path) -> dict:
    try:
        raw = path.read_bytes()
        return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as err:
        raise AnalysisError(f"{path}: not a readable profiler trace ({err})") from None


RUNTIME_CATEGORIES = ("cuda_runtime", "cuda_driver")


def tb_profiler():
    """torch-tb-profiler's parser, imported when a trace is read: a machine without it (a GPU image with no
    package index) still writes every part of the report that needs no trace."""
    try:
        from torch_tb_profiler.profiler import data, overall_parser
    except ImportError:
        raise MissingDependency(
            "traces not broken down: torch-tb-profiler is not installed (pip install torch-tb-profiler)"
        ) from None
    return data.RunProfileData, overall_parser.ProfileRole


def parse(trace: dict) -> RunProfileData:
    """tb-profiler's view of a trace, each ProfilerStep counted once and each kernel tied to its op."""
    RunProfileData, _ = tb_profiler()
    events = [
        {**e, "cat": "runtime"} if e.get("cat") in RUNTIME_CATEGORIES else e
        for e in trace.get("traceEvents", [])
        if not (e.get("cat") == "gpu_user_annotation" and str(e.get("name", "")).startswith("ProfilerStep#"))
    ]
    return RunProfileData.from_json("attnbench", None, {**trace, "traceEvents": events})


def _weight(node, ancestors: list) -> tuple[int, int] | None:
    """(out_features, in_features) of the GEMM's weight, read from its operands' structure."""
    for op in [node, *reversed(ancestors)]:
        shapes = op.input_shape or []
        if op.name == "aten::linear" and len(shapes) >= 2 and len(shapes[1]) == 2:
            return shapes[1][0], shapes[1][1]
        if op.name in ("aten::addmm", "aten::_addmm_activation") and len(shapes) >= 3 and len(shapes[2]) == 2:
            return shapes[2][1], shapes[2][0]  # addmm(bias, x, W^T): W^T is (in, out)
        if op.name.startswith(BACKWARD_NODE):
            return None
    return None


def name_category(name: str) -> str | None:
    """The category an op's name alone decides, or None."""
    if name in SCORE_OPS or ("attention" in name and name not in FUSED_OPS and name.startswith("aten::")):
        return "attention_scores"
    if name in SOFTMAX_OPS:
        return "softmax"
    if name in NORM_OPS:
        return "layernorm"
    return None


# Ivanov et al.'s operator classes (Data Movement Is All You Need): what an op does, read from its name alone,
# whatever component it serves. A fused attention kernel (SDPA's flash, efficient, cudnn) does its softmax inside
# its contractions and is counted with them; an autograd node's own time is the rest's.
OP_CLASSES = ("contraction", "normalisation", "rest")


def op_class(name: str) -> str:
    category = name_category(name)
    if category == "attention_scores" or name in (*GEMM_OPS, "aten::addbmm"):
        return "contraction"
    return "normalisation" if category in ("softmax", "layernorm") else "rest"


def _words_category(name: str) -> str:
    base = name.removeprefix("aten::").strip("_").split("_")[0]
    return "elementwise" if base in ELEMENTWISE_WORDS else "other"


def op_categories(data: RunProfileData, trace: dict, shape: LayerShape) -> dict[int, str]:
    """Category of every op node (by id()). An op inherits the category of the component it runs for:
    inside aten::linear (or an addmm) the GEMM's, by the weight's shape; an activation on the (b, n, d_ff)
    hidden the feed-forward's; inside an autograd backward node
    the category of the forward op that node differentiates (linked by its Sequence number). Otherwise
    its name decides (attention, softmax, layer norm, element-wise, other)."""
    sequence = {
        e["args"]["External id"]: e["args"]["Sequence number"]
        for e in trace.get("traceEvents", [])
        if e.get("cat") == "cpu_op" and "Sequence number" in e.get("args", {}) and "External id" in e.get("args", {})
    }
    categories: dict[int, str] = {}
    forward: dict[int, str] = {}  # sequence number -> category of the innermost forward op holding it
    pending = []  # ops inside backward nodes, resolved once every forward op is known

    def visit(node, ancestors: list, inherited: str | None) -> None:
        name = node.name
        backward = name.startswith(BACKWARD_NODE)
        category = name_category(name) or inherited
        if category is None and name in GEMM_OPS:
            weight = _weight(node, ancestors)
            category = shape.weight_category(*weight) if weight else "other"
        if category is None and name in ACTIVATION_OPS and shape.is_hidden(node.input_shape):
            category = "feed_forward"
        if backward:
            pending.append(node)
        categories[id(node)] = category or _words_category(name)
        seq = sequence.get(node.external_id)
        if seq is not None and not backward and not any(a.name.startswith(BACKWARD_NODE) for a in ancestors):
            forward[seq] = categories[id(node)]  # children come later: the innermost op wins
        for child in getattr(node, "children", []):
            visit(child, [*ancestors, node], category)

    for root in data.tid2tree.values():
        visit(root, [], None)
    for node in pending:  # the node and everything under it that its name does not decide
        linked = forward.get(sequence.get(node.external_id))
        for op in _walk(node):
            if linked is not None and name_category(op.name) is None:
                categories[id(op)] = linked
    return categories


def _walk(node):
    yield node
    for child in getattr(node, "children", []):
        yield from _walk(child)


def trace_breakdown(path: Path, shape: LayerShape) -> tuple[pd.DataFrame, dict]:
    """Seconds per step and share per category (kernel time on CUDA, op self time on CPU), and the step's
    facts from tb-profiler: steps, its split (kernel, CPU exec, other, ...) and GPU utilisation."""
    trace = read_trace(path)
    data = parse(trace)
    cuda = bool(data.has_kernel)
    categories = op_categories(data, trace, shape)
    totals = dict.fromkeys(CATEGORIES, 0.0)
    classes = dict.fromkeys(OP_CLASSES, 0.0)
    for root in data.tid2tree.values():
        for node in _walk(root):
            if node is root or type(node).__name__ == "ProfilerStepNode":
                own = node.self_device_duration if cuda else 0.0  # kernels outside any op
                totals["other"] += own
                classes["rest"] += own
                continue
            own = node.self_device_duration if cuda else node.self_host_duration
            totals[categories[id(node)]] += own
            classes[op_class(node.name)] += own
    steps = max(1, len(data.steps_costs))
    total = sum(totals.values())
    frame = pd.DataFrame(
        [{"category": c, "self_s": t / steps / 1e6, "share": t / total if total else 0.0} for c, t in totals.items()]
    )
    costs = data.avg_costs.costs
    ProfileRole = tb_profiler()[1]
    facts = {
        "device": "cuda" if cuda else "cpu",
        "steps": len(data.steps_costs),
        "step_s": costs[ProfileRole.Total] / 1e6,
        "kernel_s": (costs[ProfileRole.Kernel] + costs[ProfileRole.Memcpy] + costs[ProfileRole.Memset]) / 1e6,
        "cpu_exec_s": costs[ProfileRole.CpuOp] / 1e6,
        "other_s": costs[ProfileRole.Other] / 1e6,
        "communication_s": costs[ProfileRole.Communication] / 1e6,
        "gpu_utilization": data.gpu_metrics_parser.gpu_utilization[0] if cuda else None,
        "attributed_s": total / steps / 1e6,
        **{f"{name}_s": seconds / steps / 1e6 for name, seconds in classes.items()},
    }
    return frame, facts


def find_traces(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise AnalysisError(f"{folder}: no such traces folder")
    traces = sorted([*folder.rglob("*.pt.trace.json"), *folder.rglob("*.pt.trace.json.gz")])
    if not traces:
        raise AnalysisError(f"{folder}: no *.pt.trace.json traces inside (run python -m bench without --no-traces)")
    return traces


def load_breakdowns(folder: Path, shapes: dict[str, LayerShape]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (traced cell, category), and one row of step facts per traced cell. The trace's folder
    is named GROUP.CELL_ID (bench's trace_name); `shapes` gives each traced cell's layer shape."""
    frames, facts = [], []
    for path in find_traces(folder):
        name = path.parent.name
        if name not in shapes:
            continue
        frame, step = trace_breakdown(path, shapes[name])
        frame.insert(0, "trace_name", name)
        frames.append(frame)
        facts.append({"trace_name": name, **step})
    if not frames:
        raise AnalysisError(f"{folder}: none of its traces belongs to a cell of this run")
    return pd.concat(frames, ignore_index=True), pd.DataFrame(facts)


PARAMS = ["trace_name", "id", "device", "impl", "dtype", "shape", "seq_len", "heads", "mode", "dropout", "median_s"]


def traced_breakdown(trace_dir: Path, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per traced cell and component: seconds per step and share, joined to the cell's parameters; and
    per traced cell, tb-profiler's step facts joined the same way."""
    traced = cells.dropna(subset=["trace_name"])
    shapes = {r.trace_name: LayerShape(int(r.d_model), int(r.d_ff)) for r in traced.itertuples()}
    breakdown, facts = load_breakdowns(trace_dir, shapes)
    params = traced[PARAMS]
    return breakdown.merge(params, on="trace_name"), facts.drop(columns="device").merge(params, on="trace_name")
