"""One section for each declared comparison that has no section of its own (infra/comparisons.py: `section`),
rendered from the run's comparison table: its question, its words, what the physics predicts, a short table
by kernel and mode in view, and every cell's ratio collapsed. A new comparison needs only its declaration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.markdown import md
from analysis.stats import MARGIN, WORDS
from infra import comparisons as declared
from infra.comparisons import PHYSICS

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

AXES = ["device", "dtype", "seq_len", "heads", "impl", "mode"]


def comparison_section(ctx: ReportContext, name: str) -> list[str]:
    comparison = next(c for c in declared.COMPARISONS if c.name == name)
    rows = ctx.comparisons[ctx.comparisons["comparison"] == name]
    if rows.empty:
        return []
    axes = ctx.every_cell[["id", *AXES]].drop_duplicates("id")
    table = rows.merge(axes, on="id").sort_values(AXES)
    words = table["word"].value_counts()
    level = float(table["level"].iloc[0])
    summary = (
        table.groupby(["device", "impl", "mode"])
        .agg(
            cells=("ratio", "size"),
            median_ratio=("ratio", "median"),
            lowest=("ratio", "min"),
            highest=("ratio", "max"),
            physics=("predicted", "median"),
        )
        .reset_index()
    )
    summary["words"] = [
        ", ".join(f"{w} {n}" for w, n in group["word"].value_counts().items())
        for _, group in table.groupby(["device", "impl", "mode"])
    ]
    full = table[[*AXES, "ratio", "level_low", "level_high", "word", "predicted", "units", "unit"]]
    measured = np.exp(np.log(table["ratio"]).median())
    physics = table["predicted"].median()
    physics_sentence = (
        f" The physics, {PHYSICS[comparison.physics]}, predicts x{physics:.2f} at the median cell; measured "
        f"x{measured:.2f}."
        if pd.notna(physics)
        else f" The physics ({PHYSICS[comparison.physics]}) has no prediction for these cells."
    )
    return [
        f"## {comparison.question[0].upper()}{comparison.question[1:]}",
        "",
        f"{name}: device time of each cell over its {comparison.axis} base, {len(table)} ratios with simultaneous "
        f"intervals at {level:.2%} over the `{comparison.family}` family, in three words with a {MARGIN:.0%} margin: "
        + ", ".join(f"{w} {words.get(w, 0)}" for w in WORDS)
        + "."
        + physics_sentence,
        "",
        md(summary, ".3f"),
        "",
        md(full, ".3f"),
        "",
    ]


def declared_sections(ctx: ReportContext) -> list[str]:
    """The sections of the comparisons declared to be rendered here, by priority."""
    lines: list[str] = []
    for comparison in sorted(declared.COMPARISONS, key=lambda c: c.priority):
        if comparison.section:
            lines += comparison_section(ctx, comparison.name)
    return lines
