"""compare.md and its figure, from a Comparison: the summary an A/A or A/B experiment is read by
(fraction flagged, spread of the ratios, the smallest change the intervals can resolve), then each cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.common_mode import PROCESS_METHOD
from analysis.compare import METRICS, Comparison
from analysis.markdown import md
from analysis.stats import CONFIDENCE
from infra.files import atomic_write_text


def summary_lines(c: Comparison) -> list[str]:
    process = c.table[c.table["group"] == "process"]
    t = c.table[c.table["group"] != "process"]
    flagged = {m: int(t[f"{m}_flag"].sum()) for m in METRICS}
    any_flag = int(t[[f"{m}_flag" for m in METRICS]].any(axis=1).sum())
    q = t["device_time"].quantile([0, 0.25, 0.5, 0.75, 1]).to_numpy()
    half = np.sqrt(t["device_time_vs_process_high"] / t["device_time_vs_process_low"]) - 1
    whole = np.sqrt(t["device_time_high"] / t["device_time_low"]) - 1
    lines = []
    if not process.empty:
        r = process.iloc[0]
        lines = [
            f"- The process as a whole (the reference matmul): x{r['device_time']:.3f} [{r['device_time_low']:.3f}, "
            f"{r['device_time_high']:.3f}]{' **!**' if r['device_time_flag'] else ''}; each cell's whole change is "
            f"its change over the process times this (median half-width {whole.median():.1%}).",
        ]
    return lines + [
        f"- Cells compared: {len(t)}; flagged (significant and at least the minimum change): {any_flag} "
        f"({any_flag / len(t):.1%}). By metric: " + ", ".join(f"{m} {n}" for m, n in flagged.items()) + ".",
        f"- Device-time ratios new/base: min {q[0]:.3f}, quartiles {q[1]:.3f} / {q[2]:.3f} / {q[3]:.3f}, "
        f"max {q[4]:.3f}.",
        "- Smallest change the intervals resolve (median relative half-width of the device-time interval"
        + (", over the process as a whole" if not process.empty else "")
        + f"): {half.median():.1%} (90th percentile {half.quantile(0.9):.1%}).",
        "- Intervals: "
        + ", ".join(f"{n} cells {METHODS.get(m, m)}" for m, n in t["interval"].value_counts().items())
        + f"; {level_words(t)}.",
    ]


def level_words(t: pd.DataFrame) -> str:
    level = float(t["confidence"].iloc[0])
    if level > CONFIDENCE:
        return (
            f"simultaneous {CONFIDENCE:.0%} intervals over the {len(t)} cells (each at {level:.2%}, Bonferroni), "
            f"so that a comparison where nothing changed flags any cell at most {1 - CONFIDENCE:.0%} of the time"
        )
    return f"{level:.0%} intervals per cell"


METHODS = {
    "passes-t": "by Welch's t on each run's pass medians",
    "passes-t+runs": "by Welch's t on pass medians, widened by the measured run-to-run noise",
    "rounds-bootstrap": "by a bootstrap over rounds (one pass: within-run noise only)",
    "pairs-t": "by a t interval on per-pair differences (passes alternated base/new, so drift cancels)",
    "pairs-t-common-mode": "by per-pair differences of each round's time over a reference matmul timed right after it",
    "pairs-t-common-mode+process": "by per-pair differences of each round's time over the reference matmul timed "
    "right after it, times the reference's own ratio (the process as a whole)",
    PROCESS_METHOD: "the reference matmul itself: the 20% trimmed mean over pairs with its Tukey-McLaughlin t interval",
}


def cell_table(t: pd.DataFrame) -> pd.DataFrame:
    def band(metric: str) -> pd.Series:
        mark = np.where(t[f"{metric}_flag"], " **!**", "")
        return (
            t[metric].map("{:.3f}".format)
            + " ["
            + t[f"{metric}_low"].map("{:.3f}".format)
            + ", "
            + t[f"{metric}_high"].map("{:.3f}".format)
            + "]"
            + mark
        )

    exact = {m: t[m].map("{:.3f}".format) + np.where(t[f"{m}_flag"], " **!**", "") for m in ("memory", "flops")}
    table = pd.DataFrame(
        {
            "cell": t["id"],
            "passes": t["passes"],
            "time": band("time"),
            "device time": band("device_time"),
            "memory": exact["memory"],
            "FLOPs": exact["flops"],
            "MFU": band("mfu"),
        }
    )
    if "device_time_raw" in t and not np.allclose(t["device_time_raw"], t["device_time"]):
        table.insert(
            4,
            "device time, not normalised",
            t["device_time_raw"].map("{:.3f}".format)
            + " ["
            + t["device_time_raw_low"].map("{:.3f}".format)
            + ", "
            + t["device_time_raw_high"].map("{:.3f}".format)
            + "]",
        )
    return table


def write_compare(c: Comparison, base: Path, new: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = figures.compare_ratios(c.table, out_dir / "figures")
    lines = [
        "# attnbench compare",
        "",
        f"Base: `{base}`. New: `{new}`. Ratios are new / base with "
        f"{level_words(c.table)}; **!** marks a change that is significant and at least the minimum change.",
        "",
    ]
    lines += [f"**Warning:** {w}." for w in c.warnings] + ([""] if c.warnings else [])
    lines += ["## Summary", "", *summary_lines(c), ""]
    if c.failures:
        lines += ["## Gate: failed", "", *[f"- {f}" for f in c.failures], ""]
    if c.undecided:
        lines += [
            "## Gate: undecided",
            "",
            "These intervals are wider than the threshold they are gated on: a regression of that size would "
            "not show, so the gate does not pass (exit 3).",
            "",
            *[f"- {line}" for line in c.undecided],
            "",
        ]
    lines += ["## Cells", "", md(cell_table(c.table)), ""]
    for label, ids in (("only in base", c.only_base), ("only in new", c.only_new)):
        if ids:
            lines += [f"Cells {label} ({len(ids)}): " + ", ".join(ids), ""]
    lines += [f"![compare]({fig.relative_to(out_dir)})", ""]
    out = out_dir / "compare.md"
    atomic_write_text(out, "\n".join(lines))
    return out
