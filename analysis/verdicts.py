"""Ours against torch: per-cell ratios with intervals, and each target's verdict (met, missed,
inconclusive) with its margin and the three words it rests on. Pure functions: cells in, tables and sentences out."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.stats import (
    CONFIDENCE,
    MARGIN,
    PASS_PAIRS,
    Interval,
    cell_ratio,
    passes_to_decide,
    target_verdict,
    word_or_words,
)
from infra.registry import OURS_AUTO_LAYER, OURS_LAYER

PAIR_KEYS = ["device", "dtype", "shape", "seq_len", "heads", "mode", "dropout", "pos_encoding", "compile"]


@dataclass(frozen=True)
class Target:
    label: str
    impl: str  # ours-side implementation
    modes: tuple[str, ...]  # the layer modes it covers (eval, train)
    metric: str  # "time" (device time) or "memory"
    threshold: float  # ours / torch must be at most this
    where: str = ""  # pandas query over the pair table (dtype, seq_len, device, shape)


# The layer's standing targets, the auto kernel's and the GPU goals.
TARGETS = (
    Target("Training step at least as fast as torch's", OURS_LAYER, ("train",), "time", 1.0),
    Target("Training step no more peak memory than torch's", OURS_LAYER, ("train",), "memory", 1.0),
    Target(
        "Eval: ours (SDPA) at least as fast as torch's fast path from n=1024",
        OURS_LAYER,
        ("eval",),
        "time",
        1.0,
        "seq_len >= 1024",
    ),
    Target(
        "Eval: ours (SDPA) no more memory than torch's fast path from n=1024",
        OURS_LAYER,
        ("eval",),
        "memory",
        1.0,
        "seq_len >= 1024",
    ),
    Target(
        "CPU: ours (auto) ≥ 1.0x torch in eval, every length, float32 and bfloat16",
        OURS_AUTO_LAYER,
        ("eval",),
        "time",
        1.0,
        "device == 'cpu' and dtype in ['float32', 'bfloat16']",
    ),
    Target(
        "CPU: ours (auto) ≥ 1.1x torch in the training step, every length, float32 and bfloat16",
        OURS_AUTO_LAYER,
        ("train",),
        "time",
        1 / 1.1,
        "device == 'cpu' and dtype in ['float32', 'bfloat16'] and dropout == 0",
    ),
    Target(
        "GPU, b=8 d=1024 bf16, n ≥ 2048: ours eval ≥ 1.0x torch's fast path",
        OURS_LAYER,
        ("eval",),
        "time",
        1.0,
        "device == 'cuda' and shape == 'bert_large' and dtype == 'bfloat16' and seq_len >= 2048",
    ),
    Target(
        "GPU, b=8 d=1024 bf16, n ≥ 2048: ours training ≥ 1.2x torch",
        OURS_LAYER,
        ("train",),
        "time",
        1 / 1.2,
        "device == 'cuda' and shape == 'bert_large' and dtype == 'bfloat16' and seq_len >= 2048",
    ),
)


def is_baseline(cells: pd.DataFrame) -> pd.Series:
    """The cells of the group's baseline, as the registry marked them (analysis.load.upgrade marks older runs)."""
    return cells["baseline"].astype(bool)


