"""Report sections from the profiler traces: where a step's time goes, where attention overtakes the
feed-forward, and whether the traces agree with the benchmark (kernel time against device time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.fits import crossover_length
from analysis.markdown import md
from model.cost import KORTHIKANTI_CROSSOVER_D_HEADS, layer_forward_flops, saved_memory_crossover

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
    for (device, impl, dtype, shape), group in breakdown.groupby(["device", "impl", "dtype", "shape"]):
        wide = group.pivot_table(index="seq_len", columns="category", values="self_s").sort_index()
        attn = wide.get("attention_scores", 0) + wide.get("softmax", 0)
        cross = crossover_length(wide.index.values, np.asarray(attn), np.asarray(wide["feed_forward"]))
        where = (
            "not within the traced lengths"
            if cross is None
            else f"from the shortest traced length on (n = {cross:.0f})"
            if cross == wide.index.min()
            else f"at n ≈ {cross:.0f}"
        )
        lines.append(
            f"- {device} {impl} {dtype} ({shape}), training step: attention overtakes the feed-forward "
            f"{where} (traced lengths {wide.index.tolist()})."
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
