"""The report's section on the roofs measured in the run and each attention cell's regime against them
(analysis/roofline.py states the rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.markdown import md
from analysis.roofline import OVERHEAD_GROWTH, bandwidth_points

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

GB = 1e9


def _size(nbytes: float) -> str:
    return f"{nbytes / (1 << 20):.0f} MiB" if nbytes >= 1 << 20 else f"{nbytes / (1 << 10):.0f} KiB"


def caches_line(facts: dict) -> str:
    sizes, instances = facts.get("cpu_cache_bytes") or {}, facts.get("cpu_cache_instances") or {}
    if facts.get("gpu_l2_bytes"):
        return f"GPU L2 {_size(facts['gpu_l2_bytes'])}"
    if not sizes:
        return "cache sizes not recorded"
    return ", ".join(f"{name} {_size(size)} x{instances.get(name, 1)}" for name, size in sizes.items())


def roofs_section(ctx: ReportContext) -> list[str]:
    points, table = bandwidth_points(ctx.facts), ctx.regimes
    lines = ["## Measured roofs, and each cell's regime", ""]
    if points.empty:
        return [*lines, "This run predates the bandwidth probe (bench/bandwidth.py): no roofs, no regimes.", ""]
    peaks = ctx.matmul_peaks
    roofs = ctx.bandwidth_roofs
    peak_words = "; ".join(
        f"{p.device} {p.dtype} {p.peak_flops_per_s / GB:.0f} GFLOP/s (median {p.median_flops_per_s / GB:.0f} "
        f"[{p.low_flops_per_s / GB:.0f}, {p.high_flops_per_s / GB:.0f}])"
        for p in peaks.itertuples()
    )
    roof_words = "; ".join(
        f"{r.device} {r.level} {r.median_bytes_per_s / GB:.0f} GB/s [{r.low_bytes_per_s / GB:.0f}, "
        f"{r.high_bytes_per_s / GB:.0f}] at {_size(r.working_set_bytes)}"
        for r in roofs.itertuples()
    )
    lines += [
        f"Measured in this run, not taken from a datasheet. Matmul peak: {peak_words}. Bandwidth, a STREAM triad's "
        f"best median per memory level (95% interval): {roof_words}. Caches: {caches_line(ctx.facts)}."
        + (
            f" Of {len(table)} attention cells: "
            + ", ".join(f"{word} {n}" for word, n in table["regime"].value_counts().items())
            + " (figure: roofline.png)."
            if not table.empty
            else ""
        ),
        "",
    ]
    if not table.empty:
        lines.append(
            "The rule (analysis/roofline.py), fixed before the run: overhead-bound where the time grows by less "
            f"than {OVERHEAD_GROWTH:.0%} of the work's growth to the next length; otherwise a roofline per phase "
            "(model/cost.py's linear and score phases: FLOPs over the matmul peak, bytes over the bandwidth of the "
            "level that holds the cell's peak memory), bandwidth-bound where the phases held by bandwidth take half "
            "the attainable time or more, at the ridge where the word changes inside the bandwidth's 95% interval. "
            "`of_attainable` is that time over the measured one.",
        )
        lines.append("")
        shown = table[table["regime"] != "compute-bound"].sort_values(["regime", "device", "dtype", "impl", "seq_len"])
        for r in shown.head(12).to_dict("records"):
            scores = (
                f"score phase {r['score_intensity']:.1f} FLOP/byte"
                if r["score_intensity"] != float("inf")
                else "no score traffic (fused kernel)"
            )
            lines.append(
                f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, {r['heads']} heads, n={r['seq_len']}: "
                f"{r['regime']}; {scores}, against a ridge of {r['ridge']:.1f} FLOP/byte in "
                f"{r['working_set_level']}; {r['of_attainable']:.0%} of its attainable rate."
            )
        if len(shown) > 12:
            lines.append(f"- and {len(shown) - 12} more in the table below.")
    else:
        lines.append("No dense attention cell to place under the roofs.")
    points = points.assign(GB_per_s=points["median_bytes_per_s"] / GB, low=points["low_bytes_per_s"] / GB)
    points = points.assign(high=points["high_bytes_per_s"] / GB, working_set=points["working_set_bytes"].map(_size))
    details = [
        "",
        "<details><summary>The bandwidth probe and every cell's regime</summary>",
        "",
        md(points[["device", "working_set", "level", "triads_per_sample", "GB_per_s", "low", "high"]], ".1f"),
        "",
    ]
    if not table.empty:
        columns = [
            "device",
            "dtype",
            "impl",
            "mode",
            "heads",
            "seq_len",
            "attention_family",
            "intensity",
            "score_intensity",
            "working_set_level",
            "ridge",
            "bandwidth_share",
            "of_attainable",
            "growth_vs_work",
            "regime",
        ]
        ordered = table.sort_values(["device", "dtype", "impl", "mode", "heads", "seq_len"])
        details += [md(pd.DataFrame(ordered[columns]), ".2f"), ""]
    return lines + details + ["</details>", ""]
