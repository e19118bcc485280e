"""The report's section on our layer against torch's: every standing target's verdict with its interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.markdown import md
from analysis.stats import IN_RUN, MARGIN, PAIRED_METHODS, PASS_PAIRS, family_confidence
from analysis.verdicts import TARGETS, judge, pair_table, target_sentence

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


def time_comparisons(cells) -> int:  # noqa: ANN001 - the run's cells
    """How many time verdicts the targets ask for: their intervals are simultaneous over all of them."""
    pairs = {impl: pair_table(cells, impl) for impl in {t.impl for t in TARGETS}}
    return sum(len(judge(pairs[t.impl], t)) for t in TARGETS if t.metric == "time")


def method_sentence(tables: list) -> str:
    """How the ratios' intervals were made, from the methods the pair tables used, and how wide they are."""
    methods = pd.concat([t["interval"] for t in tables]) if tables else pd.Series(dtype=str)
    widths = pd.concat([np.sqrt(t["time_high"] / t["time_low"]) - 1 for t in tables]) if tables else pd.Series()
    width = (
        f" At that level the median half-width of the {len(widths)} time ratios in the tables below is "
        f"{widths.median():.1%} (90th percentile {widths.quantile(0.9):.1%})."
        if len(widths)
        else ""
    )
    paired = int(methods.isin(PAIRED_METHODS).sum())
    if not paired:
        return (
            "This run's comparisons were not paired inside the run: each side's passes are compared as two "
            "samples (Welch's t over the pass medians)." + width
        )
    by_pass = pd.concat([t.loc[t["interval"] == PASS_PAIRS, "passes"] for t in tables]).astype(int)
    blocks = pd.concat([t.loc[t["interval"] == IN_RUN, "blocks"] for t in tables]).dropna().astype(int)
    if len(by_pass):
        spread = f"{by_pass.min()}" if by_pass.min() == by_pass.max() else f"{by_pass.min()} to {by_pass.max()}"
        how = (
            f"ours timed in ABBA blocks beside torch's layer in each of {spread} passes; each pass's ratio is the 20% "
            "trimmed mean of its blocks, and the interval is Student's t over the passes"
        )
    else:
        spread = f"{blocks.min()}" if blocks.min() == blocks.max() else f"{blocks.min()} to {blocks.max()}"
        how = (
            f"ours timed in ABBA blocks beside torch's layer, {spread} blocks a ratio pooled over the passes, the 20% "
            "trimmed mean of the block log ratios with its t interval: a run before schema 7, whose intervals pooled "
            "blocks and are narrower than a rerun agrees with"
        )
    return (
        f"{paired} of the {len(methods)} ratios come from in-run pairs ({how})"
        + (
            f"; the other {len(methods) - paired} from the two cells' passes, unpaired."
            if paired < len(methods)
            else "."
        )
        + width
    )


def verdicts_section(ctx: ReportContext) -> list[str]:
    """Every target whose cells this run has, each verdict with its interval and margin."""
    cells = ctx.cells
    asked = time_comparisons(cells)
    level = family_confidence(asked)
    tables = {}  # by impl, in the targets' order, each built once
    for target in TARGETS:
        if target.impl not in tables:
            tables[target.impl] = pair_table(cells, target.impl, confidence=level)
    # the cells the section's tables show (the encodings and compilation have sections of their own): the
    # sentence on the intervals' widths describes these rows
    shown = {
        impl: pairs[(pairs["pos_encoding"] == "none") & (pairs["compile"] == "eager")] for impl, pairs in tables.items()
    }
    lines = [
        "## Our encoder layer vs nn.TransformerEncoderLayer",
        "",
        f"Ratios ours / torch of device time and of peak memory (exact), cell by cell. Each time ratio over its "
        f"target answers in one of three words with a {MARGIN:.0%} margin: faster than the target by more than "
        f"it, equivalent within ±{MARGIN:.0%} of it (two one-sided tests), or slower by more than it; where the "
        f"interval straddles an edge of the margin, the words it leaves open. The target is met where only faster "
        f"and equivalent are open (the interval rules out slower than it by more than {MARGIN:.0%}, whichever of the "
        f"two it is), missed where only slower is, and inconclusive where the interval straddles the target's "
        f"upper edge, with about how many passes would decide it. The {asked} time "
        f"intervals are simultaneous at 95% (each at {level:.2%}, Bonferroni), so all of them hold together. "
        + method_sentence([pairs for pairs in shown.values() if len(pairs)]),
        "",
    ]
    for target in TARGETS:
        judged = judge(tables[target.impl], target, level)
        if not judged.empty:
            lines.append(target_sentence(target, judged))
    for impl, pairs in shown.items():
        if len(pairs):
            cols = [
                "device",
                "shape",
                "dtype",
                "mode",
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
