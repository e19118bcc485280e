"""Common-mode rejection for paired runs (`python -m bench ab`): each timed round is followed by a fixed
reference matmul that no code under test runs, so dividing a round by its reference cancels the machine's
speed at that moment. The reference is also a cell of the comparison itself, "the process as a whole": a
change that slows the whole process (threads, a global torch flag, the allocator, background work) slows it
too, and alternation cancels the machine's drift, so where it moved the change moved it. A cell's ratio is
therefore its ratio over the reference times the reference's own ratio (`with_process`), so a slowdown of
the whole process is never divided away: it shows in every cell and in the process row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.stats import CONFIDENCE, Interval, paired_ratio_interval, pass_log_medians, trimmed_mean_interval

PROCESS_ID = "process (reference matmul)"  # the reference's row in a comparison's table
PROCESS_METHOD = "reference-trimmed-mean"  # its interval's method


def normalised_passes(row: pd.Series, field: str) -> list[list[float]] | None:
    """Each round's time (`field`: device_passes_s or host_passes_s) over the reference matmul timed right
    after it (--common-mode), per pass; None where the run did not time the reference."""
    references = row.get("common_mode_passes_s")
    if not isinstance(references, list):
        return None
    return [list(np.asarray(d) / np.asarray(r)) for d, r in zip(row[field], references)]


def process_interval(base: pd.DataFrame, new: pd.DataFrame, cells: list[str], confidence: float) -> Interval | None:
    """The reference matmul's ratio new/base over the whole run: per pair, the median over cells of its log
    ratio; over pairs, the trimmed mean with its interval (the rule of every ratio from alternation,
    analysis.stats.trimmed_mean_interval). Robust: a slow spell of the VM in a few pairs (measured: whole passes
    0.9-1.47x in an A/A) is trimmed away, and the mean of the rest is tighter than the median's order statistics
    (at 20 pairs of the committed A/A: a half-width of 5.9% against 7.6%). None where no cell timed a reference."""
    timed = [c for c in cells if all(isinstance(r.loc[c].get("common_mode_passes_s"), list) for r in (base, new))]
    if not timed or len({len(base.loc[c, "common_mode_passes_s"]) for c in timed}) != 1:
        return None
    per_pair = np.median(
        [
            pass_log_medians(new.loc[c, "common_mode_passes_s"]) - pass_log_medians(base.loc[c, "common_mode_passes_s"])
            for c in timed
        ],
        axis=0,
    )
    return trimmed_mean_interval(per_pair.tolist(), PROCESS_METHOD, confidence)


def with_process(cell: Interval, process: Interval) -> Interval:
    """A cell's ratio over the reference, times the reference's own ratio: the cell's whole change, the
    process's share included. Both intervals cover together at the sum of their levels' misses."""
    return Interval(
        cell.estimate * process.estimate,
        cell.low * process.low,
        cell.high * process.high,
        f"{cell.method}+process",
        cell.p_value,
    )


def common_mode(a: pd.Series, b: pd.Series, field: str, confidence: float = CONFIDENCE) -> Interval | None:
    """The ratio of `field` with the machine's drift divided out round by round, where both sides timed the
    reference (None where they did not)."""
    norm_a, norm_b = normalised_passes(a, field), normalised_passes(b, field)
    if norm_a is None or norm_b is None:
        return None
    return paired_ratio_interval(norm_b, norm_a, "pairs-t-common-mode", confidence)


def process_warnings(table: pd.DataFrame) -> list[str]:
    """Where the process as a whole moved between the sides: the change's doing, since alternation cancels
    the machine's drift; it is in every cell's ratio."""
    process = table[table["id"] == PROCESS_ID]
    if process.empty or not bool(process["device_time_flag"].iloc[0]):
        return []
    r = process.iloc[0]
    return [
        f"the process as a whole moved between the sides: the reference matmul, which no code under test runs, "
        f"took x{r['device_time']:.3f} [{r['device_time_low']:.3f}, {r['device_time_high']:.3f}]; alternation "
        "cancels the machine's drift, so the change did it (threads, a global setting, the allocator, background "
        "work), and every cell's ratio includes it"
    ]
