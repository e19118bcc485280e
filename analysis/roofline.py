"""Each attention cell against the roofs measured in its own run: its arithmetic intensity (FLOPs counted over
the bytes model/cost.py says it moves), its achieved FLOP/s, and its regime.

The roofs are facts of the run: the matmul peak per dtype (bench/matmul_peak.py) and the STREAM-triad bandwidth
per memory level (bench/bandwidth.py), never a datasheet's. A level's roof is the best median among the
working sets the probe timed inside it. The rule, fixed before any run was read:
- overhead-bound where the time does not grow with the work (Horace He's test): along the cell's length series,
  from this cell to the next length (the previous one for the longest), time grows by less than half the
  FLOPs' growth in log terms;
- otherwise each phase of the step (model/cost.py: the linear one, the score one) takes at least the longer of its
  FLOPs over the dtype's matmul peak and its bytes over the bandwidth of the level that holds the cell's measured
  peak memory (a roofline per phase, summed: the attainable time); the cell is bandwidth-bound at that level where
  the phases held by bandwidth take at least half of the attainable time, and compute-bound where they do not;
  at the ridge where that word changes inside the bandwidth's 95% interval (the probe's low and high ends), so
  that a cell whose score phase sits on the ridge gets no word a rerun would contradict.
  A cell's intensity (its FLOPs over all its bytes) places it on the figure; the phases decide its regime, since
  a whole step's average intensity hides a score phase that runs on bandwidth beside projections that do not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from infra.machine import memory_level, memory_levels
from model.cost import MemoryShape, Phase, attention_phases, dtype_bytes

OVERHEAD_GROWTH = 0.5  # time's log growth over the FLOPs' below this: the time does not follow the work
SERIES = ["device", "dtype", "shape", "impl", "mode", "heads", "compile", "kv_heads", "window"]
ROOF_COLUMNS = ["device", "level", "working_set_bytes", "median_bytes_per_s", "low_bytes_per_s", "high_bytes_per_s"]


def bandwidth_points(facts: dict) -> pd.DataFrame:
    """The run's bandwidth probe, one row per working set (empty for a run from before it was measured)."""
    points = pd.DataFrame(facts.get("bandwidth") or [])
    return points if points.empty else points.sort_values(["device", "working_set_bytes"]).reset_index(drop=True)


def level_roofs(facts: dict) -> pd.DataFrame:
    """Per device and memory level: the best median bandwidth among the probe's working sets inside it, with
    that point's interval."""
    points = bandwidth_points(facts)
    if points.empty:
        return pd.DataFrame(columns=ROOF_COLUMNS)
    best = points.loc[points.groupby(["device", "level"])["median_bytes_per_s"].idxmax()]
    return best[ROOF_COLUMNS].sort_values(["device", "working_set_bytes"]).reset_index(drop=True)


def level_bandwidth(roofs: pd.DataFrame, device: str, level: str, levels: list[tuple[str, int]]) -> pd.Series | None:
    """The roof of `level`, or of the nearest larger level the probe timed (a working set in L1 meets L2's)."""
    names = [name for name, _ in levels]
    here = roofs[roofs["device"] == device].set_index("level")
    for name in names[names.index(level) :] if level in names else []:
        if name in here.index:
            return here.loc[name]
    return None


def phases(row: dict) -> tuple[Phase, Phase]:
    """The cost model's phases of one step of an attention cell."""
    shape = MemoryShape(
        int(row["batch"]),
        int(row["seq_len"]),
        int(row["d_model"]),
        int(row["heads"]),
        int(row["d_ff"]),
        dtype_bytes(row["dtype"]),
        row["device"],
    )
    return attention_phases(shape, str(row["attention_family"]), row["mode"] == "train")


def work_growth(cells: pd.DataFrame) -> pd.Series:
    """Per cell, log(time ratio) / log(FLOPs ratio) to the next length of its series (from the previous one
    at the series' longest); NaN for a series of one length."""
    growth = pd.Series(np.nan, index=cells.index)
    for _, series in cells.groupby(SERIES, dropna=False):
        ordered = series.sort_values("seq_len")
        index, time, work = list(ordered.index), ordered["median_s"].to_numpy(), ordered["flops"].to_numpy()
        for i, label in enumerate(index):
            j, k = (i, i + 1) if i + 1 < len(index) else (i - 1, i)
            if j < 0 or work[k] <= work[j]:
                continue
            growth[label] = math.log(time[k] / time[j]) / math.log(work[k] / work[j])
    return growth


BANDWIDTH_ENDS = ("low_bytes_per_s", "median_bytes_per_s", "high_bytes_per_s")


def roofline_time(linear: Phase, scores: Phase, peak: float, bandwidth: float) -> tuple[float, float]:
    """The attainable time of a step's phases (each the longer of its FLOPs over the peak and its bytes over the
    bandwidth), and the share of it in phases held by bandwidth."""
    compute_s = [phase.flops / peak for phase in (linear, scores)]
    memory_s = [phase.bytes / bandwidth for phase in (linear, scores)]
    attainable_s = sum(max(c, m) for c, m in zip(compute_s, memory_s))
    return attainable_s, sum(m for c, m in zip(compute_s, memory_s) if m > c) / attainable_s


def regimes(cells: pd.DataFrame, facts: dict) -> pd.DataFrame:
    """Every dense attention cell with its intensity, achieved rate, the roofs it meets, and its regime."""
    attention = cells[(cells["group"] == "attention") & cells["mode"].isin(["forward", "train"])].copy()
    roofs = level_roofs(facts)
    if attention.empty or roofs.empty:
        return pd.DataFrame()
    peaks = {(p["device"], p["dtype"]): p["peak_flops_per_s"] for p in facts.get("matmul_peak", [])}
    attention["growth"] = work_growth(attention)
    rows = []
    for r in attention.to_dict("records"):
        levels = memory_levels(facts, r["device"])
        working_set = r["peak_mem_bytes"] if r["peak_mem_bytes"] == r["peak_mem_bytes"] else r["predicted_mem_bytes"]
        level = memory_level(float(working_set), levels)
        roof = level_bandwidth(roofs, r["device"], level, levels)
        peak = peaks.get((r["device"], r["dtype"]))
        if roof is None or peak is None:
            continue
        bandwidth = float(roof["median_bytes_per_s"])
        linear, scores = phases(r)
        moved = linear.bytes + scores.bytes
        attainable_s, held_share = roofline_time(linear, scores, peak, bandwidth)
        held = [roofline_time(linear, scores, peak, float(roof[end]))[1] >= 0.5 for end in BANDWIDTH_ENDS]
        if r["growth"] == r["growth"] and r["growth"] < OVERHEAD_GROWTH:
            regime = "overhead-bound"
        elif all(held):
            regime = f"bandwidth-bound ({roof.name})"
        elif not any(held):
            regime = "compute-bound"
        else:
            regime = f"at the ridge ({roof.name})"
        intensity = r["flops"] / moved
        rows.append(
            {
                **{k: r[k] for k in ["device", "dtype", "impl", "mode", "heads", "seq_len", "attention_family"]},
                "flops": r["flops"],
                "bytes_moved": moved,
                "intensity": intensity,
                "score_intensity": scores.flops / scores.bytes if scores.bytes else float("inf"),
                "working_set_level": level,
                "ridge": peak / bandwidth,
                "bandwidth_share": held_share,
                "achieved_flops_per_s": r["flops"] / r["median_s"],
                "attainable_s": attainable_s,
                "of_attainable": attainable_s / r["median_s"],
                "growth_vs_work": r["growth"],
                "regime": regime,
            }
        )
    return pd.DataFrame(rows)
