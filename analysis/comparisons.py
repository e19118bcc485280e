"""Every declared comparison's table (infra/comparisons.py), built once per run: one row per cell and its base,
with the ratio's 95% interval, its interval at the family's simultaneous level, the word that interval decides,
the independent units it rests on, and what the physics predicts. comparisons.csv is this table."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from analysis.stats import CONFIDENCE, Interval, cell_ratio, decide, family_confidence
from infra.cell import CELL_AXES, Cell
from infra.comparisons import Comparison, comparisons_of
from infra.files import atomic_write_text

CSV_NAME = "comparisons.csv"
# The columns comparisons.csv holds, in order: the contract first (id ... units), then what explains them.
CSV_COLUMNS = [
    "id",
    "comparison",
    "ratio",
    "low",
    "high",
    "level",
    "word",
    "units",
    "unit",
    "base_id",
    "family",
    "priority",
    "level_low",
    "level_high",
    "log_se",
    "df",
    "method",
    "physics",
    "predicted",
]


def cell_of(row: dict) -> Cell | None:
    """The cell a run's row describes (None: a row of another kind, such as a data-parallel launch)."""
    try:
        values = {axis: row[axis] for axis in CELL_AXES}
        values.update(seq_len=int(values["seq_len"]), heads=int(values["heads"]), dropout=float(values["dropout"]))
        values.update(kv_heads=int(values["kv_heads"]), window=int(values["window"]))
        return Cell(**values)
    except (KeyError, TypeError, ValueError):
        return None


def log_se(interval: Interval, confidence: float = CONFIDENCE) -> float:
    """The standard error of the log ratio: the interval's own, else read off its width (a bootstrap's)."""
    if interval.log_se is not None:
        return interval.log_se
    if interval.high <= interval.low:
        return 0.0
    return math.log(interval.high / interval.low) / 2 / scipy_stats.norm.ppf(0.5 + confidence / 2)


def _predicted(comparison: Comparison, new: dict, base: dict, peaks: dict[tuple[str, str], float]) -> float:
    if comparison.physics == "same work":
        return 1.0
    if comparison.physics == "peak":
        key_new, key_base = (new["device"], new["dtype"]), (base["device"], base["dtype"])
        return peaks[key_base] / peaks[key_new] if key_new in peaks and key_base in peaks else math.nan
    flops_new, flops_base = new.get("flops"), base.get("flops")
    return flops_new / flops_base if flops_new and flops_base else math.nan


def comparison_table(cells: pd.DataFrame, facts: dict | None = None) -> pd.DataFrame:
    """One row per (cell, declared comparison) whose base also ran, in priority order; CSV_COLUMNS."""
    if cells.empty:
        return pd.DataFrame(columns=CSV_COLUMNS)
    peaks = {(p["device"], p["dtype"]): p["peak_flops_per_s"] for p in (facts or {}).get("matmul_peak", [])}
    records = cells.to_dict("records")
    by_id = {r["id"]: r for r in records}
    found = []
    for r in records:
        cell = cell_of(r)
        if cell is None:
            continue
        try:
            declared = comparisons_of(cell)
        except (KeyError, ValueError):  # an implementation no registry entry names (a run of older code)
            continue
        for comparison, base in declared:
            if base.id in by_id:
                found.append((comparison, r, by_id[base.id]))
    families = pd.Series([c.family for c, _, _ in found]).value_counts().to_dict()
    rows = []
    for comparison, new, base in found:
        merged = {**new, **{f"{k}_base": v for k, v in base.items()}}
        level = family_confidence(families[comparison.family])
        wide = cell_ratio(merged, "", "_base", CONFIDENCE)
        at_level = cell_ratio(merged, "", "_base", level)
        rows.append(
            {
                "id": new["id"],
                "comparison": comparison.name,
                "ratio": wide.estimate,
                "low": wide.low,
                "high": wide.high,
                "level": level,
                "word": decide(at_level),
                "units": wide.units if wide.units is not None else min(new["passes"], base["passes"]),
                "unit": "passes" if wide.passes or not wide.blocks else "blocks",
                "base_id": base["id"],
                "family": comparison.family,
                "priority": comparison.priority,
                "level_low": at_level.low,
                "level_high": at_level.high,
                "log_se": log_se(wide),
                "df": wide.df,
                "method": wide.method,
                "physics": comparison.physics,
                "predicted": _predicted(comparison, new, base, peaks),
            }
        )
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    return table.sort_values(["priority", "comparison", "id"], kind="stable").reset_index(drop=True)


def write_csv(table: pd.DataFrame, run_dir: Path) -> Path:
    """comparisons.csv in the run folder, written whole or not at all."""
    path = run_dir / CSV_NAME
    atomic_write_text(path, table.reindex(columns=CSV_COLUMNS).to_csv(index=False))
    return path
