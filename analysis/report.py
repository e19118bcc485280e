"""REPORT.md for one results folder: every number in it is computed here from the run's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.errors import AnalysisError
from analysis.fits import crossover_length, memory_model_error, scaling_exponents
from analysis.load import load_runs
from analysis.positional import load_positional, reverse_attention_maps
from analysis.summaries import (
    breakdown_vs_benchmark,
    describe_exponent,
    flop_counter_agreement,
    kernels_table,
    ours_vs_torch,
    traced_breakdown,
)
from model.cost import layer_forward_flops
from model.files import atomic_write_text

LONGEST = 3  # fit exponents over the 3 longest lengths: the long-sequence regime
TRACE_TOLERANCE = 0.25  # op self time per step vs the benchmark median, relative


def _md(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt) if len(frame) else "_(none)_"


def _rel(path: Path, run_dir: Path) -> str:
    return os.path.relpath(path, run_dir)


def machine_section(facts: dict, cells: pd.DataFrame) -> list[str]:
    rows = [
        ("device", ", ".join(sorted(cells["device"].unique()))),
        ("CPU", facts["cpu_model"]),
        ("CPU kernel flags", ", ".join(facts["cpu_flags"]) or "none of note"),
        ("cores", facts["cpu_count"]),
        ("torch threads", facts["torch_threads"]),
        ("GPU", facts.get("gpu_name") or "none"),
        ("torch", facts["torch_version"]),
        ("CUDA", facts.get("cuda_version") or "none"),
        ("git commit", facts["git_commit"]),
        ("grid profile", facts["grid_profile"]),
        ("shape", ", ".join(f"{k}={v}" for k, v in facts["shape"].items())),
        ("FLOP formulas added to FlopCounterMode", ", ".join(facts["flop_formulas_added"])),
    ]
    return ["## Machine and grid", "", _md(pd.DataFrame(rows, columns=["fact", "value"])), ""]


def coverage_section(cells: pd.DataFrame, not_run: pd.DataFrame) -> list[str]:
    grid = cells[cells["group"] != "calibration"]
    lines = [
        "## What ran, and what did not",
        "",
        f"{len(cells)} cells ran. Lengths {sorted(grid['seq_len'].unique().tolist())}, heads "
        f"{sorted(grid['heads'].unique().tolist())}, dtypes {sorted(grid['dtype'].unique().tolist())}.",
        "",
    ]
    if len(not_run):
        table = not_run.groupby(["outcome", "group", "reason"]).size().reset_index(name="cells")
        lines += [f"{len(not_run)} cells did not run:", "", _md(table), ""]
    else:
        lines += ["Every generated cell ran.", ""]
    return lines


def scaling_section(cells: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    attention = cells[cells["group"] == "attention"]
    if attention.empty:
        return ["## How attention scales with sequence length", "", "_No attention cells in this run._", ""], None
    exps = scaling_exponents(attention, LONGEST)
    lengths = sorted(attention["seq_len"].unique().tolist())[-LONGEST:]
    lines = [
        "## How attention scales with sequence length",
        "",
        f"Log-log slopes of median time and of peak memory against sequence length, fitted over the "
        f"longest lengths measured, n in {lengths} (± one standard error of the slope; with 2 points there is "
        "no error estimate). Exponent 2 is quadratic, 1 linear.",
        "",
    ]
    if exps.empty:
        return lines + ["_Fewer than two lengths: nothing to fit._", ""], exps
    widest = exps[exps["heads"] == exps["heads"].max()]
    for (impl, pas, dtype), row in widest.set_index(["impl", "pass", "dtype"]).sort_index().iterrows():
        time = describe_exponent(row["time_exponent"], row["time_exponent_se"])
        memory = describe_exponent(row["memory_exponent"], row["memory_exponent_se"])
        lines.append(f"- {impl}, {pas}, {dtype}, {row['heads']} heads: time {time}; memory {memory}.")
    cols = [
        "impl",
        "pass",
        "dtype",
        "heads",
        "time_exponent",
        "time_exponent_se",
        "memory_exponent",
        "memory_exponent_se",
        "seq_len_from",
        "seq_len_to",
    ]
    lines += [
        "",
        "<details><summary>All fitted series</summary>",
        "",
        _md(exps[cols].sort_values(cols[:4]), ".2f"),
        "",
        "</details>",
        "",
    ]
    return lines, exps


def crossover_section(breakdown: pd.DataFrame | None, shape: dict) -> list[str]:
    d, f = shape["d_model"], shape["d_ff"]
    # Both terms are linear in b; scores grow as n^2 and the feed-forward as n, so their ratio is
    # proportional to n and the crossover is 1 / (ratio at n = 1).
    one = layer_forward_flops(1, 1, d, f)
    flop_cross = 1 / (one.attention_scores / (one.linear - 2 * 4 * d * d))
    lines = [
        "## Where attention overtakes the feed-forward",
        "",
        f"By FLOPs (cost model): the score matmuls (4·b·n²·d) pass the feed-forward's (4·b·n·d·d_ff) at "
        f"n = {flop_cross:.0f} (= d_ff) for d_model={d}, d_ff={f}.",
    ]
    if breakdown is None or breakdown.empty:
        return lines + ["", "No traces in this run, so no measured crossover.", ""]
    for (impl, dtype), group in breakdown.groupby(["impl", "dtype"]):
        wide = group.pivot_table(index="seq_len", columns="category", values="self_s").sort_index()
        attn = wide.get("attention_scores", 0) + wide.get("softmax", 0)
        cross = crossover_length(wide.index.values, np.asarray(attn), np.asarray(wide["feed_forward_gemm"]))
        where = "not within the traced lengths" if cross is None else f"at n ≈ {cross:.0f}"
        lines.append(
            f"- Measured ({impl}, {dtype}, training step): attention (score kernels + softmax) self time "
            f"overtakes the feed-forward GEMMs {where} (traced lengths {wide.index.tolist()})."
        )
    return lines + [""]


def write_report(run_dir: Path, positional_dir: Path | None = None) -> Path:
    json_path = run_dir / "benchmarks.json"
    cells, not_run, machines = load_runs([json_path])
    facts = next(iter(machines.values()))
    fig_dir = run_dir / "figures"
    trace_dir = run_dir / "traces"
    breakdown = traced_breakdown(trace_dir, cells, facts["shape"]["d_ff"]) if trace_dir.exists() else None
    lines = [
        f"# attnbench report: {run_dir.name}",
        "",
        f"Produced by `python -m analysis report {run_dir}` from `benchmarks.json`"
        + (" and the profiler traces in `traces/`" if breakdown is not None else "")
        + ". "
        "Every number below is computed from those files.",
        "",
    ]
    lines += machine_section(facts, cells)
    lines += coverage_section(cells, not_run)
    lines += ["## Which kernels ran", "", _md(kernels_table(cells)), ""]
    scaling, _ = scaling_section(cells)
    lines += scaling + crossover_section(breakdown, facts["shape"])
    lines += ours_vs_torch(cells)
    errors = memory_model_error(cells[cells["group"] != "calibration"])
    summary = (
        errors.groupby(["group", "impl", "pass"])["measured_over_predicted"].agg(["median", "min", "max"]).reset_index()
    )
    lines += [
        "## Memory: measured peak vs the analytic model",
        "",
        "Ratio of the measured peak of one step to `model/cost.py`'s prediction (1.0 = exact):",
        "",
        _md(summary, ".2f"),
        "",
    ]
    lines += flop_counter_agreement(cells)
    mfu = cells[cells["group"] != "calibration"].groupby(["group", "dtype"])["mfu"].agg(["median", "max"]).reset_index()
    peaks = cells.groupby(["device", "dtype"])["peak_flops_per_s"].first().reset_index()
    peaks["peak_gflops_per_s"] = peaks.pop("peak_flops_per_s") / 1e9
    lines += [
        "## Fraction of peak (MFU)",
        "",
        "Measured matmul peak of this session (the calibration):",
        "",
        _md(peaks),
        "",
        "Analytic matmul FLOPs per second over that peak:",
        "",
        _md(mfu, ".3f"),
        "",
    ]
    noise = cells.assign(iqr_over_median=cells["iqr_s"] / cells["median_s"])
    worst = noise.nlargest(5, "iqr_over_median")[["id", "group", "rounds", "median_s", "iqr_over_median"]]
    lines += [
        "## Noise",
        "",
        f"IQR / median over each cell's timed rounds: median {noise['iqr_over_median'].median():.3f}, "
        f"90th percentile {noise['iqr_over_median'].quantile(0.9):.3f}. Noisiest cells:",
        "",
        _md(worst),
        "",
    ]
    if breakdown is not None:
        lines += breakdown_vs_benchmark(breakdown, cells, TRACE_TOLERANCE)
    figs = [
        figures.time_vs_length(cells, fig_dir),
        figures.memory_vs_length(cells, fig_dir),
        figures.heads_length_heatmap(cells, fig_dir),
        figures.mfu_vs_length(cells, fig_dir),
    ]
    if breakdown is not None and not breakdown.empty:
        figs.append(figures.op_share_vs_length(breakdown, fig_dir))
    positional_dir = positional_dir or run_dir.parent / "positional"
    if (positional_dir / "runs.csv").is_file():
        figs.append(figures.positional_accuracy(load_positional(positional_dir), fig_dir))
        maps = reverse_attention_maps(positional_dir)
        if maps:
            figs.append(figures.attention_maps(maps, fig_dir))
        lines += [
            "## Positional encodings",
            "",
            f"The experiment's tables and findings are in [{_rel(positional_dir / 'summary.md', run_dir)}]"
            f"({_rel(positional_dir / 'summary.md', run_dir)}); its figures are below.",
            "",
        ]
    lines += ["## Figures", ""] + [f"![{p.stem}]({_rel(p, run_dir)})" for p in figs if p is not None] + [""]
    out = run_dir / "REPORT.md"
    atomic_write_text(out, "\n".join(lines))
    return out


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise AnalysisError(f"{run_dir}: no such results folder")
    if not (run_dir / "benchmarks.json").is_file():
        raise AnalysisError(f"{run_dir}: no benchmarks.json inside (run python -m bench first)")


def write_index(results: Path) -> Path:
    """results/README.md: a line per run folder (its machine and grid) linking its REPORT.md."""
    if not results.is_dir():
        raise AnalysisError(f"{results}: no such results folder")
    lines = ["# Results", "", "Real runs of attnbench, one folder each. Written by `python -m analysis index`.", ""]
    for run in sorted(p for p in results.iterdir() if (p / "benchmarks.json").is_file()):
        facts = json.loads((run / "benchmarks.json").read_text())["machine_info"].get("attnbench", {})
        machine = facts.get("gpu_name") or facts.get("cpu_model", "unknown machine")
        report = f"[{run.name}/REPORT.md]({run.name}/REPORT.md)" if (run / "REPORT.md").is_file() else "no report yet"
        lines.append(
            f"- **{run.name}**: {machine}, grid `{facts.get('grid_profile')}`, torch "
            f"{facts.get('torch_version')}, commit `{facts.get('git_commit')}`: {report}"
        )
    if (results / "positional" / "summary.md").is_file():
        lines.append(
            "- **positional**: the positional-encoding experiment: [positional/summary.md](positional/summary.md)"
        )
    out = results / "README.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def write_table(run_dirs: list[Path], out: Path) -> Path:
    """The cells of several runs, machines mixed, as one CSV (a row per cell, `run` and `machine` columns)."""
    cells, _, _ = load_runs([run / "benchmarks.json" for run in run_dirs])
    atomic_write_text(out, cells.drop(columns=["flops_counted_with_added_formulas"]).to_csv(index=False))
    return out
