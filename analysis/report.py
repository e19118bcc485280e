"""REPORT.md for one results folder: every number in it is computed here from the run's files, and every
sentence that depends on the device or the data is chosen from them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from analysis import figures
from analysis.axes import compile_section, positional_cost_section, user_section
from analysis.breakdown import agreement_section, crossover_section
from analysis.context import ReportContext, build_context
from analysis.ddp import ddp_section
from analysis.errors import AnalysisError
from analysis.fits import describe_exponent, scaling_exponents
from analysis.load import load_runs, machine_description, machine_label
from analysis.markdown import md, rel
from analysis.positional_summary import reverse_attention_maps
from analysis.reference_layers import bert_section
from analysis.sections import (
    auto_choice_section,
    coverage_section,
    do_bench_section,
    flops_section,
    kernels_section,
    machine_section,
    memory_section,
    mfu_section,
    noise_section,
    timing_section,
)
from analysis.verdicts import TARGETS, judge, pair_table, target_sentence
from infra.files import INDEX_HEADER, atomic_write_text, owns_index


def scaling_section(ctx: ReportContext) -> list[str]:
    attention = ctx.cells[ctx.cells["group"] == "attention"]
    head = ["## How attention scales with sequence length", ""]
    if attention.empty:
        return head + ["_No attention cells in this run._", ""]
    exps = scaling_exponents(attention)
    if exps.empty:
        return head + [
            f"_Fewer than 5 lengths per series ({sorted(attention['seq_len'].unique().tolist())}): a "
            "slope from so few points has no interval worth printing._",
            "",
        ]
    lines = head + [
        "Log-log slope of device time and of peak memory against sequence length over every measured "
        "length, with its 95% t interval (n-2 degrees of freedom). A growth word is given only when the "
        "whole interval lies in its range (linear 0.85-1.15, quadratic 1.85-2.15). Beside it, "
        "a + b·n + c·n² with non-negative terms fitted to the time: the share of the n² term at the "
        "longest length.",
        "",
    ]
    widest = exps[exps["heads"] == exps["heads"].max()]
    for r in widest.sort_values(["device", "shape", "impl", "pass", "dtype"]).to_dict("records"):
        time = describe_exponent(r["time_exponent"], r["time_low"], r["time_high"])
        memory = describe_exponent(r["memory_exponent"], r["memory_low"], r["memory_high"])
        lines.append(
            f"- {r['device']} {r['impl']}, {r['pass']}, {r['dtype']}, {r['heads']} heads ({r['shape']}): time "
            f"{time}; memory {memory}; n² share of the time at n={r['seq_len_to']}: "
            f"{r['quadratic_share_at_longest']:.2f}."
        )
    cols = [
        "device",
        "shape",
        "impl",
        "pass",
        "dtype",
        "heads",
        "points",
        "time_exponent",
        "time_low",
        "time_high",
        "memory_exponent",
        "memory_low",
        "memory_high",
        "quadratic_share_at_longest",
    ]
    details = ["<details><summary>All fitted series</summary>", "", md(exps[cols], ".2f"), "", "</details>"]
    return lines + ["", *details, ""]


def verdicts_section(ctx: ReportContext) -> list[str]:
    """Every target whose cells this run has, each verdict with its interval and margin."""
    cells = ctx.cells
    lines = [
        "## Our encoder layer vs nn.TransformerEncoderLayer",
        "",
        "Ratios ours / torch of device time (95% interval over passes) and of peak memory (exact), cell by cell. "
        "A target is met where the whole interval is on the right side, missed where it is all on the wrong "
        "side, inconclusive where it straddles.",
        "",
    ]
    tables = {}
    for target in TARGETS:
        pairs = tables.setdefault(target.impl, pair_table(cells, target.impl))
        judged = judge(pairs, target)
        if not judged.empty:
            lines.append(target_sentence(target, judged))
    for impl, pairs in tables.items():
        pairs = pairs[(pairs["pos_encoding"] == "none") & (pairs["compile"] == "eager")]
        if len(pairs):
            cols = [
                "device",
                "shape",
                "dtype",
                "pass",
                "dropout",
                "seq_len",
                "time_ratio",
                "time_low",
                "time_high",
                "memory_ratio",
                "kernel_ours",
                "kernel_torch",
            ]
            lines += ["", f"{impl} / torch, every paired cell:", "", md(pairs[cols], ".3f")]
    return lines + [""]


def header(ctx: ReportContext) -> list[str]:
    traced = " and the profiler traces in `traces/`" if ctx.breakdown is not None else ""
    lines = [
        f"# attnbench report: {ctx.run_dir.name}",
        "",
        f"Produced by `python -m analysis report {ctx.run_dir}` from `benchmarks.json`{traced} of a run on "
        f"{machine_label(ctx.facts)}. Every number below is computed from those files.",
        "",
    ]
    if ctx.traces_note:
        lines += [f"_{ctx.traces_note}: the sections that read them are left out._", ""]
    return lines


def positional_link(ctx: ReportContext) -> list[str]:
    if ctx.experiment is None:
        return []
    summary = rel(ctx.positional_dir / "summary.md", ctx.run_dir)
    return [
        "## Positional encodings: what they learn",
        "",
        f"The experiment's tables and findings are in [{summary}]({summary}); its figures are below.",
        "",
    ]


def figures_section(ctx: ReportContext) -> list[str]:
    out = ctx.fig_dir
    cells = ctx.cells
    figs = [
        figures.time_vs_length(cells, out),
        figures.memory_vs_length(cells, out),
        figures.heads_length_heatmap(cells, out),
        figures.mfu_vs_length(cells, out),
    ]
    if ctx.breakdown is not None:
        figs.append(figures.op_share_vs_length(ctx.breakdown, out))
    if ctx.experiment is not None:
        figs.append(figures.positional_accuracy(ctx.experiment, out))
        maps = reverse_attention_maps(ctx.positional_dir)
        figs.append(figures.attention_maps(maps, out) if maps else None)
    return ["## Figures", ""] + [f"![{p.stem}]({rel(p, ctx.run_dir)})" for p in figs if p is not None] + [""]


def ddp_header(ctx: ReportContext) -> list[str]:
    return [
        f"# attnbench report: {ctx.run_dir.name}",
        "",
        f"Produced by `python -m analysis report {ctx.run_dir}` from `benchmarks.json` and each rank's profiler "
        f"traces in `traces/`, of a run on {machine_label(ctx.facts)}. Every number below is computed from "
        "those files.",
        "",
    ]


def ddp_scaling(ctx: ReportContext) -> list[str]:
    """The data-parallel run's scaling and communication, and its figure."""
    section, table = ddp_section(ctx.cells, ctx.run_dir / "traces")
    figure = figures.ddp_scaling(table, ctx.fig_dir)
    return section + ["## Figures", "", f"![{figure.stem}]({rel(figure, ctx.run_dir)})", ""]


