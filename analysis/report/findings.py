"""The report's opening: what this run found, in at most 12 bullets, each computed from the data, with its
interval, linking to the section it comes from. The details follow in the sections themselves."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.fits import WORK_MARGIN, growth_word
from analysis.markdown import link
from analysis.report.breakdown import traced_crossovers
from analysis.report.memory_wall import heads_phrase, quoted, wall_table
from analysis.report.scaling import longest_exponents
from analysis.report.targets import time_comparisons
from analysis.stats import MARGIN, family_confidence
from analysis.verdicts import TARGETS, judge, pair_table
from model.cost import dtype_bytes, layer_forward_flops, score_intensity

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

MAX_FINDINGS = 12
MAX_WORDS = 45  # a finding a learner reads at a glance; its section holds the rest


def words_of(bullet: str) -> int:
    """A finding's words, its link to the section left out."""
    return len(re.sub(r" \(\[more\]\(#[^)]*\)\)$", "", bullet).split())


def bullet(lead: str, parts: list[str], heading: str, tail: str = "") -> list[str]:
    """'lead: part; part; part. tail', with as many parts as fit MAX_WORDS (in the given order), linking to its
    section; no bullet where not even one part fits."""
    kept: list[str] = []
    for part in parts:
        text = f"{lead}: " + "; ".join([*kept, part]) + "." + (f" {tail}" if tail else "")
        if words_of(text) > MAX_WORDS:
            break
        kept.append(part)
    if not kept:
        return []
    return [link(f"{lead}: " + "; ".join(kept) + "." + (f" {tail}" if tail else ""), heading)]


def _dtype(frame: pd.DataFrame) -> str:
    """The dtype a finding speaks of: float32, which every CPU runs natively, where the run has it."""
    dtypes = sorted(frame["dtype"].unique())
    return "float32" if "float32" in dtypes else dtypes[0]


def _word(low: float, high: float, work: float) -> str:
    """The growth word, withheld where the time grows slower than its FLOPs (fits.describe_exponent's rule)."""
    if pd.isna(low):
        return ""
    if not pd.isna(work) and high < work - WORK_MARGIN:
        return " slower than its FLOPs"
    word = growth_word(low, high)
    return f" {word}" if word else ""


def growth(ctx: ReportContext) -> list[str]:
    attention = ctx.cells[ctx.cells["group"] == "attention"]
    local = longest_exponents(attention) if len(attention) else pd.DataFrame()
    if local.empty:
        return []
    local = local[local["dtype"] == _dtype(local)]
    out = []
    for (device, dtype, mode), group in local.groupby(["device", "dtype", "mode"]):
        group = group[group["seq_len_to"] == group["seq_len_to"].max()]  # the series that reach furthest
        parts = [
            f"{r['impl']} n^{r['time_exponent']:.2f} [{r['time_low']:.2f}, {r['time_high']:.2f}]"
            + _word(r["time_low"], r["time_high"], r["flops_exponent"])
            for r in group.sort_values("impl").to_dict("records")
        ]
        span = f"n={group['seq_len_from'].max()}→{group['seq_len_to'].max()}"
        out += bullet(f"Attention {mode} time on {device}, {dtype}, {span}", parts, SCALING)
    return out


def memory(ctx: ReportContext) -> list[str]:
    """The memory wall in the form people quote, and how each kernel's memory grows."""
    found = quoted(wall_table(ctx.cells))
    if found is None:
        return []
    text, where = found
    attention = ctx.cells[(ctx.cells["group"] == "attention") & (ctx.cells["dtype"] == where["dtype"])]
    local = longest_exponents(attention[attention["mode"] == where["mode"]]) if len(attention) else pd.DataFrame()
    parts = [f"naive over sdpa {text}"]
    if not local.empty:  # a run of one length has no exponent
        parts += [
            f"{r['impl']} grows n^{r['memory_exponent']:.2f}" for r in local.sort_values("impl").to_dict("records")
        ]
    lead = f"Attention {where['mode']} peak memory, {where['dtype']}, {heads_phrase(int(where['heads']))}"
    return bullet(lead, parts, MEMORY_WALL)


