"""The page around the sections: the report's header, the links to the positional experiment, the figures,
and the data-parallel run's header and scaling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analysis import figures
from analysis.ddp import ddp_section
from analysis.load import machine_label
from analysis.markdown import rel
from analysis.positional_summary import reverse_attention_maps

METHODS = Path(__file__).parents[2] / "docs" / "methods.md"  # how every number is made, linked once

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


def header(ctx: ReportContext) -> list[str]:
    traced = " and the profiler traces in `traces/`" if ctx.breakdown is not None else ""
    lines = [
        f"# attnbench report: {ctx.run_dir.name}",
        "",
        f"Produced by `python -m analysis report {ctx.run_dir}` from `benchmarks.json`{traced} of a run on "
        f"{machine_label(ctx.facts)}. Every number below is computed from those files; how, in "
        f"[docs/methods.md]({rel(METHODS, ctx.run_dir)}). Each section's full tables are in its collapsed block.",
        "",
    ]
    if ctx.facts.get("pair_unit") == "blocks":
        lines += [
            "_A run before schema 7: its paired intervals pool ABBA blocks across passes, as it was planned. "
            "Blocks of one pass share its state, so these intervals are narrower than a rerun agrees with._",
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
    if not ctx.draw:
        return []
    out = ctx.fig_dir
    cells = ctx.cells
    figs = [
        figures.time_vs_length(cells, out),
        figures.memory_vs_length(cells, out),
        figures.heads_length_heatmap(cells, out),
        figures.mfu_vs_length(cells, out),
        figures.roofline(ctx.regimes, ctx.matmul_peaks, ctx.bandwidth_roofs, out),
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
    if not ctx.draw:
        return section
    figure = figures.ddp_scaling(table, ctx.fig_dir)
    return section + ["## Figures", "", f"![{figure.stem}]({rel(figure, ctx.run_dir)})", ""]
