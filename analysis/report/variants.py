"""The report's section on the attention variants, each against the physics the cost model states:
- grouped-query heads (kv_heads < h): the k and v projections and their activations shrink by h / kv_heads, the
  scores do not (every query head still sees every key), so memory and the projection's FLOPs fall, and a kernel
  that repeats k and v to h heads gives part of the memory back;
- a sliding window of w keys: the pairs a query sees grow linearly in n at a fixed w, so a kernel that skips the
  masked blocks grows linearly; one that computes every score and masks after grows as the dense cell does.
Each comparison is a declared pair of the run (bench/pairs.py): a grouped cell beside the same cell with every
head's own, a window at n beside the window at n/2."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from analysis.fits import describe_exponent, local_exponents
from analysis.markdown import link, md
from analysis.stats import IN_RUN, MARGIN, cell_ratio, decide, family_confidence
from model.cost import attention_score_flops, effective_score_flops

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

HEADING = "Attention variants: grouped-query heads and sliding windows"
KEYS = ["device", "dtype", "shape", "seq_len", "heads", "impl", "mode"]
MEMORY_AGREES = 0.25  # measured over predicted memory ratio within ±25% agrees with the model


def is_variant(cells: pd.DataFrame) -> pd.Series:
    """The cells of an attention variant: fewer key/value heads than query heads, or a window of keys."""
    return (cells["kv_heads"] > 0) | (cells["window"] > 0)


def effective_flops(r: dict) -> float:
    """A cell's FLOPs over the pairs its window leaves: the recorded (dense) figure less the masked pairs' share
    of the score matmuls, in the same proportion as the step's score FLOPs (forward, and backward where timed)."""
    b, n, d = int(r["batch"]), int(r["seq_len"]), int(r["d_model"])
    dense_scores = attention_score_flops(b, n, d)
    kept = effective_score_flops(b, n, d, window=int(r["window"]) or None) / dense_scores
    steps = 3 if r["mode"] == "train" else 1  # backward: two matmuls per forward one (model/cost.py)
    return float(r["flops"]) - steps * dense_scores * (1 - kept)


def _memory_word(measured: float, predicted: float) -> str:
    if math.isnan(predicted):
        return "no model"
    return "met" if abs(measured / predicted - 1) <= MEMORY_AGREES else "missed"


