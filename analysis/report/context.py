"""What every report section reads, built once per run: the cells, the cells that did not run, the machine,
the traces' breakdown, the positional experiment and the folders. A section is `section(ctx) -> lines`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from analysis.comparisons import comparison_table
from analysis.errors import MissingDependency
from analysis.load import load_runs
from analysis.positional_summary import load_positional, positional_folder
from analysis.report.variants import is_variant
from analysis.roofline import level_roofs, regimes
from analysis.traces import traced_breakdown
from infra.files import results_root


@dataclass
class ReportContext:
    run_dir: Path
    cells: pd.DataFrame
    not_run: pd.DataFrame
    facts: dict  # the run's machine_info.attnbench
    positional_dir: Path
    breakdown: pd.DataFrame | None = None  # per traced cell and component (analysis/traces.py)
    step_facts: pd.DataFrame | None = None  # per traced cell: tb-profiler's step split
    experiment: pd.DataFrame | None = None  # the positional experiment's runs, where there is one
    traces_note: str | None = None  # why the traces were not read, where they were not
    # the attention variants' cells (grouped key/value heads, windows: analysis/report/variants.py), kept out of
    # `cells` so that every other section reads the dense cells it always read
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)
    draw: bool = True  # draw the figures (off: the text alone, as the golden test of each committed report reads it)

    @property
    def every_cell(self) -> pd.DataFrame:
        """The run's cells, the variants' included: what ran and how it was timed are facts of the whole run."""
        return pd.concat([self.cells, self.variants]) if len(self.variants) else self.cells

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        """Every declared comparison's table (analysis/comparisons.py), built once: what comparisons.csv holds."""
        return comparison_table(self.every_cell, self.facts)

    @cached_property
    def regimes(self) -> pd.DataFrame:
        """Each dense attention cell against the run's measured roofs (analysis/roofline.py), built once."""
        return regimes(self.cells, self.facts)

    @property
    def bandwidth_roofs(self) -> pd.DataFrame:
        """Per device and memory level, the run's measured bandwidth roof (analysis/roofline.py)."""
        return level_roofs(self.facts)

    @property
    def matmul_peaks(self) -> pd.DataFrame:
        """The run's matmul peak per device and dtype (per shard, where merged): infra.record.MatmulPeak."""
        return pd.DataFrame(self.facts.get("matmul_peak", []))

    @property
    def fig_dir(self) -> Path:
        return self.run_dir / "figures"

    @property
    def is_ddp(self) -> bool:
        return bool((self.cells["group"] == "ddp").all())


def build_context(run_dir: Path, positional_dir: Path | None = None) -> ReportContext:
    cells, not_run, machines = load_runs([run_dir / "benchmarks.json"])
    facts = next(iter(machines.values()))
    positional_dir = positional_dir or positional_folder(results_root(run_dir), facts.get("machine_slug"))
    variant = is_variant(cells) if "varlen" in cells else pd.Series(False, index=cells.index)
    ctx = ReportContext(run_dir, cells[~variant], not_run, facts, positional_dir, variants=cells[variant])
    if ctx.is_ddp:
        return ctx
    if (positional_dir / "runs.csv").is_file():
        ctx.experiment = load_positional(positional_dir)
    trace_dir = run_dir / "traces"
    if trace_dir.exists() and cells["trace_name"].notna().any():
        try:
            ctx.breakdown, ctx.step_facts = traced_breakdown(trace_dir, cells)
        except MissingDependency as err:
            print(f"analysis: {err}", file=sys.stderr)
            ctx.traces_note = str(err)
    return ctx
