"""NOISE.md for the paired method (`python -m bench.noise_floor --paired`): what `python -m bench ab` flags
when nothing changed (A/A: its false-alarm rate and the smallest change it resolves), and what it flags
when one implementation does a known amount of extra work (A/B: the affected cells it catches, the
unaffected ones it leaves alone). Both with the gate `--fail-on time:5%`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common_mode import PROCESS_ID
from analysis.compare import (
    DEFAULT_MIN_CHANGE,
    GATE_WORDS,
    Comparison,
    compare_cells,
    compare_sides,
    exit_code,
    read_side,
    repeats_to_decide,
)
from analysis.compare_report import summary_lines
from analysis.errors import AnalysisError
from analysis.gate_validation import SLOWDOWN, outcome_lines, validate
from infra.files import atomic_write_text

GATE = {"time": 0.05}
AFFECTED = "examples.extra_work_attention:make"


def half_widths(table) -> np.ndarray:
    """Each cell's relative half-width: of its change over the process as a whole, where paired with a reference."""
    cells = table[table["group"] != "process"]
    return (np.sqrt(cells["device_time_vs_process_high"] / cells["device_time_vs_process_low"]) - 1).to_numpy()


def common_mode_effect(base: pd.DataFrame, new: pd.DataFrame) -> str:
    """The A/A's median half-width with and without dividing by the reference matmul: the measurement
    behind compare's dividing paired rounds by it."""
    raw = compare_cells(base, new, DEFAULT_MIN_CHANGE, paired=True, use_common_mode=False)
    normalised = compare_cells(base, new, DEFAULT_MIN_CHANGE, paired=True, use_common_mode=True)
    return (
        f"Dividing each round by the reference matmul timed right after it (common-mode rejection) gives a median "
        f"half-width of {np.median(half_widths(normalised)):.1%} against {np.median(half_widths(raw)):.1%} "
        f"without it, and flags {int(normalised['device_time_flag'].sum())} A/A cells against "
        f"{int(raw['device_time_flag'].sum())}; compare applies it to paired runs where the "
        "reference did not move."
    )


def unpaired_half_width(base: pd.DataFrame, new: pd.DataFrame) -> float:
    """The A/A's median half-width if its sides were two ordinary runs: Welch's t on each side's passes."""
    return float(np.median(half_widths(compare_cells(base, new, DEFAULT_MIN_CHANGE))))


def per_cell_lines(base: pd.DataFrame, new: pd.DataFrame, name: str) -> str:
    """The same comparison with 95% intervals per cell instead of simultaneous ones: narrower, and what they
    would flag; the price of asking 24 questions at once."""
    alone = compare_cells(base, new, DEFAULT_MIN_CHANGE, paired=True, use_common_mode=True, simultaneous=False)
    flagged = int(alone["device_time_flag"].sum())
    return (
        f"With 95% intervals per cell instead (not simultaneous) the {name}'s median half-width would be "
        f"{np.median(half_widths(alone)):.1%} and {flagged} cell{'' if flagged == 1 else 's'} would be flagged "
        f"({', '.join(alone.loc[alone['device_time_flag'], 'id']) or 'none'})."
    )


# The A/B folders of the experiment (bench.noise_floor's SLOWDOWNS) and what each slows: one implementation's
# cells, every cell (the reference matmul not), or the whole process (the reference too).
AB_HITS = {"ab-extra": "one", "ab-every-cell": "cells", "ab-process": "process"}
# When the gate's rule (the process row's trimmed mean, bench ab's passes without in-run pairs) was fixed: an
# experiment made after it validates it; one made before is what it was chosen from.
GATE_RULE_FIXED = datetime(2026, 12, 4, 19, 40, tzinfo=timezone.utc)


def affected(t: pd.DataFrame, hits: str) -> pd.Series:
    """The grid's cells an A/B slows (the process row aside)."""
    cells = t["group"] != "process"
    return cells & (t["impl"] == AFFECTED) if hits == "one" else cells


