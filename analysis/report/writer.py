"""REPORT.md for one results folder: every number in it is computed here from the run's files, and every
sentence that depends on the device or the data is chosen from them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from analysis.comparisons import comparison_table, write_csv
from analysis.errors import AnalysisError
from analysis.load import load_run, load_runs, machine_description
from analysis.report.axes import compile_section, positional_cost_section, user_section
from analysis.report.breakdown import agreement_section, crossover_section, flops_vs_time_section
from analysis.report.comparison_sections import declared_sections
from analysis.report.context import build_context
from analysis.report.findings import findings_section
from analysis.report.fold import fold
from analysis.report.heads import heads_section
from analysis.report.machine_load import load_section
from analysis.report.memory_wall import memory_wall_section
from analysis.report.page import ddp_header, ddp_scaling, figures_section, header, positional_link
from analysis.report.reference_layers import bert_section
from analysis.report.roofs import roofs_section
from analysis.report.scaling import scaling_section
from analysis.report.sections import (
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
from analysis.report.targets import verdicts_section
from analysis.report.variants import variants_section
from infra.files import INDEX_HEADER, RUNS, atomic_write_text, owns_index

# The report, in order: one function per section, each reading the run's context, and what stays in view
# (analysis/report/fold.py): OPEN in full; QUESTION its answer and its one short table; METHODS its first
# paragraph. Adding a section is one function and one line here.
OPEN, QUESTION, METHODS = "open", "question", "methods"
SECTIONS = (
    (header, OPEN),
    (load_section, OPEN),
    (findings_section, OPEN),
    (scaling_section, QUESTION),
    (memory_wall_section, QUESTION),
    (heads_section, QUESTION),
    (roofs_section, QUESTION),
    (crossover_section, QUESTION),
    (flops_vs_time_section, QUESTION),
    (memory_section, QUESTION),
    (verdicts_section, QUESTION),
    (bert_section, QUESTION),
    (positional_cost_section, QUESTION),
    (compile_section, QUESTION),
    (user_section, QUESTION),
    (variants_section, QUESTION),
    (declared_sections, QUESTION),
    (machine_section, METHODS),
    (timing_section, METHODS),
    (coverage_section, METHODS),
    (kernels_section, METHODS),
    (auto_choice_section, METHODS),
    (flops_section, METHODS),
    (mfu_section, METHODS),
    (noise_section, METHODS),
    (agreement_section, METHODS),
    (do_bench_section, METHODS),
    (positional_link, OPEN),
    (figures_section, OPEN),
)
DDP_SECTIONS = (ddp_header, machine_section, coverage_section, ddp_scaling)


def render_report(run_dir: Path, positional_dir: Path | None = None, draw: bool = True) -> str:
    """REPORT.md's text; `draw` off: without the figures (nothing is written), the rest as it would be."""
    ctx = build_context(run_dir, positional_dir)
    ctx.draw = draw
    if not ctx.is_ddp and ctx.cells.empty:
        raise AnalysisError(
            f"{run_dir}: no grid cell was measured; "
            f"{len(ctx.not_run)} cells did not run, each with its reason in benchmarks.json"
        )
    if ctx.is_ddp:
        return "\n".join(line for section in DDP_SECTIONS for line in section(ctx))
    lines = []
    for section, view in SECTIONS:
        out = section(ctx)
        lines += out if view == OPEN else fold(out, keep_table=view == QUESTION)
    return "\n".join(lines)


def write_report(run_dir: Path, positional_dir: Path | None = None) -> Path:
    """REPORT.md, its figures, and comparisons.csv (every declared comparison's ratio, for pandas and other tools)."""
    text = render_report(run_dir, positional_dir)
    cells, _, facts = load_run(run_dir / "benchmarks.json")
    if not cells.empty and "id" in cells:
        write_csv(comparison_table(cells, facts), run_dir)
    out = run_dir / "REPORT.md"
    atomic_write_text(out, text)
    return out


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise AnalysisError(f"{run_dir}: no such results folder")
    if not (run_dir / "benchmarks.json").is_file():
        raise AnalysisError(f"{run_dir}: no benchmarks.json inside (run python -m bench first)")


def index_line(run: Path, under: Path | None = None) -> str:
    """One run's line in the index (its links relative to `under`, the index's folder, where it is deeper); a
    run whose JSON cannot be read is listed as such, naming the file."""
    name = str(run.relative_to(under)) if under else run.name
    try:
        facts = json.loads((run / "benchmarks.json").read_text())["machine_info"].get("attnbench", {})
        machine = machine_description(facts)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(
            f"warning: {run / 'benchmarks.json'} cannot be read ({type(err).__name__}); the index lists it as "
            "unreadable",
            file=sys.stderr,
        )
        return f"- **{name}**: unreadable benchmarks.json ({type(err).__name__})"
    report = next(
        (f"[{name}/{file}]({name}/{file})" for file in ("REPORT.md", "compare.md") if (run / file).is_file()),
        "no report yet",
    )
    return (
        f"- **{name}**: {machine}, grid `{facts.get('grid_profile')}`, torch "
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
    for run in sorted(p for p in results.iterdir() if (p / "benchmarks.json").is_file()):
        lines.append(index_line(run))
        # the machine's further runs, numbered inside its folder (a second run of a machine that has one)
        lines += ["  " + index_line(more.parent, results) for more in sorted((run / RUNS).glob("*/benchmarks.json"))]
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
