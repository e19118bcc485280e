"""Small computed tables and sentences for the report, one question each."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.traces import load_breakdowns


def describe_exponent(value: float, se: float) -> str:
    """'n^1.93 ± 0.04 (close to quadratic)': the words follow the number, not a template."""
    if pd.isna(value):
        return "not measured"
    words = (
        "close to quadratic"
        if abs(value - 2) <= 0.25
        else "close to linear"
        if abs(value - 1) <= 0.25
        else "between linear and quadratic"
        if 1 < value < 2
        else "sub-linear"
        if value < 1
        else "super-quadratic"
    )
    return f"n^{value:.2f} ± {se:.2f} ({words})" if not pd.isna(se) else f"n^{value:.2f} ({words})"


def kernels_table(cells: pd.DataFrame) -> pd.DataFrame:
    data = cells[cells["group"] != "calibration"]
    table = data.groupby(["group", "impl", "pass", "dropout", "device"])["sdpa_backend"].agg(
        lambda s: ", ".join(sorted(s.unique()))
    )
    return table.reset_index().rename(columns={"sdpa_backend": "attention kernel that ran"})


def _ratio_table(ours: pd.DataFrame, torch_: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    merged = ours.merge(torch_, on=keys, suffixes=("_ours", "_torch"))
    merged["time_ratio"] = merged["median_s_ours"] / merged["median_s_torch"]
    # Timing noise of the pair: the larger relative IQR of the two cells. Memory is exact (no noise).
    merged["time_noise"] = (
        merged[["iqr_s_ours", "iqr_s_torch"]].values / merged[["median_s_ours", "median_s_torch"]].values
    ).max(axis=1)
    merged["memory_ratio"] = merged["peak_mem_bytes_ours"] / merged["peak_mem_bytes_torch"]
    return merged[keys + ["time_ratio", "time_noise", "memory_ratio"]].sort_values(keys)


def _verdict(table: pd.DataFrame, column: str, label: str, noise: str | None = None) -> str:
    """Met where ours/torch <= 1; 'within noise' where it is over by less than the cells' relative IQR."""
    if table.empty:
        return f"- {label}: no cells to compare."
    over = table[table[column] > 1.0]
    slack = over[noise] if noise else 0.0
    missed = over[over[column] - 1.0 > slack]
    tied = len(over) - len(missed)
    tie_note = f"; {tied} more within timing noise (over by less than the cells' IQR/median)" if tied else ""
    if missed.empty:
        worst_ratio = table[column].max()
        return f"- {label}: met in {len(table) - tied} of {len(table)} cells{tie_note}; worst ratio {worst_ratio:.3f}."
    worst = missed.loc[missed[column].idxmax()]
    where = ", ".join(f"n={r.seq_len} {r.dtype} p={r.dropout:g}" for r in missed.itertuples())
    return (
        f"- {label}: **missed** in {len(missed)} of {len(table)} cells ({where}){tie_note}; worst ours/torch = "
        f"{worst[column]:.3f}, i.e. {100 * (worst[column] - 1):.1f}% over."
    )


def ours_vs_torch(cells: pd.DataFrame) -> list[str]:
    """The layer targets: training step at least as fast and no larger than torch's at every length
    (same dropout); eval with SDPA faster and smaller than torch's fast path from n = 1024."""
    layer = cells[(cells["group"] == "layer")]
    cols = ["seq_len", "dtype", "heads", "dropout", "median_s", "iqr_s", "peak_mem_bytes"]
    keys = ["seq_len", "dtype", "heads", "dropout"]
    train = _ratio_table(
        layer[(layer["impl"] == "ours") & (layer["pass"] == "train")][cols],
        layer[(layer["impl"] == "torch") & (layer["pass"] == "train")][cols],
        keys,
    )
    evals = _ratio_table(
        layer[(layer["impl"] == "ours") & (layer["pass"] == "eval")][cols],
        layer[(layer["impl"] == "torch") & (layer["pass"] == "eval")][cols],
        keys,
    )
    long_eval = evals[evals["seq_len"] >= 1024]
    return [
        "## Our encoder layer vs nn.TransformerEncoderLayer",
        "",
        "Ratios ours / torch of the median time and the peak memory of one step (below 1: ours is better).",
        "",
        _verdict(train, "time_ratio", "Training step at least as fast (every length, same dropout)", "time_noise"),
        _verdict(train, "memory_ratio", "Training step no more peak memory"),
        _verdict(long_eval, "time_ratio", "Eval: ours (SDPA) faster than torch's fast path from n=1024", "time_noise"),
        _verdict(long_eval, "memory_ratio", "Eval: ours (SDPA) smaller than torch's fast path from n=1024"),
        *_same_kernels(layer),
        *_bf16_speedups(cells),
        "",
        "Training step:",
        "",
        train.to_markdown(index=False, floatfmt=".3f"),
        "",
        "Eval forward:",
        "",
        evals.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]


