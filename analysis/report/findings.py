"""The report's opening: what this run found, in at most 12 bullets, each computed from the data, with its
interval, linking to the section it comes from. The details follow in the sections themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.fits import describe_exponent
from analysis.markdown import link
from analysis.report.heads import head_ratios
from analysis.report.scaling import longest_exponents
from analysis.report.targets import time_comparisons
from analysis.report.variants import variant_findings
from analysis.stats import MARGIN, cell_ratio, decide, family_confidence, ratio_interval, word_order
from analysis.verdicts import TARGETS, judge, pair_table, verdict_counts
from model.cost import layer_forward_flops

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

MAX_FINDINGS = 12


def growth(ctx: ReportContext) -> list[str]:
    attention = ctx.cells[ctx.cells["group"] == "attention"]
    local = longest_exponents(attention) if len(attention) else pd.DataFrame()
    if local.empty:
        return []
    out = []
    for (device, mode), group in local.groupby(["device", "mode"]):
        parts = [
            f"{r['impl']} {r['dtype']} time "
            f"{describe_exponent(r['time_exponent'], r['time_low'], r['time_high'], r['flops_exponent'])}, "
            f"memory n^{r['memory_exponent']:.2f}"
            for r in group.sort_values(["impl", "dtype"]).to_dict("records")
        ]
        span = f"n={group['seq_len_from'].max()}→{group['seq_len_to'].max()}"
        out.append(
            link(
                f"Attention {mode} on {device} at the longest lengths ({span}): " + "; ".join(parts) + ".",
                "How attention scales with sequence length",
            )
        )
    return out


def heads(ctx: ReportContext) -> list[str]:
    table = head_ratios(ctx.cells)
    if table.empty:
        return []
    top = table[table["heads"] == table["heads"].max()]
    top = top[top["seq_len"] == top.groupby(["device", "impl", "mode", "dtype"])["seq_len"].transform("max")]
    top = top[top["dtype"] == top.groupby("dtype")["seq_len"].max().idxmax()]  # the dtype that ran longest
    parts = [
        f"{r['impl']} {r['mode']} time x{r['time_vs_1_head']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['word']}), "
        f"memory x{r['memory_vs_1_head']:.2f}"
        for r in top.sort_values(["impl", "mode"]).to_dict("records")
    ]
    h, dtype, n = int(top["heads"].iloc[0]), top["dtype"].iloc[0], int(top["seq_len"].max())
    return [
        link(
            f"{h} heads against one at the same d_model and FLOPs ({dtype}, longest n up to {n}): "
            + "; ".join(parts)
            + ". The explicit softmax holds h·n² scores; flash attention's memory does not grow with h.",
            "What head count does",
        )
    ]


def crossover(ctx: ReportContext) -> list[str]:
    rows = ctx.cells.groupby("shape")[["d_model", "d_ff"]].first()
    parts = []
    for shape, r in rows.iterrows():
        d, f = int(r["d_model"]), int(r["d_ff"])
        one = layer_forward_flops(1, 1, d, f)
        parts.append(f"{shape} at n = {1 / (one.attention_scores / (one.linear - 8 * d * d)):.0f}")
    return [
        link(
            "By FLOPs, the attention scores pass the feed-forward where n reaches d_ff: "
            + ", ".join(parts)
            + "; the traced crossover, where there are traces, is measured in its section.",
            "Where attention overtakes the feed-forward",
        )
    ]


def winners(ctx: ReportContext) -> list[str]:
    """Per mode at the longest length of the widest head count: the fastest attention kernel and its ratio
    to the next, decided with the margin."""
    attention = ctx.cells[(ctx.cells["group"] == "attention") & (ctx.cells["compile"] == "eager")]
    if attention["impl"].nunique() < 2:
        return []
    attention = attention[attention["heads"] == attention["heads"].max()]
    groups = list(attention.groupby(["device", "dtype", "mode"]))
    level = family_confidence(len(groups))
    parts = []
    for (_, dtype, mode), group in groups:
        longest = group[group["seq_len"] == group["seq_len"].max()].sort_values("median_s")
        if len(longest) < 2:
            continue
        first, second = longest.iloc[0], longest.iloc[1]
        ratio = ratio_interval(first["device_passes_s"], second["device_passes_s"], level)
        parts.append(
            f"{mode} {dtype} n={int(first['seq_len'])}: {first['impl']} (x{ratio.estimate:.2f} "
            f"[{ratio.low:.2f}, {ratio.high:.2f}] {second['impl']}'s time, {decide(ratio)})"
        )
    if not parts:
        return []
    return [
        link(
            f"The fastest attention kernel at each longest length ({int(attention['heads'].max())} heads): "
            + "; ".join(parts)
            + ".",
            "Which kernels ran",
        )
    ]


def axis_cost(ctx: ReportContext, axis: str, base: str, heading: str, what: str) -> list[str]:
    """The median over cells of each value of `axis` against `base` at the longest length."""
    cells = ctx.cells[ctx.cells["group"].isin(["layer", "train_step"])]
    if cells[axis].nunique() < 2:
        return []
    keys = [
        "group",
        "device",
        "dtype",
        "shape",
        "seq_len",
        "heads",
        "impl",
        "mode",
        "dropout",
        "pos_encoding",
        "compile",
    ]
    keys.remove(axis)
    merged = cells[cells[axis] != base].merge(cells[cells[axis] == base], on=keys, suffixes=("", "_base"))
    merged = merged[merged["seq_len"] == merged["seq_len"].max()]
    if merged.empty:
        return []
    parts = []
    for value, group in merged.groupby(axis):
        ratios = [cell_ratio(r) for r in group.to_dict("records")]
        words = pd.Series([decide(i) for i in ratios]).value_counts()
        median = pd.Series([i.estimate for i in ratios]).median()
        parts.append(
            f"{value} x{median:.2f} (median of {len(ratios)}; " + ", ".join(f"{w} {n}" for w, n in words.items()) + ")"
        )
    n = int(merged["seq_len"].max())
    return [link(f"{what} at n={n}, device time against {base}: " + "; ".join(parts) + ".", heading)]


def references(ctx: ReportContext) -> list[str]:
    level = family_confidence(max(time_comparisons(ctx.cells), 1))
    tables = {impl: pair_table(ctx.cells, impl, confidence=level) for impl in {t.impl for t in TARGETS}}
    judged = [(t, judge(tables[t.impl], t, level)) for t in TARGETS]
    judged = [(t, j) for t, j in judged if len(j)]
    if not judged:
        return []
    out = [f"{t.label}: {verdict_counts(j, t.metric)} of {len(j)} cells" for t, j in judged]
    timed = [j for t, j in judged if t.metric == "time"]
    if not timed:
        return [link("; ".join(out) + ".", "Our encoder layer vs nn.TransformerEncoderLayer")]
    timed = pd.concat(timed)
    verdicts, words = timed["verdict"].value_counts(), timed["word"].value_counts()
    head = (
        f"Ours against torch's layer ({len(timed)} time verdicts, margin {MARGIN:.0%}: "
        + ", ".join(f"{v} {verdicts.get(v, 0)}" for v in ("met", "missed", "inconclusive"))
        + "; in words "
        + ", ".join(f"{w} {words[w]}" for w in sorted(words.index, key=word_order))
        + "). "
    )
    return [link(head + "; ".join(out) + ".", "Our encoder layer vs nn.TransformerEncoderLayer")]


def findings_section(ctx: ReportContext) -> list[str]:
    bullets = [
        *growth(ctx),
        *heads(ctx),
        *crossover(ctx),
        *winners(ctx),
        *axis_cost(ctx, "pos_encoding", "none", "What each positional encoding costs", "Each positional encoding"),
        *axis_cost(ctx, "compile", "eager", "What compilation buys", "Compilation"),
        *variant_findings(ctx),
        *references(ctx),
    ][:MAX_FINDINGS]
    if not bullets:
        return []
    return ["## What this run found", "", *[f"- {b}" for b in bullets], ""]
