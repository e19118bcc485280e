"""The report's smaller sections, each a function from the run's data to Markdown lines. Sentences that
depend on the device or the data are chosen or computed here from them, never written for one machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.datasheet import datasheet_flops
from analysis.fits import memory_model_error
from analysis.load import UNRECORDED
from analysis.markdown import md
from analysis.stats import in_run_interval, pass_log_medians
from infra.machine import NATIVE_NEEDS

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


MEMORY_TOLERANCE = 0.25  # measured peak within ±25% of the model counts as agreeing


def identity_line(facts: dict) -> str:
    """The CPU's identity, or which of its fields a run from before fingerprints did not record."""
    keys = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping")
    if all(facts.get(k) is None for k in keys):
        return "not recorded (a run from before machine fingerprints; only the name and flags identify it)"
    return ", ".join(str(facts.get(k, "not recorded")) for k in keys)


def reduced_precision_line(facts: dict, peaks: pd.DataFrame) -> str:
    """Whether bf16 and fp16 matmuls run in hardware on this CPU, and, where the run measured their matmul
    peak, how fast its matmul ran against float32's: an emulated dtype's cells measure the emulation."""
    native = facts["cpu_native_dtypes"]
    cpu = peaks[peaks["device"] == "cpu"] if len(peaks) else peaks
    rate = cpu.groupby("dtype")["median_flops_per_s"].median() if len(cpu) else pd.Series()
    parts = []
    for dtype, needs in NATIVE_NEEDS.items():
        word = f"{dtype} native" if native.get(dtype) else f"{dtype} emulated: no {needs}"
        if dtype in rate and "float32" in rate:
            word += f" (matmul {rate[dtype] / 1e9:.0f} GFLOP/s, {rate[dtype] / rate['float32']:.2f}x float32's)"
        parts.append(word)
    return "; ".join(parts)


def machine_section(ctx: ReportContext) -> list[str]:
    facts, cells = ctx.facts, ctx.cells
    numeric = facts.get("numeric_settings", {})
    rows = [
        ("device", ", ".join(sorted(cells["device"].unique()))),
        ("CPU", facts["cpu_model"]),
        ("CPU vendor, family, model, stepping", identity_line(facts)),
        ("CPU kernel flags", ", ".join(facts["cpu_flags"]) or "none of note"),
        ("reduced precision on the CPU", reduced_precision_line(facts, ctx.matmul_peaks)),
        ("cores", facts["cpu_count"]),
        ("torch threads", facts["torch_threads"]),
        ("GPU", facts.get("gpu_name") or "none"),
        ("torch", facts["torch_version"]),
        ("CUDA", facts.get("cuda_version") or "none"),
        ("numeric settings", ", ".join(f"{k}={v}" for k, v in numeric.items()) or "not recorded"),
        ("git commit", facts["git_commit"]),
        ("grid profile", facts["grid_profile"]),
        ("interleaved passes per cell", facts.get("passes", 1)),
        ("shards merged", ", ".join(facts.get("merged_shards", [])) or "none (one run)"),
        (
            "shapes",
            "; ".join(
                f"{n}: b={s['batch']}, d={s['d_model']}, d_ff={s['d_ff']}"
                for n, s in facts["grid"]["shapes"].items()
                if n in set(cells["shape"].dropna())
            ),
        ),
        ("FLOP formulas added to FlopCounterMode", ", ".join(facts["flop_formulas_added"])),
    ]
    plan = facts["grid"].get("plan")
    if plan:  # a data-parallel run: how its ranks were set up
        rows.append(("threads per rank", plan.get("threads_per_rank")))
    return ["## Machine and grid", "", md(pd.DataFrame(rows, columns=["fact", "value"])), ""]


def pairing_line(cells) -> str:
    """Whether the run's comparisons were timed as pairs, counted from what its cells recorded."""
    paired = cells["partner_id"].notna()  # analysis.load fills it for every run, older ones with None
    if not paired.any():
        return (
            "No comparison in this run was timed as a pair: every cell was timed alone (runs before schema 4 "
            "did), so each ratio's interval comes from the two cells' passes, unpaired, and carries the "
            "drift between them."
        )
    blocks = cells.loc[paired, "pair_log_ratios"].map(len)
    half = pd.Series([in_run_interval(list(r)).half_width for r in cells.loc[paired, "pair_log_ratios"]])
    return (
        f"{int(paired.sum())} of {len(cells)} cells were timed as a declared pair (bench/pairs.py): each of "
        "their rounds is an ABBA block with the cell they are compared against (this cell, the partner, the "
        "partner, this cell), so the machine's drift over a block cancels in its ratio. Their ratios' "
        f"intervals come from the blocks (median {int(blocks.median())} per cell over all passes; the "
        "20% trimmed mean of their log ratios with its t interval): at 95% per cell their median half-width is "
        f"{half.median():.1%} (90th percentile {half.quantile(0.9):.1%}). The other comparisons are unpaired, "
        "from passes."
    )


