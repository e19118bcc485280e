"""The paired gate validated on data it was not tuned on: the committed A/A of `python -m bench ab` resampled
into many A/A replicates by swapping the two sides within randomly chosen pairs (each pair's sides ran back to
back on one machine, so a swap is as likely as the original under "nothing changed"), and the same
replicates with a known slowdown injected into the new side: of every cell, of the whole process (the
reference matmul too, as one thread fewer or a global flag would), and of one implementation. Each replicate
is judged by the gate itself (analysis.compare), with its exit code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.compare import DEFAULT_MIN_CHANGE, Comparison, compare_cells, exit_code, gate, undecided

FIELDS = ("device_passes_s", "host_passes_s", "common_mode_passes_s")
REPLICATES = 200
SLOWDOWN = 1.08  # the injected slowdown: inside the 8-10% hole the simulated one found in the old gate


@dataclass(frozen=True)
class Outcome:
    name: str
    replicates: int
    exits: dict[int, int]  # exit code -> replicates
    caught: float  # share of the affected cells flagged slower, over replicates (NaN for the A/A)
    false_flags: float  # share of unaffected cells flagged, over replicates


def swapped(base: pd.DataFrame, new: pd.DataFrame, swap: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two sides with pass i exchanged wherever swap[i]: every cell and its reference alike."""
    a, b = base.copy(), new.copy()
    for field in FIELDS:
        pairs = [
            [(y if s else x) for x, y, s in zip(ra, rb, swap)]
            for ra, rb in zip(base[field], new.loc[base.index, field])
        ]
        others = [
            [(x if s else y) for x, y, s in zip(ra, rb, swap)]
            for ra, rb in zip(base[field], new.loc[base.index, field])
        ]
        a[field], b[field] = pairs, others
    return a, b


def slowed(new: pd.DataFrame, factor: float, cells: pd.Series, reference: bool) -> pd.DataFrame:
    """The new side with `cells` `factor` slower (and the reference matmul, for a process-wide change)."""
    out = new.copy()
    scale = lambda passes, f: [[t * f for t in p] for p in passes]  # noqa: E731
    for field in ("device_passes_s", "host_passes_s"):
        out[field] = [scale(p, factor) if hit else p for p, hit in zip(new[field], cells)]
    if reference:
        out["common_mode_passes_s"] = [scale(p, factor) for p in new["common_mode_passes_s"]]
    return out


def judge(base: pd.DataFrame, new: pd.DataFrame, threshold: float) -> Comparison:
    table = compare_cells(base, new, DEFAULT_MIN_CHANGE, paired=True, use_common_mode=True)
    fail_on = {"time": threshold}
    failures = gate(table, fail_on)
    return Comparison(table, [], [], [], failures, undecided(table, fail_on, failures))


def validate(
    base: pd.DataFrame,
    new: pd.DataFrame,
    affected_impl: str,
    threshold: float = 0.05,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> list[Outcome]:
    """Each scenario over the same `replicates` swaps of the A/A's pairs."""
    base, new = base.set_index("id", drop=False), new.set_index("id", drop=False)
    new = new.loc[base.index]
    pairs = len(base["device_passes_s"].iloc[0])
    rng = np.random.default_rng(seed)
    swaps = [np.zeros(pairs, bool)] + [rng.random(pairs) < 0.5 for _ in range(replicates - 1)]
    everything = pd.Series(True, index=base.index)
    one = base["impl"] == affected_impl
    scenarios = {
        "A/A (sides swapped within random pairs)": (None, False),
        f"every cell x{SLOWDOWN:g}": (everything, False),
        f"the whole process x{SLOWDOWN:g} (the reference matmul too)": (everything, True),
        f"one implementation ({affected_impl}) x{SLOWDOWN:g}": (one, False),
    }
    outcomes = []
    for name, (cells, reference) in scenarios.items():
        exits: dict[int, int] = {}
        caught, false_flags = [], []
        for swap in swaps:
            a, b = swapped(base, new, swap)
            if cells is not None:
                b = slowed(b, SLOWDOWN, cells, reference)
            c = judge(a.reset_index(drop=True), b.reset_index(drop=True), threshold)
            code = exit_code(c)
            exits[code] = exits.get(code, 0) + 1
            t = c.table.set_index("id")
            grid = t[t["group"] != "process"]
            hit = cells.reindex(grid.index, fill_value=False) if cells is not None else pd.Series(False, grid.index)
            flagged = grid["time_flag"] & (grid["time"] > 1)
            if hit.any():
                caught.append(float(flagged[hit].mean()))
            if (~hit).any():
                false_flags.append(float(grid.loc[~hit, "time_flag"].mean()))
        outcomes.append(
            Outcome(
                name,
                len(swaps),
                dict(sorted(exits.items())),
                float(np.mean(caught)) if caught else float("nan"),
                float(np.mean(false_flags)) if false_flags else float("nan"),
            )
        )
    return outcomes


EXITS = {0: "passed", 1: "failed", 3: "undecided"}


def outcome_lines(outcomes: list[Outcome], threshold: float) -> list[str]:
    lines = [
        "| scenario | replicates | gate passed (0) | failed (1) | undecided (3) | affected cells flagged slower "
        "| unaffected cells flagged |",
        "|:--|--:|--:|--:|--:|--:|--:|",
    ]
    for o in outcomes:
        share = [f"{o.exits.get(code, 0) / o.replicates:.1%}" for code in (0, 1, 3)]
        caught = "" if np.isnan(o.caught) else f"{o.caught:.1%}"
        false = "" if np.isnan(o.false_flags) else f"{o.false_flags:.2%}"
        lines.append(f"| {o.name} | {o.replicates} | {share[0]} | {share[1]} | {share[2]} | {caught} | {false} |")
    aa = outcomes[0]
    lines += [
        "",
        f"Gate `--fail-on time:{threshold:.0%}`. The A/A's false-alarm rate (exit 1 where nothing changed) is "
        f"{aa.exits.get(1, 0) / aa.replicates:.1%} over {aa.replicates} replicates. A replicate is one way of "
        "labelling each pair's two passes base and new; the first is the run as it was made.",
    ]
    return lines