def grouped_table(variants: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
    """Every grouped-query cell beside its cell with every head's own: time ratio with its interval (simultaneous
    over the rows) and word, memory ratio measured and predicted, FLOPs ratio, the kernels observed."""
    grouped = variants[(variants["kv_heads"] > 0) & (variants["window"] == 0)]
    merged = grouped.merge(dense[dense["window"] == 0], on=KEYS, suffixes=("", "_dense"))
    if merged.empty:
        return pd.DataFrame()
    level = family_confidence(len(merged))
    rows = []
    for r in merged.to_dict("records"):
        interval = cell_ratio(r, "", "_dense", level)
        predicted = (
            r["predicted_mem_bytes"] / r["predicted_mem_bytes_dense"]
            if r.get("predicted_mem_bytes") and r.get("predicted_mem_bytes_dense")
            else math.nan
        )
        measured = r["peak_mem_bytes"] / r["peak_mem_bytes_dense"]
        rows.append(
            {
                **{k: r[k] for k in KEYS},
                "kv_heads": int(r["kv_heads"]),
                "time_vs_dense": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "word": decide(interval),
                "paired": interval.method == IN_RUN,
                "memory_vs_dense": measured,
                "memory_predicted": predicted,
                "memory_model": _memory_word(measured, predicted),
                "flops_vs_dense": r["flops"] / r["flops_dense"],
                "kernel": r["attention_kernel"],
            }
        )
    return pd.DataFrame(rows).sort_values([*KEYS, "kv_heads"])


def _exponent(a: float, b: float, span: float) -> float:
    return math.log(b / a) / span


def window_table(variants: pd.DataFrame) -> pd.DataFrame:
    """Per window series, between its two longest lengths: the local exponent of time (interval from the in-run
    pairs of n against n/2) beside the exponents of the dense and the effective FLOPs, and memory's (exact)
    beside the model's; the verdict says which the time follows."""
    windows = variants[variants["window"] > 0]
    if windows.empty:
        return pd.DataFrame()
    local = local_exponents(windows)
    if local.empty:
        return local
    series = ["device", "dtype", "shape", "heads", "impl", "mode", "kv_heads", "window"]
    local = local[local["seq_len_to"] == local.groupby(series)["seq_len_to"].transform("max")]
    by_length = {(*(c[k] for k in series), int(c["seq_len"])): c for c in windows.to_dict("records")}
    rows = []
    for r in local.to_dict("records"):
        ends = [by_length[(*(r[k] for k in series), int(n))] for n in (r["seq_len_from"], r["seq_len_to"])]
        span = math.log(r["seq_len_to"] / r["seq_len_from"])
        dense = _exponent(ends[0]["flops"], ends[1]["flops"], span)
        effective = _exponent(effective_flops(ends[0]), effective_flops(ends[1]), span)
        model = (
            _exponent(ends[0]["predicted_mem_bytes"], ends[1]["predicted_mem_bytes"], span)
            if ends[0].get("predicted_mem_bytes") and ends[1].get("predicted_mem_bytes")
            else math.nan
        )
        low, high = r["time_low"], r["time_high"]
        holds_dense, holds_effective = low <= dense <= high, low <= effective <= high
        follows = (
            "the dense FLOPs"
            if holds_dense and not holds_effective
            else "the window's FLOPs"
            if holds_effective and not holds_dense
            else "neither"
            if not (holds_dense or holds_effective)
            else "undecided between them"
        )
        rows.append(
            {
                **{k: r[k] for k in series},
                "seq_len_from": r["seq_len_from"],
                "seq_len_to": r["seq_len_to"],
                "time_exponent": r["time_exponent"],
                "time_low": low,
                "time_high": high,
                "paired": r["paired"],
                "dense_flops_exponent": dense,
                "effective_flops_exponent": effective,
                "follows": follows,
                "memory_exponent": r["memory_exponent"],
                "memory_model_exponent": model,
                "kernel": ends[1]["attention_kernel"],
                "effective_flops_share": effective_flops(ends[1]) / ends[1]["flops"],
            }
        )
    return pd.DataFrame(rows).sort_values(series)


def grouped_lines(table: pd.DataFrame) -> list[str]:
    """At the longest length, the fewest key/value heads per kernel and mode: what grouping changed."""
    if table.empty:
        return []
    longest = table[table["seq_len"] == table.groupby(["impl", "mode"])["seq_len"].transform("max")]
    fewest = longest[longest["kv_heads"] == longest.groupby(["impl", "mode"])["kv_heads"].transform("min")]
    return [
        f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, n={r['seq_len']}: {r['heads']} query heads over "
        f"{r['kv_heads']} key/value head{'s' if r['kv_heads'] > 1 else ''} take x{r['time_vs_dense']:.2f} "
        f"[{r['low']:.2f}, {r['high']:.2f}] the time of {r['heads']} ({r['word']}), FLOPs x{r['flops_vs_dense']:.3f}; "
        f"memory x{r['memory_vs_dense']:.3f} against the model's x{r['memory_predicted']:.3f} "
        f"(model {r['memory_model']}); kernel {r['kernel']}."
        for r in fewest.sort_values(["device", "dtype", "impl", "mode"]).to_dict("records")
    ]


def window_lines(table: pd.DataFrame) -> list[str]:
    return [
        f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, window {r['window']}, "
        f"n={r['seq_len_from']}→{r['seq_len_to']}: time "
        f"{describe_exponent(r['time_exponent'], r['time_low'], r['time_high'])}; the dense FLOPs grow "
        f"n^{r['dense_flops_exponent']:.2f}, the window's n^{r['effective_flops_exponent']:.2f}: the time follows "
        f"{r['follows']}. Memory n^{r['memory_exponent']:.2f} (model n^{r['memory_model_exponent']:.2f}); "
        f"kernel {r['kernel']}; {r['effective_flops_share']:.0%} of the dense FLOPs are in the window."
        for r in table.to_dict("records")
    ]


def variants_section(ctx: ReportContext) -> list[str]:
    if ctx.variants.empty:
        return []
    grouped = grouped_table(ctx.variants, ctx.cells)
    windows = window_table(ctx.variants)
    lines = [f"## {HEADING}", ""]
    if not grouped.empty:
        words, paired = grouped["word"].value_counts(), int(grouped["paired"].sum())
        lines += [
            f"Grouped-query heads, each cell against the same cell with every head's own ({paired}"
            f" of {len(grouped)} timed as in-run pairs; simultaneous 95% intervals, margin {MARGIN:.0%}: "
            + ", ".join(f"{w} {words.get(w, 0)}" for w in ("faster", "equivalent", "slower", "inconclusive"))
            + "). The physics: k and v shrink by h / kv_heads, the scores do not; a kernel that repeats k and v "
            "to every head (ours, SDPA's math) holds the copies. Memory is exact, and judged against the cost "
            f"model within ±{MEMORY_AGREES:.0%}.",
            "",
            *grouped_lines(grouped),
            "",
            "<details><summary>Every grouped comparison</summary>",
            "",
            md(grouped, ".3f"),
            "",
            "</details>",
            "",
        ]
    if not windows.empty:
        lines += [
            "A sliding window, between each series' two longest lengths (time's 95% interval from the in-run pairs "
            "of n against n/2 where the run timed them). At a fixed window the pairs a query sees stop growing, "
            "so a kernel that skips the masked blocks follows the window's FLOPs (about linear); one that computes "
            "every score and masks after follows the dense FLOPs.",
            "",
            *window_lines(windows),
            "",
        ]
    return lines


def variant_findings(ctx: ReportContext) -> list[str]:
    """At most two bullets for the report's opening: grouping at its fewest key/value heads, and the window's
    growth, each linking here."""
    if ctx.variants.empty:
        return []
    out = []
    grouped = grouped_table(ctx.variants, ctx.cells)
    if not grouped.empty:
        longest = grouped[grouped["seq_len"] == grouped["seq_len"].max()]
        fewest = longest[longest["kv_heads"] == longest["kv_heads"].min()]
        parts = [
            f"{r['impl']} {r['mode']} x{r['time_vs_dense']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['word']}), "
            f"memory x{r['memory_vs_dense']:.2f} (model x{r['memory_predicted']:.2f})"
            for r in fewest.sort_values(["impl", "mode"]).to_dict("records")
        ]
        r0 = fewest.iloc[0]
        out.append(
            link(
                f"Grouped-query heads at n={r0['seq_len']}, {r0['heads']} query heads over {r0['kv_heads']} "
                "key/value, against every head's own: " + "; ".join(parts) + ".",
                HEADING,
            )
        )
    windows = window_table(ctx.variants)
    if not windows.empty:
        parts = [
            f"{r['impl']} {r['mode']} n^{r['time_exponent']:.2f} [{r['time_low']:.2f}, {r['time_high']:.2f}] follows "
            f"{r['follows']}"
            for r in windows.to_dict("records")
        ]
        r0 = windows.iloc[0]
        out.append(
            link(
                f"A window of {r0['window']} keys, n={r0['seq_len_from']}→{r0['seq_len_to']} (dense FLOPs "
                f"n^{r0['dense_flops_exponent']:.2f}, the window's n^{r0['effective_flops_exponent']:.2f}): "
                + "; ".join(parts)
                + ".",
                HEADING,
            )
        )
    return out