def facts_pass_line(facts: dict) -> str:
    """Whether the timed passes were alike: from schema 5 a cell's check, FLOP count, profiler and memory run
    in an untimed pass of their own; before, in the first timed pass, just before its timing."""
    if facts.get("untimed_facts_pass"):
        return (
            "Each cell's check, FLOP count, observed kernels, memory, compilation and trace were measured in an "
            "untimed pass of their own before the timed passes, so every timed pass does the same work."
        )
    return (
        "This run measured each cell's check, FLOP count, observed kernels, memory and trace in its first timed "
        "pass, just before that pass's timing (runs before schema 5 did): its first pass is not quite like the "
        "others."
    )


def timing_section(ctx: ReportContext) -> list[str]:
    """How the times were taken, from the methods the cells record, and which cells are host-bound."""
    grid = ctx.every_cell
    methods = grid["device_time_method"].value_counts()
    explain = {
        "cpu_clock": "the CPU runs ops synchronously, so device time is the host latency of a call",
        "cuda_graph": "CUDA-graph replay of the step, timed by CUDA events, L2 flushed before each replay",
        "cuda_events": "CUDA events around back-to-back calls, L2 flushed before each (not capturable as a graph)",
    }
    lines = [
        "## How the times were taken",
        "",
        "Every cell has two times: the host latency of one synchronised call (what a Python loop waits for) and "
        "the device time (the device's own work). Medians, ratios, fits, MFU and figures use the device time.",
        "",
    ]
    lines += [f"- {count} cells: {explain.get(method, method)}." for method, count in methods.items()]
    lines += ["", pairing_line(grid), "", facts_pass_line(ctx.facts)]
    bound = grid[grid["host_bound"].astype(bool)]
    threshold = f"{grid['host_bound_threshold'].max():g}x"  # as the run recorded it
    if "cuda" not in set(grid["device"]):
        lines += ["", "No cell here can be host-bound: on the CPU the device's time and the host's are the same."]
    elif bound.empty:
        lines += ["", f"No cell is host-bound (host latency above {threshold} the device time)."]
    else:
        worst = bound.nlargest(5, "host_over_device")[["id", "group", "host_median_s", "median_s", "host_over_device"]]
        lines += [
            "",
            f"{len(bound)} of {len(grid)} cells are host-bound: their host latency is more than {threshold} "
            "their device time, so Python dispatch and kernel launches, not the GPU, set what a user's loop "
            "sees. "
            "Comparing implementations by host latency there would compare their Python overheads; by device "
            "time it compares their kernels. The largest gaps:",
            "",
            md(worst, ".4g"),
        ]
    return lines + [""]


def duration_line(facts: dict) -> list[str]:
    """How long the pytest part took against the cost model's prediction and the profile's budget."""
    if facts.get("elapsed_s") is None or facts.get("predicted_s") is None:
        return []
    budget = facts.get("time_budget_min")
    left = facts.get("cells_left_out_for_time", 0)
    within = f"; budget {budget:g} min, {left} cells left out to fit it" if budget else ""
    pace = " at this CPU's measured pace" if facts.get("pace_seconds_per_flop") else ""
    return [
        f"The pytest part took {facts['elapsed_s'] / 60:.1f} min, against {facts['predicted_s'] / 60:.1f} min "
        f"predicted by the cost model{pace}{within}.",
        "",
    ]


def coverage_section(ctx: ReportContext) -> list[str]:
    cells, not_run, facts = ctx.every_cell, ctx.not_run, ctx.facts
    lines = [
        "## What ran, and what did not",
        "",
        f"{len(cells)} cells ran. Lengths {sorted(cells['seq_len'].unique().tolist())}, heads "
        f"{sorted(cells['heads'].unique().tolist())}, dtypes {sorted(cells['dtype'].unique().tolist())}.",
        "",
    ]
    lines += duration_line(facts or {})
    if len(not_run):
        table = not_run.groupby(["outcome", "group", "reason"]).size().reset_index(name="cells")
        return lines + [f"{len(not_run)} cells did not run:", "", md(table), ""]
    return lines + ["Every generated cell ran.", ""]


