"""The report's section on our layer against torch's: every standing target's verdict with its interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.markdown import md
from analysis.verdicts import TARGETS, judge, pair_table, target_sentence

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


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
