"""NOISE.md for the paired method (`python -m bench.noise_floor --paired`): what `python -m bench ab` flags
when nothing changed (A/A: its false-alarm rate and the smallest change it resolves), and what it flags
when one implementation does a known amount of extra work (A/B: the affected cells it catches, the
unaffected ones it leaves alone). Both with the gate `--fail-on time:5%`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common_mode import PROCESS_ID
from analysis.compare import (
    DEFAULT_MIN_CHANGE,
    GATE_WORDS,
    Comparison,
    compare_cells,
    compare_runs,
    exit_code,
    repeats_to_decide,
)
from analysis.compare_report import summary_lines
from analysis.errors import AnalysisError
from analysis.gate_validation import SLOWDOWN, outcome_lines, validate
from analysis.load import load_run, read_json
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


def ab_lines(c: Comparison) -> list[str]:
    t = c.table
    affected = t["impl"] == AFFECTED
    hit, rest = t[affected], t[~affected & (t["group"] != "process")]
    caught = hit["device_time_flag"] & (hit["device_time"] > 1)
    ratio = hit["device_time"]
    return [
        f"- Affected cells (the extra-work implementation): {len(hit)}; flagged slower: {int(caught.sum())} "
        f"({caught.mean():.0%}); their measured slowdown: median x{ratio.median():.3f} (from "
        f"x{ratio.min():.3f} to x{ratio.max():.3f}).",
        f"- Unaffected cells: {len(rest)}; flagged: {int(rest['device_time_flag'].sum())}.",
        f"- Gate `--fail-on time:5%`: {GATE_WORDS[exit_code(c)]}"
        + (f" ({len(c.failures)} lines, e.g. {c.failures[0]})" if c.failures else "")
        + ".",
    ]


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


def write_paired_noise(folder: Path) -> Path:
    runs = {name: folder / name for name in ("aa", "ab-extra")}
    missing = [n for n, p in runs.items() if not all((p / s / "benchmarks.json").is_file() for s in ("base", "new"))]
    if missing:
        raise AnalysisError(f"{folder}: no {', '.join(missing)} pair inside (run python -m bench.noise_floor --paired)")
    aa = compare_runs(runs["aa"] / "base", runs["aa"] / "new", GATE, {})
    ab = compare_runs(runs["ab-extra"] / "base", runs["ab-extra"] / "new", GATE, {})
    facts = read_json(runs["aa"] / "base" / "benchmarks.json")["machine_info"]["attnbench"]
    pair = json.loads((runs["ab-extra"] / "new" / "benchmarks.json").read_text())["machine_info"]["attnbench"]["ab"]
    half = half_widths(aa.table)
    aa_base, _, _ = load_run(runs["aa"] / "base" / "benchmarks.json")  # read once for both alternatives
    aa_new, _, _ = load_run(runs["aa"] / "new" / "benchmarks.json")
    unpaired = unpaired_half_width(aa_base, aa_new)
    ab_sides = [load_run(runs["ab-extra"] / side / "benchmarks.json")[0] for side in ("base", "new")]
    experiment = json.loads((folder / "experiment.json").read_text()) if (folder / "experiment.json").is_file() else {}
    extra = experiment.get("extra_fraction")
    work = f"{extra:.0%} of the attention's FLOPs as extra work" if extra is not None else "extra work"
    lines = [
        "# Noise floor of `python -m bench ab` (paired, alternating passes)",
        "",
        f"Grid `{facts['grid_profile']}` ({len(aa.table)} cells) on {facts['cpu_model']} ({facts['cpu_count']} cores, "
        f"{facts.get('machine_slug')}), torch {facts['torch_version']}, {pair['pairs']} pairs of passes, each pass a "
        "separate process on its side's own worktree, alternating B N, N B, ... A change is flagged when its "
        "interval (a t interval on the per-pair log ratios; simultaneous 95% over the cells, Bonferroni) excludes 1 "
        "and it is at least 5%.",
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
        "",
        f"## A/B: a known slowdown (revision {pair['new'][:10]}: examples/extra_work_attention.py does {work})",
        "",
        *ab_lines(ab),
        f"- {per_cell_lines(*ab_sides, 'A/B')}",
        "",
        *summary_lines(ab),
        "",
        "## The gate, validated on data it was not tuned on",
        "",
        f"The A/A's {pair['pairs']} pairs relabelled: in each replicate every pair's two passes are swapped "
        f"between the sides with probability 1/2, which nothing changed makes as likely as the run itself; then "
        f"the same replicates with a x{SLOWDOWN:g} slowdown injected into the new side (synthetic, on the "
        "measured noise): of every cell, of the whole process (the reference matmul too, as one thread fewer or a "
        "global setting would), and of one implementation. The real A/B above is the measured one.",
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