def kernels_section(ctx: ReportContext) -> list[str]:
    grid = ctx.every_cell
    variant_axes = ["kv_heads", "window", "varlen"] if len(ctx.variants) else []  # a column each where the run has them
    keys = ["group", "impl", "mode", "dropout", "pos_encoding", "compile", *variant_axes, "device"]
    table = grid.groupby(keys)["attention_kernel"].agg(lambda s: ", ".join(sorted(s.unique()))).reset_index()
    lines = [
        "## Which kernels ran",
        "",
        "Observed, not predicted: each label comes from the aten ops the profiler saw in one step of the cell "
        "(flash, efficient, cudnn and math are SDPA's backends; naive is the explicit softmax; fused:OP is "
        "torch's fused fast path, with what ran inside it).",
        "",
        md(table.rename(columns={"attention_kernel": "attention kernel"})),
    ]
    gpu = grid[grid["attention_device_kernels"].map(bool)]
    if len(gpu):
        names = gpu.groupby(["impl", "mode", "dtype"])["attention_device_kernels"].agg(
            lambda s: ", ".join(sorted({k[:60] for ks in s for k in ks[:2]}))
        )
        lines += ["", "GPU kernels the attention ops launched:", "", md(names.reset_index())]
    return lines + [""]


AUTO_SOURCES = {
    "table": "the committed table (`results/kernel_table.json`), measured on a machine with this one's fingerprint",
    "cache": "this machine's cache, tuned on first use",
    "fallback": "the fallback: nothing measured and no tuning, so SDPA's dispatcher chose",
}


def auto_choice_section(ctx: ReportContext) -> list[str]:
    """Per auto cell, the kernel it was given and where that choice came from."""
    grid = ctx.cells
    head = ["## Where the auto kernel's choices came from", ""]
    auto = grid[grid["auto_source"].notna()]
    if auto.empty:
        return []
    if (auto["auto_source"] == UNRECORDED).all():  # analysis.load.upgrade's word for runs before the field
        return head + ["_Not recorded: this run predates choices that carry their source._", ""]
    counts = auto["auto_source"].value_counts()
    lines = head + [f"- {n} cells from {AUTO_SOURCES.get(source, source)}." for source, n in counts.items()]
    columns = ["group", "mode", "dtype", "dropout", "seq_len", "auto_kernel", "attention_kernel", "auto_source"]
    table = auto[columns].sort_values(columns[:5]).rename(columns={"attention_kernel": "observed"})
    return lines + ["", md(table), ""]


def memory_section(ctx: ReportContext) -> list[str]:
    cells, tolerance = ctx.every_cell, MEMORY_TOLERANCE  # every cell of the run, the variants' included
    errors = memory_model_error(cells)
    unpredicted = int(errors["measured_over_predicted"].isna().sum())  # a user's module: no model for it
    errors = errors.dropna(subset=["measured_over_predicted"])
    ratios = errors.groupby(["device", "group", "impl", "mode"])["measured_over_predicted"]
    summary = ratios.agg(["median", "min", "max"])
    inside = ((errors["measured_over_predicted"] - 1).abs() <= tolerance).sum()
    none = f"; {unpredicted} cells (user implementations) have no prediction" if unpredicted else ""
    return [
        "## Memory: measured peak vs the analytic model",
        "",
        f"Measured peak of one step over `model/cost.py`'s prediction (1.0 = exact): {inside} of {len(errors)} "
        f"cells within ±{tolerance:.0%}{none}.",
        "",
        md(summary.reset_index(), ".2f"),
        "",
    ]


def flops_section(ctx: ReportContext) -> list[str]:
    cells = ctx.every_cell  # every cell of the run, the variants' included
    data = cells.dropna(subset=["flops_analytic"]).copy()
    uncounted = data[data["flops_counted"].isna()]  # flex and nested tensors: the counter cannot dispatch them
    data = data.dropna(subset=["flops_counted"])
    data["counted_over_analytic"] = data["flops_counted"] / data["flops_analytic"]
    off = (data["counted_over_analytic"] - 1).abs()
    with_added = int(data["flops_counted_with_added_formulas"].map(bool).sum())
    used = sorted({name for names in data["flops_counted_with_added_formulas"] for name in names})
    through = f" through a formula we registered ({', '.join(used)})" if used else ""
    if data.empty:
        counted = "FlopCounterMode counted no cell of this run."
    else:
        counted = (
            f"FlopCounterMode's count equals the cost model's within 1% in {int((off <= 0.01).sum())} of "
            f"{len(data)} cells it counted (largest deviation {100 * off.max():.3f}%); {with_added} cells were "
            f"counted{through}."
        )
    if len(uncounted):
        counted += (
            f" It cannot count {len(uncounted)} cells ({', '.join(sorted(set(uncounted['impl'])))}: the counter "
            "dispatches neither flex_attention nor a nested tensor), whose FLOPs are the cost model's alone."
        )
    return ["## FLOPs: counted vs analytic", "", counted, ""]