def pair_table(
    cells: pd.DataFrame, impl: str, modes: tuple[str, ...] = ("eval", "train"), confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """One row per layer cell where `impl` and torch ran under the same parameters: device-time ratio
    ours/torch with its interval (at `confidence`), memory ratio (exact), and the attention kernel each ran."""
    layer = cells[(cells["group"] == "layer") & cells["mode"].isin(modes)]
    ours, torch_ = layer[layer["impl"] == impl], layer[is_baseline(layer)]
    merged = ours.merge(torch_, on=PAIR_KEYS, suffixes=("_ours", "_torch"))
    rows = []
    for r in merged.to_dict("records"):
        interval = cell_ratio(r, "_ours", "_torch", confidence)
        rows.append(
            {
                **{k: r[k] for k in PAIR_KEYS},
                "time_ratio": interval.estimate,
                "time_low": interval.low,
                "time_high": interval.high,
                "interval": interval.method,
                "passes": int(min(r["passes_ours"], r["passes_torch"])),
                "df": interval.df,
                "blocks": interval.blocks,
                "memory_ratio": r["peak_mem_bytes_ours"] / r["peak_mem_bytes_torch"],
                "kernel_ours": r["attention_kernel_ours"],
                "kernel_torch": r["attention_kernel_torch"],
            }
        )
    columns = [
        *PAIR_KEYS,
        "time_ratio",
        "time_low",
        "time_high",
        "interval",
        "passes",
        "df",
        "blocks",
        "memory_ratio",
        "kernel_ours",
        "kernel_torch",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values(["device", "shape", "dtype", "mode", "dropout", "seq_len"])


def judge(pairs: pd.DataFrame, target: Target, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The target's cells with a verdict each: time by its interval, memory exactly."""
    scope = pairs[pairs["mode"].isin(target.modes) & (pairs["pos_encoding"] == "none") & (pairs["compile"] == "eager")]
    if target.where:
        scope = scope.query(target.where)
    scope = scope.copy()
    if target.metric == "time":  # ours/torch over the target, in three words with the margin
        relative = [
            Interval(
                r["time_ratio"] / t,
                r["time_low"] / t,
                r["time_high"] / t,
                r["interval"],
                df=r["df"],
                blocks=int(r["blocks"]) if pd.notna(r["blocks"]) else None,
                passes=int(r["passes"]) if r["interval"] == PASS_PAIRS else None,
            )
            for r, t in zip(scope.to_dict("records"), [target.threshold] * len(scope))
        ]
        scope["word"] = [word_or_words(i) for i in relative]  # the three words, or those still open
        scope["verdict"] = [target_verdict(i) for i in relative]
        scope["passes_to_decide"] = [
            passes_to_decide(i, int(p), confidence, upper_only=True) if verdict == "inconclusive" else None
            for i, p, verdict in zip(relative, scope["passes"], scope["verdict"])
        ]
        scope["margin"] = target.threshold / scope["time_ratio"] - 1
    else:
        scope["verdict"] = ["met" if m <= target.threshold else "missed" for m in scope["memory_ratio"]]
        scope["word"] = scope["verdict"]  # exact: no interval, no margin
        scope["margin"] = target.threshold / scope["memory_ratio"] - 1
    return scope


# How a target's met cells name their word (the ratio over the target, with the margin m)
MET_WORDS = {
    "faster": "faster than the target by more than {m}",
    "equivalent": "within ±{m} of it",
    "faster or equivalent": "faster or within ±{m} of it, not told apart,",
}


def verdict_counts(judged: pd.DataFrame, metric: str) -> str:
    """'met in 8 (faster than the target by more than 5% in 2, within ±5% of it in 6), missed in 1 (slower by
    more than 5%), inconclusive in 1 (about 9 passes would decide the median one)' for time; 'met in 8, missed in 2' for
    memory."""
    counts = judged["verdict"].value_counts()
    if metric != "time":
        return ", ".join(f"{w} in {counts[w]}" for w in ("met", "missed") if counts.get(w, 0))
    m = f"{MARGIN:.0%}"
    met = judged.loc[judged["verdict"] == "met", "word"].value_counts()
    inner = ", ".join(f"{MET_WORDS[w].format(m=m)} in {met[w]}" for w in MET_WORDS if met.get(w, 0))
    parts = [f"met in {met.sum()} ({inner})"] if met.sum() else []
    if counts.get("missed", 0):
        parts.append(f"missed in {counts['missed']} (slower by more than {m})")
    if counts.get("inconclusive", 0):
        asked = judged.loc[judged["verdict"] == "inconclusive", "passes_to_decide"]
        need, on_edge = asked.dropna(), int(asked.isna().sum())
        why = [f"about {int(need.median())} passes would decide the median one"] if len(need) else []
        if on_edge:
            why.append(f"{on_edge} on the margin's edge itself, which no number of passes decides")
        parts.append(f"inconclusive in {counts['inconclusive']}" + (f" ({'; '.join(why)})" if why else ""))
    return ", ".join(parts)


def target_sentence(target: Target, judged: pd.DataFrame) -> str:
    """The target's verdict counts with the margin stated, and its worst cell."""
    if judged.empty:
        return f"- {target.label}: no cells in this run."
    parts = [verdict_counts(judged, target.metric)]
    worst = judged.loc[judged["margin"].idxmin()]
    ratio = worst["time_ratio"] if target.metric == "time" else worst["memory_ratio"]
    band = f" [{worst['time_low']:.3f}, {worst['time_high']:.3f}]" if target.metric == "time" else ""
    need = f"at most {target.threshold:.3f}" if target.threshold != 1.0 else "at most 1"
    dropout = f" p={worst['dropout']:g}" if worst["mode"] == "train" else ""
    where = f"n={int(worst['seq_len'])} {worst['dtype']}{dropout}"
    word = f"{worst['word']}: " if worst["word"] != worst["verdict"] else ""
    missed = judged[judged["verdict"] == "missed"]  # decided short of it, not merely unresolved
    same = int((missed["kernel_ours"] == missed["kernel_torch"]).sum())
    why = (
        f" In {same} of the {len(missed)} cells decided short of it both ran the same attention kernel, so only "
        "the code around the kernel (projections, reshapes, norms, dropout) differs there."
        if same
        else ""
    )
    return (
        f"- {target.label} (ours/torch {target.metric} {need}): {', '.join(parts)} of {len(judged)} cells. "
        f"Worst cell: {where}, ratio {ratio:.3f}{band}, margin {100 * worst['margin']:+.1f}% "
        f"({word}{worst['verdict']}; ours ran {worst['kernel_ours']}, "
        f"torch ran {worst['kernel_torch']}).{why}"
    )
