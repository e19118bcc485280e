"""The report's section on how attention scales with sequence length: log-log slopes with intervals and the
share of the n² term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.fits import describe_exponent, local_exponents, quadratic_shares, scaling_exponents
from analysis.markdown import md

if TYPE_CHECKING:
    from analysis.report.context import ReportContext


def longest_exponents(attention: pd.DataFrame) -> pd.DataFrame:
    """The local exponents between the two longest lengths of each series, at one head count per kernel: the
    one whose lengths the run timed as pairs (bench/pairs.py pairs one head at n with n/2), else the widest."""
    local = local_exponents(attention)
    if local.empty:
        return local
    series = ["device", "shape", "impl", "mode", "dtype"]
    last = local.groupby(series + ["heads"])["seq_len_to"].transform("max")
    local = local[local["seq_len_to"] == last]
    paired = local.groupby(series)["paired"].transform("any")
    widest = local.groupby(series)["heads"].transform("max")
    chosen = (local["paired"] & paired) | (~paired & (local["heads"] == widest))
    # one row per kernel: where several head counts paired, the fewest heads (the run pairs one head)
    local = local[chosen].sort_values("heads")
    return local.drop_duplicates(series)


def scaling_section(ctx: ReportContext) -> list[str]:
    attention = ctx.cells[ctx.cells["group"] == "attention"]
    head = ["## How attention scales with sequence length", ""]
    if attention.empty:
        return head + ["_No attention cells in this run._", ""]
    local = longest_exponents(attention)
    if local.empty:
        return head + ["_One length per series: nothing to scale against._", ""]
    paired = int(local["paired"].sum())
    lines = head + [
        "At the two longest lengths: the local exponent of device time, and of peak memory (exact). The growth "
        "word is taken here, and only where the time keeps up with its FLOPs' own exponent there: where it grows "
        "slower than its work, the word would describe what does not grow with the work, not attention's cost. "
        f"{paired} of {len(local)} series timed their two longest lengths as in-run pairs (bench/pairs.py; "
        "95% interval from the blocks)"
        + (
            ""
            if paired == len(local)
            else ("; the others'" if paired else "; their")
            + " 95% intervals are from the time ratio over passes, at the widest head count"
        )
        + ".",
        "",
    ]
    for r in local.sort_values(["device", "shape", "impl", "mode", "dtype"]).to_dict("records"):
        lines.append(
            f"- {r['device']} {r['impl']}, {r['mode']}, {r['dtype']}, {r['heads']} heads ({r['shape']}), "
            f"n={r['seq_len_from']}→{r['seq_len_to']}: time "
            f"{describe_exponent(r['time_exponent'], r['time_low'], r['time_high'], r['flops_exponent'])}; FLOPs "
            f"n^{r['flops_exponent']:.2f}; memory n^{r['memory_exponent']:.2f}."
        )
    keys = ["device", "shape", "impl", "mode", "dtype", "heads"]
    shares = quadratic_shares(attention)
    if not shares.empty:
        shares = shares.merge(local[keys], on=keys)
    if not shares.empty:
        lines += [
            "",
            "a + b·n + c·n² with non-negative terms fitted to the same series' time over every length: the share "
            "of the n² term at the longest length, with its 95% percentile bootstrap interval over passes.",
            "",
        ]
        for r in shares.sort_values(keys).to_dict("records"):
            lines.append(
                f"- {r['device']} {r['impl']}, {r['mode']}, {r['dtype']}, {r['heads']} heads: n² share at "
                f"n={r['seq_len_to']} {r['share']:.2f} [{r['share_low']:.2f}, {r['share_high']:.2f}]."
            )
    exps = scaling_exponents(attention)
    if exps.empty:
        return lines + [
            "",
            f"_Fewer than 5 lengths per series ({sorted(attention['seq_len'].unique().tolist())}): no log-log "
            "slope over every length (its interval would span every word)._",
            "",
        ]
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
        time = describe_exponent(r["time_exponent"], r["time_low"], r["time_high"], r["flops_exponent"])
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