def mfu_section(ctx: ReportContext) -> list[str]:
    cells, facts = ctx.cells, ctx.facts
    numeric = facts.get("numeric_settings", {})
    tf32 = bool(numeric.get("cuda_matmul_allow_tf32"))
    peaks = cells.groupby(["device", "dtype"])["peak_flops_per_s"].first().reset_index()
    peaks["measured_tflops"] = peaks["peak_flops_per_s"] / 1e12
    peaks["datasheet_tflops"] = [
        (datasheet_flops(facts.get("gpu_name"), r.dtype, tf32) or np.nan) / 1e12 if r.device == "cuda" else np.nan
        for r in peaks.itertuples()
    ]
    mfu = cells.groupby(["group", "device", "shape", "dtype"])["mfu"].agg(["median", "max"]).reset_index()
    if "cuda" in set(peaks["device"]):
        setting = (
            f"float32 was measured with TF32 {'allowed' if tf32 else 'off'} (matmul allow_tf32={tf32}, cuDNN "
            f"allow_tf32={numeric.get('cudnn_allow_tf32')}, float32 matmul precision "
            f"'{numeric.get('float32_matmul_precision')}'). The datasheet figure is the vendor's dense peak, "
            "not a measurement."
        )
    else:
        setting = (
            "TF32 is a CUDA setting: this CPU's float32 matmuls are IEEE float32. No datasheet peak is kept for CPUs."
        )
    return [
        "## Fraction of peak (MFU)",
        "",
        f"Measured matmul peak of this run (per device and dtype, the fastest of its square matmuls, device "
        f"time; every cell's MFU divides by it). {setting}",
        "",
        md(peaks.drop(columns=["peak_flops_per_s"]), ".4g"),
        "",
        "Analytic matmul FLOPs of a step over its device time, over that peak:",
        "",
        md(mfu, ".3f"),
        "",
    ]


def noise_section(ctx: ReportContext) -> list[str]:
    cells = ctx.cells
    grid = cells
    within = grid["iqr_s"] / grid["median_s"]
    lines = [
        "## Noise",
        "",
        f"Within a run, IQR / median of the pooled rounds: median {within.median():.3f}, 90th percentile "
        f"{within.quantile(0.9):.3f}.",
    ]
    repeated = grid[grid["passes"] >= 2]
    if repeated.empty:
        return lines + [
            "",
            "This run has one pass per cell, so its intervals (bootstrap over rounds) see only "
            "within-pass noise; run with --passes 3 for intervals that include the drift between passes.",
            "",
        ]
    cv = repeated["device_passes_s"].map(lambda p: float(np.std(pass_log_medians(p), ddof=1)))
    noisy = repeated.assign(between_pass_cv=cv).nlargest(5, "between_pass_cv")
    noisy = noisy[["id", "passes", "median_s", "between_pass_cv"]]
    return lines + [
        f"Between the {int(repeated['passes'].max())} interleaved passes, the spread of a cell's pass medians "
        f"(standard deviation of their logs, about a CV): median {cv.median():.3f}, 90th percentile "
        f"{cv.quantile(0.9):.3f}. "
        "An interval over the passes (a cell against one timed apart from it) includes that drift; an in-run "
        "pair's interval pools its ABBA blocks over the passes, so it does not include a shift of one pass. "
        "The passes share one process, so neither sees a shift of the whole run (the noise floor of "
        "`python -m bench.noise_floor` measures that, and `python -m analysis compare --noise-floor` adds it "
        "between runs). Noisiest cells:",
        "",
        md(noisy, ".4g"),
        "",
    ]


def do_bench_section(ctx: ReportContext) -> list[str]:
    """Where bench/do_bench_check.py cross-checked the run's device times against triton's do_bench."""
    run_dir = ctx.run_dir
    path = run_dir / "do_bench.json"
    if not path.is_file():
        return []
    rows = pd.read_json(path)
    inside = int(((rows["ratio"] - 1).abs() <= 0.05).sum())
    return [
        "## Device time vs triton.testing.do_bench",
        "",
        f"A sample of cells rebuilt and timed by do_bench (events over back-to-back calls, L2 flushed before each, "
        "the median), of the eager step or, where the run replayed a CUDA graph, of the same graph's replay: "
        f"{inside} of {len(rows)} agree within 5%.",
        "",
        md(rows, ".4g"),
        "",
    ]
