"""Scaling laws: log-log slopes with t intervals, a quadratic fit beside them, crossovers, and the
memory model's error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.stats import PAIRED_METHODS, cell_ratio, loglog_slope, quadratic_fit, quadratic_share_interval

SERIES = [
    "group",
    "device",
    "dtype",
    "shape",
    "heads",
    "impl",
    "mode",
    "dropout",
    "pos_encoding",
    "compile",
    "kv_heads",
    "window",
    "varlen",
    "machine",
]
MIN_POINTS = 5  # fewer lengths give slopes whose interval spans every word
# Words for an exponent, each with the range it stands for; a word is used only when the whole
# interval lies inside its range.
GROWTH_WORDS = (
    ("sub-linear", -math.inf, 0.85),
    ("linear", 0.85, 1.15),
    ("between linear and quadratic", 1.15, 1.85),
    ("quadratic", 1.85, 2.15),
    ("super-quadratic", 2.15, math.inf),
)


def growth_word(low: float, high: float) -> str | None:
    for word, lo, hi in GROWTH_WORDS:
        if lo <= low and high <= hi:
            return word
    return None


def physics_verdict(low: float, high: float, expected: str) -> str:
    """An exponent's interval against the growth word the physics expects: met where the whole interval lies in
    that word's range, missed where none of it does, inconclusive where it straddles an edge."""
    lo, hi = next((lo, hi) for word, lo, hi in GROWTH_WORDS if word == expected)
    if lo <= low and high <= hi:
        return "met"
    return "missed" if high < lo or low > hi else "inconclusive"


# A time exponent whose whole interval lies this far below its FLOPs' own exponent grows slower than its work: what
# sets the time there does not grow with the work (dispatch, launches, allocation, or a rate that climbs with n),
# and a growth word would describe that, not how attention's cost grows.
WORK_MARGIN = 0.15


def describe_exponent(value: float, low: float, high: float, work: float | None = None) -> str:
    """'n^1.93 [1.85, 2.01], quadratic': the word only when the 95% interval fits inside it, and, given the
    exponent of the work itself (`work`, the FLOPs'), only where the time keeps up with it."""
    if pd.isna(value):
        return "not measured"
    if pd.isna(low):
        return f"n^{value:.2f} (too few lengths for an interval)"
    measured = f"n^{value:.2f} [{low:.2f}, {high:.2f}]"
    if work is not None and not pd.isna(work) and high < work - WORK_MARGIN:
        return f"{measured}, slower than its FLOPs grow (n^{work:.2f}): its time does not follow its work here"
    word = growth_word(low, high)
    return measured + (f", {word}" if word else ", not resolved to one word")


def scaling_exponents(cells: pd.DataFrame, min_points: int = MIN_POINTS) -> pd.DataFrame:
    """Per series with at least `min_points` lengths: slopes of device time and of peak memory against
    sequence length (95% t intervals), and a + b*n + c*n^2 fitted to the time."""
    rows = []
    keys = [k for k in SERIES if k in cells]
    for key, group in cells.groupby(keys, dropna=False):
        group = group.sort_values("seq_len")
        if group["seq_len"].nunique() < min_points:
            continue
        time = loglog_slope(group["seq_len"], group["median_s"])
        work = group[group["flops"] > 0] if "flops" in group else group.iloc[:0]
        flops = loglog_slope(work["seq_len"], work["flops"]).value if len(work) >= 2 else np.nan
        mem = group[group["peak_mem_bytes"] > 0]
        memory = loglog_slope(mem["seq_len"], mem["peak_mem_bytes"]) if len(mem) >= min_points else None
        quad = quadratic_fit(group["seq_len"], group["median_s"])
        rows.append(
            {
                **dict(zip(keys, key)),
                "points": len(group),
                "seq_len_from": group["seq_len"].min(),
                "seq_len_to": group["seq_len"].max(),
                "time_exponent": time.value,
                "time_low": time.low,
                "time_high": time.high,
                "flops_exponent": flops,
                "memory_exponent": memory.value if memory else np.nan,
                "memory_low": memory.low if memory else np.nan,
                "memory_high": memory.high if memory else np.nan,
                "quadratic_share_at_longest": quad.quadratic_share if quad else np.nan,
            }
        )
    return pd.DataFrame(rows)


def local_exponents(cells: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per series and consecutive pair of lengths n1 < n2: the local exponent log(t2 / t1) / log(n2 / n1) with
    its interval from the time ratio's (from the in-run pairs where the run timed n2 against n1, else over
    passes), and memory's (exact). At the longest lengths the leading term dominates, so that is where a growth
    word is taken; a straight line through every length measures the curvature of a + b·n + c·n² as much as
    the noise."""
    rows = []
    keys = [k for k in SERIES if k in cells]
    for key, series in cells.groupby(keys, dropna=False):
        series = series.sort_values("seq_len")
        for a, b in zip(series.to_dict("records"), series.iloc[1:].to_dict("records")):
            span = math.log(b["seq_len"] / a["seq_len"])
            ratio = cell_ratio({**b, **{f"{k}_base": v for k, v in a.items()}}, "", "_base", confidence)
            rows.append(
                {
                    **dict(zip(keys, key)),
                    "seq_len_from": int(a["seq_len"]),
                    "seq_len_to": int(b["seq_len"]),
                    "time_exponent": math.log(ratio.estimate) / span,
                    "time_low": math.log(ratio.low) / span,
                    "time_high": math.log(ratio.high) / span,
                    "paired": ratio.method in PAIRED_METHODS,
                    "memory_exponent": math.log(b["peak_mem_bytes"] / a["peak_mem_bytes"]) / span,
                    "flops_exponent": _log_ratio(b.get("flops"), a.get("flops")) / span,  # the work's own
                }
            )
    return pd.DataFrame(rows)


def _log_ratio(new: float | None, old: float | None) -> float:
    return math.log(new / old) if new and old and new > 0 and old > 0 else math.nan


def quadratic_shares(cells: pd.DataFrame) -> pd.DataFrame:
    """Per series with at least 4 lengths: a + b·n + c·n² fitted to the time, the n² term's share at the longest
    length with its bootstrap interval over passes (analysis.stats.quadratic_share_interval)."""
    rows = []
    keys = [k for k in SERIES if k in cells]
    for key, series in cells.groupby(keys, dropna=False):
        series = series.sort_values("seq_len")
        share = quadratic_share_interval(series["seq_len"].tolist(), series["device_passes_s"].tolist())
        if share is not None:
            rows.append(
                {
                    **dict(zip(keys, key)),
                    "seq_len_to": int(series["seq_len"].max()),
                    "share": share.estimate,
                    "share_low": share.low,
                    "share_high": share.high,
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
    cols = [
        "group",
        "device",
        "shape",
        "impl",
        "mode",
        "dropout",
        "pos_encoding",
        "compile",
        "dtype",
        "seq_len",
        "heads",
        "peak_mem_bytes",
        "predicted_mem_bytes",
    ]
    out = cells[cols].copy()
    out["measured_over_predicted"] = out["peak_mem_bytes"] / out["predicted_mem_bytes"]
    return out
