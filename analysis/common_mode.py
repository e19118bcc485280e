"""Common-mode rejection for paired runs (`python -m bench ab --common-mode`): each timed round is followed by
a fixed reference matmul that no code under test runs, so dividing a round by its reference cancels the
machine's speed at that moment. It is never applied where the reference itself moved between the sides:
dividing by something the change also slowed would hide the change."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats import CONFIDENCE, Interval, paired_ratio_interval, pass_log_medians

# The fewest pairs in which a sign test can reject "no shift" at 95%: 6 of 6 one way is p = 0.031, 5 of 5 0.0625.
SIGN_TEST_MIN_PAIRS = 6
REFERENCE_MOVED = 0.025  # the reference's own change (significant and at least this) that stops division by it


def normalised_passes(row: pd.Series, field: str) -> list[list[float]] | None:
    """Each round's time (`field`: device_passes_s or host_passes_s) over the reference matmul timed right
    after it (--common-mode), per pass; None where the run did not time the reference."""
    references = row.get("common_mode_passes_s")
    if not isinstance(references, list):
        return None
    return [list(np.asarray(d) / np.asarray(r)) for d, r in zip(row[field], references)]


def reference_moved(a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE) -> Interval | None:
    """The reference's own ratio new/base where it moved (significantly at `confidence`, and by REFERENCE_MOVED
    or more): the change moved it, and dividing by it could hide a real slowdown. None otherwise. Judged at the
    comparison's simultaneous level: at 95% per cell a slow spell of the VM in a few pairs made 6 of 24 cells
    of an A/B fall back to raw times, and one of them was flagged (results/noise-paired-*, at 1a33847)."""
    reference = paired_ratio_interval(b["common_mode_passes_s"], a["common_mode_passes_s"], "reference", confidence)
    return reference if reference.excludes_one and abs(reference.estimate - 1) >= REFERENCE_MOVED else None


def run_reference_moved(base: pd.DataFrame, new: pd.DataFrame, cells: list[str]) -> float | None:
    """The reference's ratio new/base over the whole run where it moved: per pair, the median over cells of the
    reference's log ratio; moved where a sign test over the pairs rejects 'no shift' (95%) and the median is at
    least REFERENCE_MOVED. A change that slows everything, the reference included, slows it in nearly every
    pair; a slow spell of the VM, however deep, in a few (measured: whole passes 0.9-1.47x in an A/A)."""
    timed = [c for c in cells if all(isinstance(r.loc[c].get("common_mode_passes_s"), list) for r in (base, new))]
    if not timed:
        return None
    logs = np.median(
        [
            pass_log_medians(new.loc[c, "common_mode_passes_s"]) - pass_log_medians(base.loc[c, "common_mode_passes_s"])
            for c in timed
        ],
        axis=0,
    )
    shifted = logs[logs != 0]
    if len(shifted) == 0 or stats.binomtest(int((shifted > 0).sum()), len(shifted)).pvalue >= 1 - CONFIDENCE:
        return None
    ratio = math.exp(float(np.median(logs)))
    return ratio if abs(ratio - 1) >= REFERENCE_MOVED else None


def common_mode(a: pd.Series, b: pd.Series, field: str, confidence: float = CONFIDENCE) -> Interval | None:
    """The ratio of `field` with the machine's drift divided out round by round, where both sides timed the
    reference (None where they did not)."""
    norm_a, norm_b = normalised_passes(a, field), normalised_passes(b, field)
    if norm_a is None or norm_b is None:
        return None
    return paired_ratio_interval(norm_b, norm_a, "pairs-t-common-mode", confidence)


def reference_warnings(table: pd.DataFrame, pairs: int | None) -> list[str]:
    """Cells whose reference matmul itself moved between the sides (the change or the machine moved it):
    their times are compared raw, not divided by it. And where too few `pairs` leave the whole-run check blind
    (None: the runs timed no reference)."""
    out = []
    if pairs is not None and pairs < SIGN_TEST_MIN_PAIRS:
        out.append(
            f"{pairs} pairs are too few to see the reference move over the whole run (a sign test needs "
            f"{SIGN_TEST_MIN_PAIRS}): a change that slows everything, the reference included, shows only where "
            "one cell's reference moved beyond its interval; run 20 pairs for a gate"
        )
    moved = table["reference_moved"].dropna() if "reference_moved" in table else pd.Series(dtype=float)
    if moved.empty:
        return out
    where = "over the whole run" if len(moved) == len(table) and moved.nunique() == 1 else f"in {len(moved)} cells"
    return out + [
        f"the reference matmul moved between the sides {where} (median x{moved.median():.3f}): the change "
        "or the machine moved it, so those cells are compared raw"
    ]
