"""The report's section on how attention scales with sequence length: log-log slopes with intervals and the
share of the n² term."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.fits import describe_exponent, scaling_exponents
from analysis.markdown import md

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


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
