"""NOISE.md and noise_floor.json for a noise-floor folder (bench/noise_floor.py).

Two runs of the same code differ by more than their passes' spread says: a run shares one machine state
(other tenants, clocks, memory placement) across its passes. The first A/A pair measures that run-to-run
spread; a second, independent A/A pair is then compared with and without it, so the false-alarm rate is
measured on data the floor was not fitted to. An A/B pair (one thread against two) shows what remains
visible through the floor."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from analysis.compare import GATE_WORDS, Comparison, compare_runs, exit_code
from analysis.compare_report import summary_lines, write_compare
from analysis.errors import AnalysisError
from analysis.load import load_run, machine_label, read_json, upgrade
from analysis.stats import run_to_run_sd
from infra.files import atomic_write_text
from infra.machine import fingerprint

GATE = {"time": 0.05}
RUNS = ("a1", "a2", "a3", "a4", "b-threads1")


def first_pass_only(run: Path, into: Path) -> Path:
    """The run as if it had been made with --passes 1: only each cell's first pass."""
    data = upgrade(read_json(run / "benchmarks.json"))
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["pass_index"] == 0]
    into.mkdir(parents=True, exist_ok=True)
    (into / "benchmarks.json").write_text(json.dumps(data))
    return into


def measure_floor(base: Path, new: Path) -> dict:
    a, _, facts = load_run(base / "benchmarks.json")
    b, _, _ = load_run(new / "benchmarks.json")
    medians, other = a.set_index("id")["median_s"], b.set_index("id")["median_s"]
    common = medians.index.intersection(other.index)
    ratios = np.log(other[common] / medians[common])
    return {
        "run_sd": run_to_run_sd(ratios.to_numpy()),
        "machine": machine_label(facts),
        "fingerprint": fingerprint(facts),
        "machine_slug": facts.get("machine_slug"),
        "grid": facts["grid_profile"],
        "cells": len(common),
        "from": [base.name, new.name],
    }


def false_alarms(c: Comparison) -> str:
    return f"{c.table['device_time_flag'].mean():.1%} of {len(c.table)} cells flagged on device time"


def write_noise(folder: Path) -> Path:
    if (folder / "aa" / "base").is_dir():  # the paired method's experiment (bench.noise_floor --paired)
        from analysis.noise_paired import write_paired_noise

        return write_paired_noise(folder)
    runs = {name: folder / name for name in RUNS}
    missing = [name for name, path in runs.items() if not (path / "benchmarks.json").is_file()]
    if missing:
        raise AnalysisError(f"{folder}: no {', '.join(missing)} run inside (run python -m bench.noise_floor)")
    floor = measure_floor(runs["a1"], runs["a2"])
    atomic_write_text(folder / "noise_floor.json", json.dumps(floor, indent=1) + "\n")
    first_pair = compare_runs(runs["a1"], runs["a2"], GATE, {}, measure_passes_only=True)
    held_out = compare_runs(runs["a3"], runs["a4"], GATE, {}, measure_passes_only=True)
    with_floor = compare_runs(runs["a3"], runs["a4"], GATE, {}, floor)
    ab = compare_runs(runs["a1"], runs["b-threads1"], GATE, {}, floor)
    with tempfile.TemporaryDirectory() as tmp:
        single = compare_runs(
            *(first_pass_only(runs[n], Path(tmp) / n) for n in ("a3", "a4")), GATE, {}, measure_passes_only=True
        )
    write_compare(with_floor, runs["a3"], runs["a4"], folder / "aa")
    write_compare(ab, runs["a1"], runs["b-threads1"], folder / "ab-threads")
    passes = int(held_out.table["passes"].iloc[0].split("/")[0])
    slower = ab.table[ab.table["device_time_flag"] & (ab.table["device_time"] > 1)]
    facts = read_json(runs["a1"] / "benchmarks.json")["machine_info"]["attnbench"]
    lines = [
        "# Noise floor of `analysis compare`",
        "",
        f"Grid `{facts['grid_profile']}` on {facts['cpu_model']} ({facts['cpu_count']} cores), torch "
        f"{facts['torch_version']}, commit `{facts['git_commit']}`, {passes} interleaved passes per cell, five runs as "
        "separate processes by `python -m bench.noise_floor`: a1..a4 the same code, b-threads1 with "
        "OMP_NUM_THREADS=1. A change is flagged when its 95% interval excludes 1 and it is at least 5%; the gate "
        "is `--fail-on time:5%`.",
        "",
        "## The run-to-run spread (a1 against a2)",
        "",
        f"Two runs of the same code differ, cell for cell, by a log ratio whose root mean square over "
        f"{floor['cells']} cells gives a per-run standard deviation of **{floor['run_sd']:.3f}** (about "
        f"{100 * floor['run_sd']:.1f}% of a run's time). Written to `noise_floor.json`; "
        "`python -m analysis compare --noise-floor` adds it to every interval between runs. Compared on passes "
        f"alone, this pair had {false_alarms(first_pair)}.",
        "",
        "## A/A held out (a3 against a4)",
        "",
        f"- Passes only (no floor): {false_alarms(held_out)}; gate {GATE_WORDS[exit_code(held_out)]}.",
        f"- With the floor from a1/a2: {false_alarms(with_floor)}; gate {GATE_WORDS[exit_code(with_floor)]}. "
        "[aa/compare.md](aa/compare.md)",
        f"- One pass per cell (a bootstrap over one pass's rounds): {false_alarms(single)}.",
        "",
        "With the floor:",
        "",
        *summary_lines(with_floor),
        "",
        "## A/B: one thread against two (a1 against b-threads1, with the floor)",
        "",
        *summary_lines(ab),
        f"- Slower and flagged: {len(slower)} of {len(ab.table)} cells; intervals wholly above 1: "
        f"{int((ab.table['device_time_low'] > 1).sum())}. The gate "
        f"{GATE_WORDS[exit_code(ab)]}. "
        "[ab-threads/compare.md](ab-threads/compare.md)",
        "",
    ]
    out = folder / "NOISE.md"
    atomic_write_text(out, "\n".join(lines))
    return out
