"""The report's section on head count: at a fixed d_model, what h heads cost against one, per kernel and mode,
beside the physics the cost model states. Splitting d_model into h heads leaves the FLOPs where they are
(each head's matmuls shrink with d_head = d_model / h); a kernel that writes its scores to memory holds and moves
h·n² of them, so its memory and its bytes moved grow with h (its FLOPs per byte fall as d_head); flash attention's
memory does not."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.markdown import md
from analysis.stats import MARGIN, WORDS, Interval, cell_ratio, decide, family_confidence
from model.cost import dtype_bytes, score_intensity
from model.kernels import SCORES_IN_MEMORY, attention_family

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

KEYS = ["device", "dtype", "shape", "seq_len", "impl", "mode"]
MEMORY_AGREES = 0.25  # measured over predicted memory ratio within ±25% agrees with the physics


def head_ratios(cells: pd.DataFrame) -> pd.DataFrame:
    """Every attention cell with h > 1 heads beside its one-head cell: time ratio with its interval
    (simultaneous over the rows) and word, memory ratio measured and predicted, FLOPs ratio."""
    attention = cells[(cells["group"] == "attention") & (cells["compile"] == "eager")]
    one, many = attention[attention["heads"] == 1], attention[attention["heads"] > 1]
    merged = many.merge(one, on=KEYS, suffixes=("", "_one"))
    if merged.empty:
        return pd.DataFrame()
    level = family_confidence(len(merged))
    rows = []
    for r in merged.to_dict("records"):
        interval = cell_ratio(r, "", "_one", level)
        predicted = (
            r["predicted_mem_bytes"] / r["predicted_mem_bytes_one"]
            if r.get("predicted_mem_bytes") and r.get("predicted_mem_bytes_one")
            else float("nan")
        )
        rows.append(
            {
                **{k: r[k] for k in KEYS},
                "heads": int(r["heads"]),
                "d_head": int(r["d_model"]) // int(r["heads"]),
                "time_vs_1_head": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "word": decide(Interval(interval.estimate, interval.low, interval.high, interval.method)),
                "flops_vs_1_head": r["flops"] / r["flops_one"] if r.get("flops_one") else float("nan"),
                "memory_vs_1_head": r["peak_mem_bytes"] / r["peak_mem_bytes_one"],
                "memory_predicted": predicted,
                "kernel": r["attention_kernel"],
                "d_model": int(r["d_model"]),
            }
        )
    return pd.DataFrame(rows).sort_values([*KEYS, "heads"])


def reading(r: dict) -> str:
    """What a head-count ratio says, in words that claim only what the physics states and the run measured."""
    word = r["word"]
    if word == "inconclusive":
        return "not resolved against one head"
    if attention_family(r["kernel"]) in SCORES_IN_MEMORY:  # the scores go through memory: bytes grow with h
        per_byte = dtype_bytes(r["dtype"])
        at_one, here = score_intensity(int(r["d_model"]), per_byte), score_intensity(r["d_head"], per_byte)
        physics = (
            f"its kernel writes the h·n² scores to memory, so at the same FLOPs it moves more bytes as h grows "
            f"(about {at_one:.0f} FLOP/byte at one head, {here:.0f} at d_head {r['d_head']}, from model/cost.py)"
        )
        return f"{word} at the same FLOPs: {physics}" + ("" if word == "slower" else "; slower is what that predicts")
    return f"{word} at the same FLOPs, in smaller per-head matmuls (d_head {r['d_head']}); the cause is not measured"


def with_regimes(table: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    """Each comparison beside both cells' score-phase intensity and regime (analysis/roofline.py); NaN where the
    run has no measured roofs."""
    if regimes.empty:
        return table.assign(intensity_one=float("nan"), intensity=float("nan"), regime_one="", regime="")
    keys = ["device", "dtype", "seq_len", "impl", "mode", "heads"]
    facts = regimes[[*keys, "score_intensity", "regime"]].drop_duplicates(keys)
    here = facts.rename(columns={"score_intensity": "intensity"})
    one = facts[facts["heads"] == 1].drop(columns="heads")
    one = one.rename(columns={"score_intensity": "intensity_one", "regime": "regime_one"})
    table = table.merge(here, on=keys, how="left").merge(one, on=keys[:-1], how="left")
    return table.fillna({"regime": "", "regime_one": ""})


def regime_words(r: dict) -> str:
    if not r.get("regime"):
        return ""
    regimes = f"{r['regime_one']} at one head and {r['regime']} at {r['heads']} against this run's roofs"
    if r["intensity"] == float("inf"):
        return f"; its fused kernel moves no scores through memory: {regimes}"
    if r["intensity_one"] == float("inf"):  # a fast path that fuses one head's attention and not h heads'
        return f"; its kernel moves no scores at one head and {r['intensity']:.1f} FLOP/byte of them here: {regimes}"
    return f"; its score phase moves from {r['intensity_one']:.1f} to {r['intensity']:.1f} FLOP/byte: {regimes}"


def heads_section(ctx: ReportContext) -> list[str]:
    table = head_ratios(ctx.cells)
    if table.empty:
        return []
    table = with_regimes(table, ctx.regimes)
    longest = table[table["seq_len"] == table.groupby(["device", "dtype", "impl", "mode"])["seq_len"].transform("max")]
    widest = longest[longest["heads"] == longest["heads"].max()]
    words = table["word"].value_counts()
    lines = [
        "## What head count does",
        "",
        f"At a fixed d_model, h heads against one, per kernel and mode: device time (simultaneous 95% intervals "
        f"over the {len(table)} comparisons, in three words with a {MARGIN:.0%} margin: "
        + ", ".join(f"{w} {words.get(w, 0)}" for w in WORDS)
        + "), peak memory measured beside the cost model's prediction, and FLOPs. The physics: the FLOPs do not "
        "depend on h (each head's matmuls shrink with d_head); a kernel that writes its scores to memory holds "
        "and moves h·n² of them, so its memory and bytes moved grow with h at the same FLOPs; flash attention's "
        "memory does not.",
        "",
    ]
    flops_off = table[(table["flops_vs_1_head"] - 1).abs() > 1e-9]
    lines.append(
        f"- FLOPs: the same at every head count in {len(table) - len(flops_off)} of {len(table)} comparisons"
        + (
            f"; they differ in {len(flops_off)} ({', '.join(sorted(set(flops_off['impl'])))})."
            if len(flops_off)
            else "."
        )
    )
    for r in widest.sort_values(["device", "dtype", "impl", "mode"]).to_dict("records"):
        predicted = r["memory_predicted"]
        if predicted == predicted:  # not NaN: the cost model has this implementation
            agrees = abs(r["memory_vs_1_head"] / predicted - 1) <= MEMORY_AGREES
            physics = f"the cost model predicts x{predicted:.2f}, " + (
                "which the measurement agrees with" if agrees else "from which the measurement departs"
            )
        else:
            physics = "no prediction for this implementation"
        lines.append(
            f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, n={r['seq_len']}: {r['heads']} heads "
            f"(d_head {r['d_head']}) take x{r['time_vs_1_head']:.2f} [{r['low']:.2f}, {r['high']:.2f}] the time of "
            f"one, {reading(r)}{regime_words(r)}; memory x{r['memory_vs_1_head']:.2f} ({physics}); kernel "
            f"{r['kernel']}."
        )
    columns = [
        *KEYS,
        "heads",
        "d_head",
        "time_vs_1_head",
        "low",
        "high",
        "word",
        "memory_vs_1_head",
        "memory_predicted",
        "flops_vs_1_head",
        *(["intensity_one", "intensity", "regime_one", "regime"] if len(ctx.regimes) else []),
    ]
    details = ["<details><summary>Every comparison</summary>", "", md(table[columns], ".3f"), "", "</details>"]
    return lines + ["", *details, ""]
