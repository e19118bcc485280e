"""Ours against torch: per-cell ratios with intervals, and each target's verdict (met, missed,
inconclusive) with its margin. Pure functions: cells in, tables and sentences out."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.stats import Interval, ratio_interval, verdict
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


def pair_table(cells: pd.DataFrame, impl: str, modes: tuple[str, ...] = ("eval", "train")) -> pd.DataFrame:
    """One row per layer cell where `impl` and torch ran under the same parameters: device-time ratio
    ours/torch with its interval, memory ratio (exact), and the attention kernel each ran."""
    layer = cells[(cells["group"] == "layer") & cells["mode"].isin(modes)]
    ours, torch_ = layer[layer["impl"] == impl], layer[is_baseline(layer)]
    merged = ours.merge(torch_, on=PAIR_KEYS, suffixes=("_ours", "_torch"))
    rows = []
    for r in merged.to_dict("records"):
        interval = ratio_interval(r["device_passes_s_ours"], r["device_passes_s_torch"])
        rows.append(
            {
                **{k: r[k] for k in PAIR_KEYS},
                "time_ratio": interval.estimate,
                "time_low": interval.low,
                "time_high": interval.high,
                "interval": interval.method,
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
        "memory_ratio",
        "kernel_ours",
        "kernel_torch",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values(["device", "shape", "dtype", "mode", "dropout", "seq_len"])


def judge(pairs: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The target's cells with a verdict each: time by its interval, memory exactly."""
    scope = pairs[pairs["mode"].isin(target.modes) & (pairs["pos_encoding"] == "none") & (pairs["compile"] == "eager")]
    if target.where:
        scope = scope.query(target.where)
    scope = scope.copy()
    if target.metric == "time":
        scope["verdict"] = [
            verdict(Interval(r["time_ratio"], r["time_low"], r["time_high"], r["interval"]), target.threshold)
            for r in scope.to_dict("records")
        ]
        scope["margin"] = target.threshold / scope["time_ratio"] - 1
    else:
        scope["verdict"] = ["met" if m <= target.threshold else "missed" for m in scope["memory_ratio"]]
        scope["margin"] = target.threshold / scope["memory_ratio"] - 1
    return scope


def target_sentence(target: Target, judged: pd.DataFrame) -> str:
    """'met in 8, missed in 1, inconclusive in 1 of 10 cells; worst: ...' with the margin stated."""
    if judged.empty:
        return f"- {target.label}: no cells in this run."
    counts = judged["verdict"].value_counts()
    parts = [f"{word} in {counts.get(word, 0)}" for word in ("met", "missed", "inconclusive") if counts.get(word, 0)]
    worst = judged.loc[judged["margin"].idxmin()]
    ratio = worst["time_ratio"] if target.metric == "time" else worst["memory_ratio"]
    band = f" [{worst['time_low']:.3f}, {worst['time_high']:.3f}]" if target.metric == "time" else ""
    need = f"at most {target.threshold:.3f}" if target.threshold != 1.0 else "at most 1"
    dropout = f" p={worst['dropout']:g}" if worst["mode"] == "train" else ""
    where = f"n={int(worst['seq_len'])} {worst['dtype']}{dropout}"
    short = judged[judged["verdict"] != "met"]
    same = int((short["kernel_ours"] == short["kernel_torch"]).sum())
    why = (
        f" In {same} of the {len(short)} cells short of it both ran the same attention kernel, so only the code "
        "around the kernel (projections, reshapes, norms, dropout) differs there."
        if same
        else ""
    )
    return (
        f"- {target.label} (ours/torch {target.metric} {need}): {', '.join(parts)} of {len(judged)} cells. "
        f"Tightest: {where}, ratio {ratio:.3f}{band}, margin {100 * worst['margin']:+.1f}% "
        f"({worst['verdict']}; ours ran {worst['kernel_ours']}, torch ran {worst['kernel_torch']}).{why}"
    )
