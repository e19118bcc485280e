"""The report's section on BERT's layer: ours configured as BERT beside Hugging Face's BertLayer (eager and
sdpa) and torch's layer, per length and dtype: time with intervals, peak memory, the kernel each ran, and
where HF's eager mode (the explicit softmax, an n x n matrix per head) stops fitting in memory."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pandas as pd

from analysis.markdown import md
from analysis.report.memory_wall import memory_shape
from analysis.stats import (
    CONFIDENCE,
    MARGIN,
    PAIRED_METHODS,
    WORDS,
    cell_ratio,
    decide,
    family_confidence,
    median_interval,
)
from analysis.verdicts import is_baseline
from infra.registry import HF_BERT_EAGER, HF_BERT_SDPA
from model import cost

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

KEYS = ["device", "dtype", "shape", "heads", "mode", "seq_len"]
MIB = 2**20


def _bert_cells(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells checked against ours-as-BERT, torch's layer cells of the same parameters)."""
    plain = cells[
        (cells["group"] == "layer")
        & (cells["pos_encoding"] == "none")
        & (cells["compile"] == "eager")
        & (cells["dropout"] == 0)
    ]
    bert = plain[plain["reference"] == "bert"]
    torch_ = plain[is_baseline(plain)].merge(bert[KEYS].drop_duplicates(), on=KEYS)
    return bert, torch_


