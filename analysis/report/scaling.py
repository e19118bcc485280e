"""The report's section on how attention scales with sequence length: log-log slopes with intervals and the
share of the n² term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.fits import describe_exponent, local_exponents, scaling_exponents
from analysis.markdown import md

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


def longest_exponents(attention: pd.DataFrame) -> pd.DataFrame:
    """The local exponents between the two longest lengths of each series, at the widest head count."""
    local = local_exponents(attention[attention["heads"] == attention["heads"].max()])
    if local.empty:
        return local
    last = local.groupby(["device", "shape", "impl", "mode", "dtype"])["seq_len_to"].transform("max")
    return local[local["seq_len_to"] == last]


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
    local = longest_exponents(attention)
    lines = head + [
        "At the longest lengths, where the leading term dominates: the local exponent of device time between "
        "the two longest lengths (from their time ratio's 95% interval over passes), and of peak memory "
        "(exact). The growth word is taken here.",
        "",
    ]
    for r in local.sort_values(["device", "shape", "impl", "mode", "dtype"]).to_dict("records"):
        lines.append(
            f"- {r['device']} {r['impl']}, {r['mode']}, {r['dtype']}, {r['heads']} heads ({r['shape']}), "
            f"n={r['seq_len_from']}→{r['seq_len_to']}: time "
            f"{describe_exponent(r['time_exponent'], r['time_low'], r['time_high'])}; memory "
            f"n^{r['memory_exponent']:.2f}."
        )
    lines += [
        "",
        "Over every measured length, for comparison: the log-log slope of device time and of peak memory, "
        "with its 95% t interval (n-2 degrees of freedom). A growth word is given only when the "
        "whole interval lies in its range (linear 0.85-1.15, quadratic 1.85-2.15). Beside it, "
        "a + b·n + c·n² with non-negative terms fitted to the time: the share of the n² term at the "
        "longest length.",
        "",
    ]
    widest = exps[exps["heads"] == exps["heads"].max()]
    for r in widest.sort_values(["device", "shape", "impl", "mode", "dtype"]).to_dict("records"):
        time = describe_exponent(r["time_exponent"], r["time_low"], r["time_high"])
        memory = describe_exponent(r["memory_exponent"], r["memory_low"], r["memory_high"])
        lines.append(
            f"- {r['device']} {r['impl']}, {r['mode']}, {r['dtype']}, {r['heads']} heads ({r['shape']}): time "
            f"{time}; memory {memory}; n² share of the time at n={r['seq_len_to']}: "
            f"{r['quadratic_share_at_longest']:.2f}."
        )
    cols = [
        "device",
        "shape",
        "impl",
        "mode",
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