def ab_lines(c: Comparison, hits: str) -> list[str]:
    """What the A/B measured (the slowdown it caused), what the gate flagged, and its exit code."""
    t = c.table
    hit = affected(t, hits)
    rest = t[~hit & (t["group"] != "process")]
    caught = t.loc[hit, "device_time_flag"] & (t.loc[hit, "device_time"] > 1)
    ratio = t.loc[hit, "device_time"]
    process = t[t["id"] == PROCESS_ID]
    lines = [
        f"- Measured slowdown of the {int(hit.sum())} cells it slows (device time, new/base): median "
        f"x{ratio.median():.3f} (from x{ratio.min():.3f} to x{ratio.max():.3f}); flagged slower: "
        f"{int(caught.sum())} ({caught.mean():.0%})."
    ]
    if not process.empty:
        r = process.iloc[0]
        lines.append(
            f"- The process as a whole (the reference matmul): x{r['device_time']:.3f} [{r['device_time_low']:.3f}, "
            f"{r['device_time_high']:.3f}], " + ("flagged." if r["device_time_flag"] else "not flagged.")
        )
    if len(rest):
        lines.append(f"- Cells it does not slow: {len(rest)}; flagged: {int(rest['device_time_flag'].sum())}.")
    lines.append(
        f"- Gate `--fail-on time:5%`: {GATE_WORDS[exit_code(c)]}"
        + (f" ({len(c.failures)} lines, e.g. {c.failures[0]})" if c.failures else "")
        + (f"; undecided lines: {len(c.undecided)}" if c.undecided and not c.failures else "")
        + "."
    )
    return lines


def provenance(made: datetime) -> str:
    if made < GATE_RULE_FIXED:
        return (
            f"This experiment was made before the gate's rule was fixed ({GATE_RULE_FIXED:%Y-%m-%d %H:%M} UTC: the "
            "process row's trimmed mean over pairs, no in-run pairs in bench ab's passes): it is what the rule was "
            "chosen from, not its validation."
        )
    return (
        f"This experiment was made after the gate's rule was fixed ({GATE_RULE_FIXED:%Y-%m-%d %H:%M} UTC): nothing "
        "here was tuned on its data."
    )


def process_lines(c: Comparison) -> list[str]:
    """The process as a whole in the A/A: how wide its interval is, and how many pairs would narrow it."""
    row = c.table[c.table["id"] == PROCESS_ID]
    if row.empty:
        return []
    r = row.iloc[0]
    half = float(np.sqrt(r["device_time_high"] / r["device_time_low"]) - 1)
    pairs = int(str(r["passes"]).split("/")[0])
    need = repeats_to_decide(half, GATE["time"], pairs) if half > GATE["time"] else pairs
    return [
        f"The process as a whole (the reference matmul) in the A/A: x{r['device_time']:.3f} "
        f"[{r['device_time_low']:.3f}, {r['device_time_high']:.3f}], half-width {half:.1%}: the machine's speed "
        f"moves between the two passes of a pair, so {pairs} pairs "
        + (
            f"cannot bound a change of the whole process to {GATE['time']:.0%} and the gate says undecided "
            f"(exit 3) rather than passing; about {need} pairs would decide."
            if half > GATE["time"]
            else f"bound a change of the whole process to {GATE['time']:.0%}."
        )
    ]


def ab_folders(folder: Path) -> list[str]:
    return [name for name in AB_HITS if all((folder / name / s / "benchmarks.json").is_file() for s in ("base", "new"))]


def ab_description(folder: Path, name: str, experiment: dict) -> str:
    """What the A/B changed, as the experiment recorded it (an older experiment: its extra fraction)."""
    recorded = experiment.get("slowdowns", {}).get(name)
    if recorded:
        return f"{recorded['what']} (revision {recorded['revision'][:10]}: `{recorded['change']}`)"
    extra = experiment.get("extra_fraction")
    pair = json.loads((folder / name / "new" / "benchmarks.json").read_text())["machine_info"]["attnbench"]["ab"]
    work = f"{extra:.0%} of the attention's FLOPs as extra work" if extra is not None else "extra work"
    return f"one implementation: examples/extra_work_attention.py does {work} (revision {pair['new'][:10]})"


