"""The paired gate on synthetic samples with known answers and noise of the size measured on these machines
(results/noise-paired-*/aa, 20 pairs of the quick grid: the whole process drifts by a log SD of about 0.12
per pass, so the two sides of a pair differ by 0.17; a cell over its reference differs by 0.055 per pair;
rounds wobble by 0.11). Each case checks what is flagged and the gate's exit code."""

import numpy as np
import pandas as pd
import pytest

from analysis.common_mode import PROCESS_ID
from analysis.compare import Comparison, compare_cells, exit_code, gate, undecided

CELLS, ROUNDS = 12, 30
LIMITS = {"time": 0.05, "device_time": 0.05, "mfu": 0.05, "memory": 0.0, "flops": 0.0}
GATE = {"time": 0.05}
PASS_DRIFT, CELL_OVER_REFERENCE, ROUND_WOBBLE = 0.12, 0.04, 0.11


def side(
    pairs: int, rng: np.random.Generator, slowdown: dict[str, float], process: float, spells: dict
) -> pd.DataFrame:
    """A run as analysis.load makes it: per cell, `pairs` passes of ROUNDS rounds, each round followed by
    the reference matmul. The machine's speed (per pass, and per round) hits the cell and its reference
    alike; `process` slows both (a change that slows the whole process), `slowdown` the cell alone."""
    rows = []
    for c in range(CELLS):
        cid = f"cell{c}"
        speed = rng.normal(0, PASS_DRIFT, (pairs, 1)) + rng.normal(0, ROUND_WOBBLE, (pairs, ROUNDS))
        for i, factor in spells.items():  # a slow spell of the VM during this side's pass i
            speed[i] += np.log(factor)
        own = rng.normal(0, CELL_OVER_REFERENCE, (pairs, 1)) + rng.normal(0, 0.02, (pairs, ROUNDS))
        cell = 1e-3 * (1 + c) * slowdown.get(cid, 1.0) * process * np.exp(speed + own)
        reference = 1e-3 * process * np.exp(speed + rng.normal(0, 0.01, (pairs, ROUNDS)))
        rows.append(
            {
                "id": cid,
                "group": "attention",
                "passes": pairs,
                "device_passes_s": cell.tolist(),
                "host_passes_s": cell.tolist(),
                "common_mode_passes_s": reference.tolist(),
                "peak_mem_bytes": 1000,
                "flops": 10**9,
                "peak_flops_per_s": 10**11,
            }
        )
    return pd.DataFrame(rows)


def judged(pairs: int, seed: int, slowdown=None, process: float = 1.0, spells=None) -> tuple[pd.DataFrame, int]:
    rng = np.random.default_rng(seed)
    base = side(pairs, rng, {}, 1.0, {})
    new = side(pairs, rng, slowdown or {}, process, spells or {})
    table = compare_cells(base, new, LIMITS, paired=True, use_common_mode=True)
    failures = gate(table, GATE)
    return table, exit_code(Comparison(table, [], [], [], failures, undecided(table, GATE, failures)))


def flagged(table: pd.DataFrame) -> set[str]:
    return set(table.loc[table["time_flag"], "id"])


@pytest.mark.parametrize("seed", range(5))
def test_a_paired_aa_flags_nothing_and_decides_with_enough_pairs(seed):
    # at this noise a cell's interval, the process's share included, narrows to 5% at about 70-100 pairs
    table, code = judged(pairs=100, seed=seed)
    assert flagged(table) == set() and code == 0
    assert PROCESS_ID in set(table["id"])  # the process as a whole is a row of the comparison


@pytest.mark.parametrize("pairs", [8, 20])
def test_too_few_pairs_for_the_threshold_is_undecided_not_passed(pairs):
    for seed in range(3):
        table, code = judged(pairs=pairs, seed=seed, process=1.07)
        assert code in (1, 3)  # a 7% regression of the whole process is never passed
        quiet, quiet_code = judged(pairs=pairs, seed=10 + seed)
        assert flagged(quiet) == set() and quiet_code == 3  # nothing changed, but these pairs cannot show 5%


def test_a_uniform_slowdown_of_every_cell_fails_the_gate():
    table, code = judged(pairs=60, seed=2, slowdown={f"cell{c}": 1.10 for c in range(CELLS)})
    assert flagged(table) == {f"cell{c}" for c in range(CELLS)} and code == 1


def test_a_process_wide_slowdown_that_also_moves_the_reference_is_not_divided_away():
    table, code = judged(pairs=60, seed=3, process=1.10)
    rows = table.set_index("id")
    assert flagged(table) == {f"cell{c}" for c in range(CELLS)} | {PROCESS_ID} and code == 1
    assert rows.loc[PROCESS_ID, "time_low"] > 1.0
    assert ((rows["time"] > 1.05) & (rows["time"] < 1.16)).all()  # the whole 10%, not its ratio to the reference


def test_drift_that_hits_both_cells_of_a_pair_is_not_a_change():
    """Slow spells of the VM in a few passes of one side (measured: whole passes up to 1.47x) slow the cell
    and its reference alike, and the process row's median over pairs does not follow a few outliers."""
    table, code = judged(pairs=100, seed=4, spells={0: 1.4, 7: 1.4, 13: 1.3})
    assert flagged(table) == set() and code == 0


def test_a_slowdown_of_one_cell_flags_that_cell_alone():
    table, code = judged(pairs=60, seed=5, slowdown={"cell3": 1.10})
    assert flagged(table) == {"cell3"} and code == 1


def test_the_validation_relabels_pairs_and_injects_known_slowdowns():
    from analysis.gate_validation import slowed, swapped, validate

    rng = np.random.default_rng(7)
    base, new = side(100, rng, {}, 1.0, {}), side(100, rng, {}, 1.0, {})
    base["impl"], new["impl"] = ["a", "b"] * (CELLS // 2), ["a", "b"] * (CELLS // 2)
    swap = rng.random(100) < 0.5
    a, b = swapped(base, new, swap)
    back, _ = swapped(a, b, swap)  # swapping the same pairs again gives the run back
    assert back["device_passes_s"].tolist() == base["device_passes_s"].tolist()
    assert a.loc[0, "device_passes_s"][int(np.argmax(swap))] == new.loc[0, "device_passes_s"][int(np.argmax(swap))]
    hit = pd.Series([True] + [False] * (CELLS - 1))
    assert slowed(new, 2.0, hit, False).loc[0, "device_passes_s"][0][0] == 2 * new.loc[0, "device_passes_s"][0][0]
    outcomes = {o.name.split(" ")[0]: o for o in validate(base, new, "b", replicates=8)}
    assert outcomes["A/A"].exits.get(1, 0) == 0  # no false alarm
    assert outcomes["every"].exits == {1: 8} and outcomes["one"].exits == {1: 8} and outcomes["one"].caught > 0.8
    assert outcomes["the"].exits.get(0, 0) == 0  # a slowdown of the whole process is never passed