def _same_kernels(layer: pd.DataFrame) -> list[str]:
    """Whether both layers ran the same attention kernel in every training cell."""
    train = layer[layer["pass"] == "train"]
    keys = ["seq_len", "dtype", "heads", "dropout"]
    pairs = train[train["impl"] == "ours"].merge(train[train["impl"] == "torch"], on=keys)
    if pairs.empty:
        return []
    same = int((pairs["sdpa_backend_x"] == pairs["sdpa_backend_y"]).sum())
    return [
        f"- Training cells where both layers ran the same attention kernel: {same} of {len(pairs)}. There a gap "
        "comes from the code around the kernel (projections, reshapes, dropout, LayerNorm) or from variation "
        "between runs larger than a cell's own IQR; one run cannot tell which."
    ]


def _bf16_speedups(cells: pd.DataFrame) -> list[str]:
    """How much each attention kernel gains from bfloat16 at the longest length: explains eval results."""
    attn = cells[(cells["group"] == "attention") & (cells["pass"] == "forward") & (cells["heads"] == 4)]
    if attn.empty or {"float32", "bfloat16"} - set(attn["dtype"]):
        return []
    n = attn["seq_len"].max()
    at_n = attn[attn["seq_len"] == n].pivot_table(index="impl", columns="dtype", values="median_s")
    parts = [f"{impl} {row['float32'] / row['bfloat16']:.2f}x" for impl, row in at_n.iterrows()]
    return [
        f"- Speed-up of bfloat16 over float32, attention forward at n={n}, 4 heads: {', '.join(parts)} "
        "(torch_mha's eval fast path computes scores with bfloat16 matmuls; sdpa is the CPU flash kernel)."
    ]


def flop_counter_agreement(cells: pd.DataFrame) -> list[str]:
    data = cells[cells["group"] != "calibration"].copy()
    data["counted_over_analytic"] = data["flops_counted"] / data["flops_analytic"]
    off = (data["counted_over_analytic"] - 1).abs()
    within = int((off <= 0.01).sum())
    with_added = int(data["flops_counted_with_added_formulas"].map(bool).sum())
    return [
        "## FLOPs: counted vs analytic",
        "",
        f"FlopCounterMode's count equals the cost model's within 1% in {within} of {len(data)} cells "
        f"(largest deviation {100 * off.max():.3f}%); {with_added} cells were counted through a formula we "
        "registered (CPU flash SDPA, fused fast paths).",
        "",
    ]


def traced_breakdown(trace_dir: Path, cells: pd.DataFrame, d_ff: int) -> pd.DataFrame:
    """Per traced cell and category: self seconds and share, joined to the cell's parameters."""
    breakdown = load_breakdowns(trace_dir, d_ff)
    params = cells.dropna(subset=["trace_name"])[
        ["trace_name", "id", "impl", "dtype", "seq_len", "heads", "pass", "dropout", "median_s"]
    ]
    return breakdown.merge(params, on="trace_name", how="inner")


def breakdown_vs_benchmark(breakdown: pd.DataFrame, cells: pd.DataFrame, tolerance: float) -> list[str]:
    per_cell = (
        breakdown.groupby(["id", "seq_len"])
        .agg(ops_self_s=("self_s", "sum"), step_s=("step_s", "first"), benchmark_median_s=("median_s", "first"))
        .reset_index()
    )
    per_cell["ops_over_benchmark"] = per_cell["ops_self_s"] / per_cell["benchmark_median_s"]
    inside = ((per_cell["ops_over_benchmark"] - 1).abs() <= tolerance).sum()
    return [
        "## Traces vs the benchmark",
        "",
        f"Sum of op self times per profiled step against the benchmark's median for the same cell: "
        f"{inside} of {len(per_cell)} traced cells within ±{tolerance:.0%} (the profiler adds overhead per op "
        "and profiles only 2 steps).",
        "",
        per_cell.sort_values(["id"]).to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