def write_paired_noise(folder: Path) -> Path:
    abs_ = ab_folders(folder)
    if not all((folder / "aa" / s / "benchmarks.json").is_file() for s in ("base", "new")) or not abs_:
        raise AnalysisError(f"{folder}: no aa and A/B pairs inside (run python -m bench.noise_floor --paired)")
    aa_sides = [read_side(folder / "aa" / side) for side in ("base", "new")]  # each file read once
    aa = compare_sides(*aa_sides, GATE, {})
    facts = aa_sides[0].facts
    pairs = facts["ab"]["pairs"]
    half = half_widths(aa.table)
    aa_base, aa_new = (side.cells for side in aa_sides)
    unpaired = unpaired_half_width(aa_base, aa_new)
    experiment = json.loads((folder / "experiment.json").read_text()) if (folder / "experiment.json").is_file() else {}
    lines = [
        "# Noise floor of `python -m bench ab` (paired, alternating passes)",
        "",
        f"Grid `{facts['grid_profile']}` ({len(aa.table)} cells) on {facts['cpu_model']} ({facts['cpu_count']} cores, "
        f"{facts.get('machine_slug')}), torch {facts['torch_version']}, {pairs} pairs of passes, each pass a "
        "separate process on its side's own worktree, alternating B N, N B, ... A change is flagged when its "
        "interval (a cell's: a t interval on the per-pair log ratios over the reference; the process row's: the 20% "
        "trimmed mean over pairs with its t interval; simultaneous 95% over them all, Bonferroni) excludes 1 and it "
        "is at least 5%.",
        "",
        provenance(datetime.fromisoformat(facts["recorded_at"])),
        "",
        "## A/A: HEAD against itself",
        "",
        f"- Flagged: {aa.table['device_time_flag'].mean():.1%} of cells on device time; gate "
        f"{GATE_WORDS[exit_code(aa)]}.",
        f"- Smallest change resolved (median relative half-width of the simultaneous device-time interval): "
        f"{np.median(half):.1%}; the same passes compared as two separate runs (not paired, no reference): "
        f"{unpaired:.1%}.",
        f"- {common_mode_effect(aa_base, aa_new)}",
        f"- {per_cell_lines(aa_base, aa_new, 'A/A')}",
        "",
        *summary_lines(aa),
    ]
    for name in abs_:
        sides = [read_side(folder / name / side) for side in ("base", "new")]
        ab = compare_sides(*sides, GATE, {})
        lines += [
            "",
            f"## A/B `{name}`: {ab_description(folder, name, experiment)}",
            "",
            *ab_lines(ab, AB_HITS[name]),
            f"- {per_cell_lines(*(side.cells for side in sides), 'A/B')}",
            "",
            *summary_lines(ab),
        ]
    lines += [
        "",
        "## The gate on many A/A replicates, and on slowdowns injected into them",
        "",
        f"The A/A's {pairs} pairs relabelled: in each replicate every pair's two passes are swapped "
        f"between the sides with probability 1/2, which nothing changed makes as likely as the run itself; then "
        f"the same replicates with a x{SLOWDOWN:g} slowdown injected into the new side (synthetic, on the "
        "measured noise): of every cell, of the whole process (the reference matmul too, as one thread fewer or a "
        "global setting would), and of one implementation. The real A/Bs above are the measured ones.",
        "",
        *outcome_lines(validate(aa_base, aa_new, AFFECTED), GATE["time"]),
        "",
        *process_lines(aa),
        "",
        "Each side's folder has its benchmarks.json; each pair folder its compare.md.",
        "",
    ]
    out = folder / "NOISE.md"
    atomic_write_text(out, "\n".join(lines))
    return out
