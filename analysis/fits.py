"""Scaling laws: log-log slopes with standard errors, crossovers, and the memory model's error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SERIES = ["group", "device", "dtype", "heads", "impl", "pass", "dropout", "machine"]


def loglog_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log y on log x and its standard error (nan with fewer than 3 points)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    slope, intercept = np.polyfit(lx, ly, 1)
    if len(lx) < 3:
        return float(slope), float("nan")
    residual = ly - (slope * lx + intercept)
    se = math.sqrt((residual @ residual) / (len(lx) - 2) / ((lx - lx.mean()) @ (lx - lx.mean())))
    return float(slope), se


def scaling_exponents(cells: pd.DataFrame, longest: int = 3) -> pd.DataFrame:
    """Slope of median time and of peak memory against sequence length, per series, fitted over the
    `longest` measured lengths (the long-sequence regime, where the asymptotic term shows)."""
    rows = []
    lengths = sorted(cells["seq_len"].unique())[-longest:]
    long = cells[cells["seq_len"].isin(lengths)]
    for key, group in long.groupby(SERIES, dropna=False):
        group = group.sort_values("seq_len")
        if group["seq_len"].nunique() < 2:
            continue
        time_slope, time_se = loglog_slope(group["seq_len"], group["median_s"])
        mem = group[group["peak_mem_bytes"] > 0]
        mem_slope, mem_se = loglog_slope(mem["seq_len"], mem["peak_mem_bytes"]) if len(mem) >= 2 else (np.nan, np.nan)
        rows.append(
            {
                **dict(zip(SERIES, key)),
                "points": len(group),
                "seq_len_from": group["seq_len"].min(),
                "seq_len_to": group["seq_len"].max(),
                "time_exponent": time_slope,
                "time_exponent_se": time_se,
                "memory_exponent": mem_slope,
                "memory_exponent_se": mem_se,
            }
        )
    return pd.DataFrame(rows)


def crossover_length(lengths: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    """Smallest sequence length where series a overtakes b, interpolated in log-log space between the
    measured lengths; None if a never overtakes b, the first length if a is ahead from the start."""
    lengths, a, b = (np.asarray(v, float) for v in (lengths, a, b))
    ahead = a > b
    if not ahead.any():
        return None
    i = int(np.argmax(ahead))
    if i == 0:
        return float(lengths[0])
    # log(a/b) is linear in log n between the two points: solve for zero.
    r0, r1 = math.log(a[i - 1] / b[i - 1]), math.log(a[i] / b[i])
    l0, l1 = math.log(lengths[i - 1]), math.log(lengths[i])
    return float(math.exp(l0 + (l1 - l0) * (-r0) / (r1 - r0)))


def memory_model_error(cells: pd.DataFrame) -> pd.DataFrame:
    """Measured over predicted peak memory, per cell (1.0 means the analytic model was exact)."""
    out = cells[
        ["group", "impl", "pass", "dropout", "dtype", "seq_len", "heads", "peak_mem_bytes", "predicted_mem_bytes"]
    ].copy()
    out["measured_over_predicted"] = out["peak_mem_bytes"] / out["predicted_mem_bytes"]
    return out
