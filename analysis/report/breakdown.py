"""Report sections from the profiler traces: where a step's time goes, where attention overtakes the
feed-forward, and whether the traces agree with the benchmark (kernel time against device time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.fits import crossover_length
from analysis.markdown import md
from analysis.traces import OP_CLASSES
from model.cost import KORTHIKANTI_CROSSOVER_D_HEADS, layer_class_flops, layer_forward_flops, saved_memory_crossover

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

AGREEMENT = {"cuda": 0.10, "cpu": 0.25}  # kernel sum vs device time; op self time vs host time (profiler overhead)


def crossover_section(ctx: ReportContext) -> list[str]:
    breakdown, cells = ctx.breakdown, ctx.cells
    lines = ["## Where attention overtakes the feed-forward", ""]
    for shape, row in cells.groupby("shape")[["d_model", "d_ff"]].first().iterrows():
        d, f = int(row["d_model"]), int(row["d_ff"])
        one = layer_forward_flops(1, 1, d, f)  # both terms are linear in b; scores grow as n^2, the FFN as n
        lines.append(
            f"- By FLOPs (cost model), shape {shape}: the score matmuls (4·b·n²·d) pass the feed-forward's "
            f"(4·b·n·d·d_ff) at n = {1 / (one.attention_scores / (one.linear - 8 * d * d)):.0f} (= d_ff)."
        )
        layers = cells[(cells["shape"] == shape) & (cells["group"] != "attention")]
        for h in sorted(set((layers if len(layers) else cells[cells["shape"] == shape])["heads"].astype(int))):
            n_mem, d_head = saved_memory_crossover(d, h, f), d // h
            lines.append(
                f"- By memory (cost model), shape {shape}, {h} heads: what a layer keeps for backward with the "
                f"explicit softmax, its (b, h, n, n) probabilities pass its linear activations at n = {n_mem:.0f} "
                f"({n_mem / d_head:.1f}·d_head); Korthikanti et al.'s accounting (16-bit, dropout masks) puts it at "
                f"{KORTHIKANTI_CROSSOVER_D_HEADS:.1f}·d_head = {KORTHIKANTI_CROSSOVER_D_HEADS * d_head:.0f}."
            )
    if breakdown is None or breakdown.empty:
        return lines + ["", "No traces in this run, so no measured crossover.", ""]
    lines += [
        "",
        "Measured, from the traces: attention is the SDPA or score/softmax ops with their backward; the "
        "feed-forward is the whole block, linear, activation, linear: its GEMMs (told apart from the "
        "projections by the weight's shape), biases and the activation on its (b, n, d_ff) hidden, forward "
        "and backward. On CUDA each counts the kernel time it launched, on CPU its own op time.",
    ]
    for r in traced_crossovers(breakdown):
        cross, lengths = r["crossover"], r["lengths"]
        where = (
            "not within the traced lengths"
            if cross is None
            else f"from the shortest traced length on (n = {cross:.0f})"
            if cross == min(lengths)
            else f"at n ≈ {cross:.0f}"
        )
        lines.append(
            f"- {r['device']} {r['impl']} {r['dtype']} ({r['shape']}), training step: attention overtakes the "
            f"feed-forward {where} (traced lengths {lengths})."
        )
    return lines + [""]


def traced_crossovers(breakdown: pd.DataFrame | None) -> list[dict]:
    """Per traced implementation: the length where attention's traced time passes the feed-forward's (None
    where it does not within the traced lengths), and the traced lengths."""
    if breakdown is None or breakdown.empty:
        return []
    out = []
    for (device, impl, dtype, shape), group in breakdown.groupby(["device", "impl", "dtype", "shape"]):
        wide = group.pivot_table(index="seq_len", columns="category", values="self_s").sort_index()
        attn = wide.get("attention_scores", 0) + wide.get("softmax", 0)
        cross = crossover_length(wide.index.values, np.asarray(attn), np.asarray(wide["feed_forward"]))
        lengths = [int(n) for n in wide.index]
        out.append(
            {"device": device, "impl": impl, "dtype": dtype, "shape": shape, "crossover": cross} | {"lengths": lengths}
        )
    return out


CLASS_WORDS = {
    "contraction": "tensor contractions (matmuls, batched and fused attention)",
    "normalisation": "softmax and LayerNorm",
    "rest": "element-wise and the rest",
}


def flops_vs_time_table(ctx: ReportContext) -> list[tuple[dict, pd.DataFrame]]:
    """Per traced implementation, its training step at the longest traced length: the share of FLOPs (the cost
    model's operator classes) beside the share of time (the trace's ops by class), each summing to 100."""
    if ctx.step_facts is None or "contraction_s" not in ctx.step_facts:
        return []
    facts = ctx.step_facts.merge(ctx.cells[["id", "batch", "d_model", "d_ff", "group", "attention_kernel"]], on="id")
    facts = facts[(facts["mode"] == "train") & (facts["group"] == "layer")]
    out = []
    for _, group in facts.groupby(["device", "impl", "dtype", "shape"]):
        r = group.sort_values("seq_len").iloc[-1].to_dict()
        flops = layer_class_flops(
            int(r["batch"]), int(r["seq_len"]), int(r["d_model"]), int(r["heads"]), int(r["d_ff"]), train=True
        )
        seconds = {name: float(r[f"{name}_s"]) for name in OP_CLASSES}
        table = pd.DataFrame(
            {
                "operator class": [CLASS_WORDS[name] for name in OP_CLASSES],
                "% of FLOPs": [100 * flops[name] / sum(flops.values()) for name in OP_CLASSES],
                "% of time": [100 * seconds[name] / sum(seconds.values()) for name in OP_CLASSES],
            }
        )
        out.append((r, table))
    return out


def flops_vs_time_section(ctx: ReportContext) -> list[str]:
    tables = flops_vs_time_table(ctx)
    if not tables:
        return []
    lines = ["## Where a training step's time goes: FLOPs against time by operator class", ""]
    summary = []
    for r, table in tables:
        contraction, normalisation = table.iloc[0], table.iloc[1]
        summary.append(
            f"{r['impl']} ({r['device']} {r['dtype']}, n={r['seq_len']}, kernel {r['attention_kernel']}): "
            f"contractions {contraction['% of FLOPs']:.1f}% "
            f"of the FLOPs and {contraction['% of time']:.0f}% of the time; softmax and LayerNorm "
            f"{normalisation['% of FLOPs']:.2f}% of the FLOPs and {normalisation['% of time']:.0f}% of the time"
        )
    lines += [
        "A layer's training step at the longest traced length, as Ivanov et al. tabulate BERT's (contractions "
        "99.8% of its FLOPs and 61% of its time; softmax and LayerNorm 0.17% and 25.5%): " + "; ".join(summary) + ".",
        "",
    ]
    for r, table in tables:
        lines += [f"{r['impl']}, {r['device']} {r['dtype']}, n={r['seq_len']}, {r['heads']} heads:", ""]
        lines += [md(table, ".2f"), ""]
    lines.append(
        "FLOPs from the cost model's operator classes (model/cost.py: layer_class_flops; the element-wise and "
        "normalisation counts are per element, stated there); time from the trace, each op's own time by its "
        "name (analysis/traces.py: op_class). A fused attention kernel's softmax runs inside it and is counted "
        "with the contractions."
    )
    return lines + [""]


def agreement_section(ctx: ReportContext) -> list[str]:
    """Like with like: on CUDA the kernel time per profiled step against the cell's device time; on CPU
    the ops' own time per step against it (the device time is the host latency there)."""
    if ctx.step_facts is None:
        return []
    facts = ctx.step_facts
    data = facts.copy()
    cuda = data["device"] == "cuda"
    data["trace_s"] = np.where(cuda, data["kernel_s"], data["attributed_s"])
    data["trace_over_benchmark"] = data["trace_s"] / data["median_s"]
    data["tolerance"] = data["device"].map(AGREEMENT)
    inside = int(((data["trace_over_benchmark"] - 1).abs() <= data["tolerance"]).sum())
    lines = [
        "## Traces vs the benchmark",
        "",
        f"Per profiled step, against the cell's device-time median: {inside} of {len(data)} traced cells agree "
        "within their device's tolerance (CUDA: kernel time, ±10%; CPU: the ops' own time, ±25%, since the "
        "profiler adds overhead to every op). torch-tb-profiler splits each step into kernel time, CPU "
        "execution and other, and measures GPU utilisation:",
        "",
    ]
    cols = [
        "id",
        "device",
        "median_s",
        "trace_s",
        "trace_over_benchmark",
        "step_s",
        "kernel_s",
        "cpu_exec_s",
        "other_s",
        "gpu_utilization",
    ]
    return lines + [md(data[cols].sort_values("id"), ".4g"), ""]