def _with_cells(ctx: ReportContext, comparison: str) -> pd.DataFrame:
    """The comparison's rows beside the axes of the cell they judge."""
    rows = ctx.comparisons[ctx.comparisons["comparison"] == comparison]
    axes = ctx.every_cell[["id", "group", "device", "dtype", "seq_len", "heads", "impl", "mode", "d_model"]]
    axes = axes.drop_duplicates("id")
    extra = [c for c in ("pos_encoding", "compile", "kv_heads") if c in ctx.every_cell]
    return rows.merge(ctx.every_cell[["id", *extra]].drop_duplicates("id").merge(axes, on="id"), on="id")


def _ratio(r: dict) -> str:
    return f"x{r['ratio']:.2f} [{r['level_low']:.2f}, {r['level_high']:.2f}] {r['word']}"


def heads(ctx: ReportContext) -> list[str]:
    table = _with_cells(ctx, "h/1")
    if table.empty:
        return []
    table = table[(table["dtype"] == _dtype(table)) & (table["heads"] == table["heads"].max())]
    table = table[table["seq_len"] == table["seq_len"].max()]
    r0 = table.iloc[0]
    h, d, dtype = int(r0["heads"]), int(r0["d_model"]), r0["dtype"]
    one, many = score_intensity(d, dtype_bytes(dtype)), score_intensity(d // h, dtype_bytes(dtype))
    parts = [f"{r['impl']} {r['mode']} {_ratio(r)}" for r in table.sort_values(["mode", "impl"]).to_dict("records")]
    tail = f"Same FLOPs; explicit scores' intensity falls from {one:.0f} to {many:.0f} FLOP/byte"
    regimes = ctx.regimes
    if not regimes.empty:
        keys = ["device", "dtype", "seq_len", "impl", "mode"]
        at = regimes.merge(table[keys].drop_duplicates(), on=keys)
        moved = at[at["heads"].isin([1, h]) & (at["impl"] == "naive") & (at["mode"] == "forward")]
        words = dict(zip(moved["heads"], moved["regime"]))
        ridges = dict(zip(moved["heads"], zip(moved["ridge"], moved["working_set_level"])))
        if 1 in words and h in words:
            ridge, level = ridges[h]
            tail += (
                f": naive forward {words[1]} at one head, {words[h]} at {h} (ridge {ridge:.1f} FLOP/byte in {level})"
            )
    tail += "."
    return bullet(f"{h} heads against one, {dtype}, n={int(r0['seq_len'])}", parts, HEADS, tail)


def crossover(ctx: ReportContext) -> list[str]:
    rows = ctx.cells.groupby("shape")[["d_model", "d_ff"]].first()
    parts = []
    for shape, r in rows.iterrows():
        d, f = int(r["d_model"]), int(r["d_ff"])
        one = layer_forward_flops(1, 1, d, f)
        parts.append(f"{shape} at n = {1 / (one.attention_scores / (one.linear - 8 * d * d)):.0f}")
    measured = [
        f"{r['impl']} at n ≈ {r['crossover']:.0f}"
        for r in traced_crossovers(ctx.breakdown)
        if r["crossover"] is not None and r["crossover"] > min(r["lengths"])
    ]
    tail = f"Measured in the traced training steps: {', '.join(measured)}." if measured else ""
    lead = "By FLOPs, attention's score matmuls pass the feed-forward where n reaches d_ff"
    return bullet(lead, parts, CROSSOVER, tail)


def roofs(ctx: ReportContext) -> list[str]:
    """The measured roofs and how the attention cells fall under them."""
    table, peaks, levels = ctx.regimes, ctx.matmul_peaks, ctx.bandwidth_roofs
    if table.empty or peaks.empty or levels.empty:
        return []
    dtype = _dtype(peaks)
    peak = peaks[peaks["dtype"] == dtype].iloc[0]
    here = levels[levels["device"] == peak["device"]]  # one device's roofs (a run may hold a CPU's and a GPU's)
    if here.empty:
        return []
    memory = here.iloc[-1]
    parts = [f"{word} {n}" for word, n in table["regime"].value_counts().items()]
    lead = (
        f"Measured roofs: {dtype} matmul {peak['peak_flops_per_s'] / 1e9:.0f} GFLOP/s, {memory['level']} "
        f"{memory['median_bytes_per_s'] / 1e9:.0f} GB/s; of {len(table)} attention cells"
    )
    return bullet(lead, parts, ROOFS)


def targets(ctx: ReportContext) -> list[str]:
    """One finding per time target, and one for the memory targets: the count per verdict and how wide."""
    level = family_confidence(max(time_comparisons(ctx.cells), 1))
    tables = {impl: pair_table(ctx.cells, impl, confidence=level) for impl in {t.impl for t in TARGETS}}
    judged = [(t, judge(tables[t.impl], t, level)) for t in TARGETS]
    judged = [(t, j) for t, j in judged if len(j)]
    out, memory_parts = [], []
    for t, j in judged:
        counts = j["verdict"].value_counts()
        tally = ", ".join(f"{v} {counts.get(v, 0)}" for v in ("met", "missed", "inconclusive"))
        if t.metric != "time":
            memory_parts.append(f"{t.label.rstrip('.')}: {tally} of {len(j)}")
            continue
        half = float((np.sqrt(j["time_high"] / j["time_low"]) - 1).median())
        parts = [f"{tally} of {len(j)} cells", f"median half-width {half:.1%}"]
        need = j.loc[j["verdict"] == "inconclusive", "passes_to_decide"].dropna()
        if counts.get("inconclusive", 0):  # what would decide it: more passes, or none where it sits on the edge
            parts.append(
                f"about {int(need.median())} passes would decide the median undecided cell"
                if len(need)
                else "no number of passes decides a cell on the margin's edge"
            )
        out += bullet(
            t.label,
            parts,
            TARGETS_HEADING,
            f"Met: not slower than the target by more than {MARGIN:.0%}.",
        )
    return out + bullet("Peak memory against torch's layer", memory_parts, TARGETS_HEADING)


def axis_cost(ctx: ReportContext, comparison: str, axis: str, lead: str, heading: str) -> list[str]:
    """A comparison along one axis at its longest length: each value's median ratio, and its words."""
    table = _with_cells(ctx, comparison)
    if table.empty:
        return []
    table = table[table["seq_len"] == table["seq_len"].max()]
    parts = []
    for value, group in table.groupby(axis):
        words = group["word"].value_counts()
        detail = ", ".join(f"{w} {n}" for w, n in words.items()) if len(group) > 1 else group["word"].iloc[0]
        parts.append(f"{value} x{group['ratio'].median():.2f} ({detail})")
    return bullet(f"{lead}, n={int(table['seq_len'].max())}, against {BASES[comparison]}", parts, heading)


def grouped(ctx: ReportContext) -> list[str]:
    table = _with_cells(ctx, "gqa/dense")
    if table.empty:
        return []
    table = table[table["seq_len"] == table["seq_len"].max()]
    table = table[table["kv_heads"] == table["kv_heads"].min()]  # the most grouped: one finding, one grouping
    parts = [f"{r['impl']} {r['mode']} {_ratio(r)}" for r in table.sort_values(["impl", "mode"]).to_dict("records")]
    r0 = table.iloc[0]
    n, h, kv = int(r0["seq_len"]), int(r0["heads"]), int(r0["kv_heads"])
    lead = f"{h} query heads over {kv} key/value head, n={n}, against dense"
    return bullet(lead, parts, VARIANTS)


SCALING = "How attention scales with sequence length"
MEMORY_WALL = "The memory wall: the explicit softmax against flash attention"
HEADS = "What head count does"
CROSSOVER = "Where attention overtakes the feed-forward"
ROOFS = "Measured roofs, and each cell's regime"
TARGETS_HEADING = "Our encoder layer vs nn.TransformerEncoderLayer"
VARIANTS = "Attention variants: grouped-query heads, sliding windows, ALiBi inside the kernel"
ENCODINGS = "What each positional encoding costs"
BASES = {"encoding/none": "none", "compiled/eager": "eager"}


def findings_section(ctx: ReportContext) -> list[str]:
    """At most MAX_FINDINGS findings of at most MAX_WORDS words, by priority: how time and memory grow with length,
    what head count does, the measured roofs, where attention overtakes the feed-forward, then the targets, then
    the rest."""
    bullets = [
        *growth(ctx),
        *memory(ctx),
        *heads(ctx),
        *roofs(ctx),
        *crossover(ctx),
        *targets(ctx),
        *axis_cost(
            ctx,
            "encoding/none",
            "pos_encoding",
            "Positional encodings in a layer",
            "What each positional encoding costs",
        ),
        *axis_cost(ctx, "compiled/eager", "compile", "Compiled layers", "What compilation buys"),
        *grouped(ctx),
    ][:MAX_FINDINGS]
    if not bullets:
        return []
    return ["## What this run found", "", *[f"- {b}" for b in bullets], ""]