def _time_table(cells: pd.DataFrame, impls: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in cells.groupby(KEYS[:2] + KEYS[4:], sort=True):
        row = dict(zip(["device", "dtype", "mode", "n"], key))
        for impl in impls:
            cell = group[group["impl"] == impl]
            if cell.empty:
                row[f"{impl} ms"] = "not run"
                continue
            t = median_interval(cell["device_passes_s"].iloc[0])
            row[f"{impl} ms"] = f"{t.estimate * 1e3:.3g} [{t.low * 1e3:.3g}, {t.high * 1e3:.3g}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _pivot(cells: pd.DataFrame, column: str, impls: list[str], scale: float = 1.0) -> pd.DataFrame:
    table = cells.assign(value=cells[column] / scale if scale != 1.0 else cells[column], n=cells["seq_len"])
    wide = table.pivot_table(index=["device", "dtype", "mode", "n"], columns="impl", values="value", aggfunc="first")
    return wide.reindex(columns=[i for i in impls if i in wide.columns]).reset_index()


def _against_ours(cells: pd.DataFrame, ours: str, other: str, confidence: float) -> str:
    """How `other` compares with ours-as-BERT over the cells both ran, each cell in three words with the 5%
    margin (analysis.stats.decide) at the section's simultaneous level."""
    pairs = cells[cells["impl"] == other].merge(cells[cells["impl"] == ours], on=KEYS, suffixes=("", "_ours"))
    intervals = [cell_ratio(r, "", "_ours", confidence) for r in pairs.to_dict("records")]
    if not intervals:
        return f"- {other}: no cell where it and {ours} both ran."
    words = Counter(decide(i) for i in intervals)
    paired = sum(i.method in PAIRED_METHODS for i in intervals)
    ratios = pd.Series([i.estimate for i in intervals])
    return (
        f"- {other} / {ours}: median time ratio {ratios.median():.2f} (from {ratios.min():.2f} to "
        f"{ratios.max():.2f}) over {len(intervals)} cells ({paired} timed as in-run pairs, the rest from their "
        "passes, unpaired): " + ", ".join(f"{word} {words[word]}" for word in WORDS) + f" (margin {MARGIN:.0%})."
    )


def _comparisons(cells: pd.DataFrame, ours: str, others: list[str]) -> int:
    """The section's time comparisons, for their simultaneous level: each other layer's cells beside ours'."""
    keys = cells[cells["impl"] == ours][KEYS].drop_duplicates()
    return sum(len(cells[cells["impl"] == other].merge(keys, on=KEYS)) for other in others)


def _eager_limit(ctx: ReportContext, bert: pd.DataFrame, eager: str, sdpa: str) -> list[str]:
    """Where the explicit softmax stops fitting: cells refused for memory, else the cost model's length on
    this machine's memory, after checking it against the peaks this run measured."""
    lines = []
    refused = ctx.not_run
    if not refused.empty and "impl" in refused:
        refused = refused[(refused["impl"] == eager) & refused["reason"].str.startswith(("would not fit", "oom"))]
        for r in refused.sort_values("seq_len").groupby(["device", "dtype", "mode"]).head(1).to_dict("records"):
            lines.append(
                f"- {r['device']} {r['dtype']} {r['mode']}: {eager} stops fitting at n={r['seq_len']} "
                f"({r['reason'].split(':')[0]})."
            )
    ran = bert[bert["impl"] == eager]
    memory = ctx.facts.get("gpu_memory_bytes") or ctx.facts.get("memory_bytes")
    for (device, dtype, mode), group in ran.groupby(["device", "dtype", "mode"]):
        longest = group.loc[group["seq_len"].idxmax()]
        other = bert[
            (bert["impl"] == sdpa)
            & (bert["device"] == device)
            & (bert["dtype"] == dtype)
            & (bert["mode"] == mode)
            & (bert["seq_len"] == longest["seq_len"])
        ]
        versus = (
            f", {longest['peak_mem_bytes'] / other['peak_mem_bytes'].iloc[0]:.2f}x {sdpa}'s" if not other.empty else ""
        )
        line = (
            f"- {device} {dtype} {mode}: {eager} ran every length up to n={longest['seq_len']} "
            f"(peak {longest['peak_mem_bytes'] / MIB:.3g} MiB{versus})"
        )
        limit = _predicted_limit(longest, memory)
        if limit:
            fit = longest["predicted_mem_bytes"] / longest["peak_mem_bytes"]
            line += (
                f"; the cost model (which predicted {fit:.2f}x the measured peak at that length) puts the "
                f"first length past this machine's {memory / 2**30:.0f} GiB at n={limit}"
            )
        lines.append(line + ".")
    return lines


def _predicted_limit(cell: pd.Series, memory: int | None) -> int | None:
    """The first power-of-two length at which the explicit softmax's predicted peak passes `memory`."""
    if not memory or not cell.get("predicted_mem_bytes"):
        return None
    n = int(cell["seq_len"])
    while n < 2**22:
        n *= 2
        m = memory_shape(cell, n)
        need = (
            cost.layer_training_bytes(m, "materialised", False)
            if cell["mode"] == "train"
            else cost.layer_inference_bytes(m, "materialised")
        )
        if need > memory:
            return n
    return None


def _check_errors(checked: pd.DataFrame) -> str:
    """The largest relative error of the HF cells' check, per dtype, beside what was allowed."""
    if checked.empty:
        return ""
    worst = checked.groupby("dtype")[["check_relative_error", "check_tolerance"]].max()
    return (
        " (largest relative error "
        + ", ".join(
            f"{dtype} {r.check_relative_error:.2g} of {r.check_tolerance:g} allowed" for dtype, r in worst.iterrows()
        )
        + ")"
    )


def bert_section(ctx: ReportContext) -> list[str]:
    bert, torch_ = _bert_cells(ctx.cells)
    if bert.empty:
        return []
    eager, sdpa = HF_BERT_EAGER, HF_BERT_SDPA
    ours = sorted(set(bert["impl"]) - {eager, sdpa})
    impls = [*ours, *[i for i in (eager, sdpa) if i in set(bert["impl"])], *sorted(set(torch_["impl"]))]
    both = pd.concat([bert, torch_])
    checked = bert[bert["impl"].isin([eager, sdpa])]
    lines = [
        "## BERT's layer: ours configured as BERT beside Hugging Face's BertLayer",
        "",
        f"Ours configured as BERT ({', '.join(ours)}: post-LayerNorm, exact GELU, LayerNorm eps 1e-12, no dropout "
        "inside the feed-forward) beside transformers' `BertLayer` in its two attention modes and torch's "
        "layer (pre-norm, ReLU: the same FLOPs up to the activation). Every HF cell was first checked "
        "against ours-as-BERT in float32, the reference's weights loaded through its `load_reference`"
        + _check_errors(checked)
        + ".",
        "",
        "Device time, median with its 95% interval:",
        "",
        md(_time_table(both, impls)),
        "",
    ]
    if ours:
        level = family_confidence(_comparisons(both, ours[0], impls[1:]))
        lines += [
            f"Each layer's time over ours-as-BERT, cell by cell, in three words (simultaneous {CONFIDENCE:.0%} over "
            f"the section's comparisons, each at {level:.2%}):",
            "",
            *(_against_ours(both, ours[0], other, level) for other in impls[1:]),
            "",
        ]
    lines += [
        "Peak memory (MiB):",
        "",
        md(_pivot(both, "peak_mem_bytes", impls, MIB), ".4g"),
        "",
        "The attention kernel each ran, read from the profiler:",
        "",
        md(_pivot(both, "attention_kernel", impls)),
        "",
        "Where HF's eager mode stops fitting in memory:",
        "",
    ]
    lines += _eager_limit(ctx, bert, eager, sdpa) or [f"- {eager} did not run here."]
    return lines + [""]