# The report, in order: one function per section, each reading the run's context. Adding a section is one
# function and one line here.
SECTIONS = (
    header,
    machine_section,
    timing_section,
    coverage_section,
    kernels_section,
    auto_choice_section,
    scaling_section,
    crossover_section,
    verdicts_section,
    bert_section,
    positional_cost_section,
    compile_section,
    user_section,
    memory_section,
    flops_section,
    mfu_section,
    noise_section,
    agreement_section,
    do_bench_section,
    positional_link,
    figures_section,
)
DDP_SECTIONS = (ddp_header, machine_section, coverage_section, ddp_scaling)


def write_report(run_dir: Path, positional_dir: Path | None = None) -> Path:
    ctx = build_context(run_dir, positional_dir)
    if not ctx.is_ddp and ctx.cells.empty:
        raise AnalysisError(
            f"{run_dir}: no grid cell was measured; "
            f"{len(ctx.not_run)} cells did not run, each with its reason in benchmarks.json"
        )
    sections = DDP_SECTIONS if ctx.is_ddp else SECTIONS
    out = run_dir / "REPORT.md"
    atomic_write_text(out, "\n".join(line for section in sections for line in section(ctx)))
    return out


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise AnalysisError(f"{run_dir}: no such results folder")
    if not (run_dir / "benchmarks.json").is_file():
        raise AnalysisError(f"{run_dir}: no benchmarks.json inside (run python -m bench first)")


def index_line(run: Path) -> str:
    """One run's line in the index; a run whose JSON cannot be read is listed as such, naming the file."""
    try:
        facts = json.loads((run / "benchmarks.json").read_text())["machine_info"].get("attnbench", {})
        machine = machine_description(facts)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(
            f"warning: {run / 'benchmarks.json'} cannot be read ({type(err).__name__}); the index lists it as "
            "unreadable",
            file=sys.stderr,
        )
        return f"- **{run.name}**: unreadable benchmarks.json ({type(err).__name__})"
    report = next(
        (f"[{run.name}/{name}]({run.name}/{name})" for name in ("REPORT.md", "compare.md") if (run / name).is_file()),
        "no report yet",
    )
    return (
        f"- **{run.name}**: {machine}, grid `{facts.get('grid_profile')}`, torch "
        f"{facts.get('torch_version')}, commit `{facts.get('git_commit')}`: {report}"
    )


def write_index(results: Path) -> Path:
    """results/README.md: a line per run folder (its machine and grid) linking its REPORT.md. Only in a
    results folder attnbench made (infra.files.RESULTS_MARKER), and never over a README it did not write."""
    if not results.is_dir():
        raise AnalysisError(f"{results}: no such results folder")
    reason = owns_index(results)
    if reason:
        raise AnalysisError(reason)
    lines = ["# Results", "", INDEX_HEADER, ""]
    lines += [index_line(run) for run in sorted(p for p in results.iterdir() if (p / "benchmarks.json").is_file())]
    for extra in sorted(p for p in results.iterdir() if p.is_dir() and not (p / "benchmarks.json").is_file()):
        for name in ("summary.md", "NOISE.md", "REPORT.md"):
            if (extra / name).is_file():
                lines.append(f"- **{extra.name}**: [{extra.name}/{name}]({extra.name}/{name})")
                break
    out = results / "README.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def update_index(results: Path) -> Path | None:
    """The index after a report: written where attnbench owns it, else left alone with a note why."""
    reason = owns_index(results)
    if reason:
        print(f"note: no results index written: {reason}", file=sys.stderr)
        return None
    return write_index(results)


def write_table(run_dirs: list[Path], out: Path) -> Path:
    """The cells of several runs, machines mixed, as one CSV (a row per cell, `run` and `machine` columns)."""
    cells, _, _ = load_runs([run / "benchmarks.json" for run in run_dirs])
    samples = [c for c in cells.columns if c.endswith("_passes_s")] + ["flops_counted_with_added_formulas"]
    atomic_write_text(out, cells.drop(columns=samples).to_csv(index=False))
    return out
