"""NOISE.md for a noise-floor folder (bench/noise_floor.py): the false-alarm rate compare has on two runs
of the same code (A/A), with the interleaved passes and, for contrast, with one pass only; the spread of
A/A ratios; the smallest change the intervals resolve; and what compare finds in a real change (A/B:
one thread against two)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from analysis.compare import compare_runs
from analysis.compare_report import summary_lines, write_compare
from analysis.errors import AnalysisError
from analysis.load import read_json
from model.files import atomic_write_text

GATE = {"time": 0.05}


def first_pass_only(run: Path, into: Path) -> Path:
    """The run as if it had been made with --repeats 1: only each cell's first pass."""
    data = read_json(run / "benchmarks.json")
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"].get("repeat", 0) == 0]
    into.mkdir(parents=True, exist_ok=True)
    (into / "benchmarks.json").write_text(json.dumps(data))
    return into


def write_noise(folder: Path) -> Path:
    runs = {name: folder / name for name in ("a1", "a2", "b-threads1")}
    missing = [name for name, path in runs.items() if not (path / "benchmarks.json").is_file()]
    if missing:
        raise AnalysisError(f"{folder}: no {', '.join(missing)} run inside (run python -m bench.noise_floor)")
    aa = compare_runs(runs["a1"], runs["a2"], GATE, {})
    ab = compare_runs(runs["a1"], runs["b-threads1"], GATE, {})
    with tempfile.TemporaryDirectory() as tmp:
        base, new = (first_pass_only(runs[name], Path(tmp) / name) for name in ("a1", "a2"))
        single = compare_runs(base, new, GATE, {})
    write_compare(aa, runs["a1"], runs["a2"], folder / "aa")
    write_compare(ab, runs["a1"], runs["b-threads1"], folder / "ab-threads")
    passes = int(aa.table["passes"].iloc[0].split("/")[0])
    slower = ab.table[ab.table["device_time_flag"] & (ab.table["device_time"] > 1)]
    excludes = (ab.table["device_time_low"] > 1).sum()
    facts = read_json(runs["a1"] / "benchmarks.json")["machine_info"]["attnbench"]
    lines = [
        "# Noise floor of `analysis compare`", "",
        f"Grid `{facts['grid_profile']}` on {facts['cpu_model']} ({facts['cpu_count']} cores), torch "
        f"{facts['torch_version']}, commit `{facts['git_commit']}`, run three times as separate processes by "
        "`python -m bench.noise_floor`: a1 and a2 the same (A/A), b-threads1 with OMP_NUM_THREADS=1 (A/B). A change "
        "is flagged when its 95% interval excludes 1 and it is at least 5%; the gate is `--fail-on time:5%`.", "",
        f"## A/A: two runs of the same code, {passes} interleaved passes each", "", *summary_lines(aa),
        f"- False alarms: {aa.table['device_time_flag'].mean():.1%} of cells on device time; the gate "
        f"{'failed' if aa.failures else 'passed'} (exit {1 if aa.failures else 0}). [aa/compare.md](aa/compare.md)", "",
        "## A/A with one pass per cell (intervals from the rounds of a single pass)", "", *summary_lines(single),
        f"- False alarms: {single.table['device_time_flag'].mean():.1%} of cells: within-run intervals miss the "
        "run-to-run noise that the passes measure.", "",
        "## A/B: one thread against two", "", *summary_lines(ab),
        f"- Slower and flagged: {len(slower)} of {len(ab.table)} cells; intervals wholly above 1: {excludes}. The gate "
        f"{'failed, exit 1' if ab.failures else 'passed, exit 0'}. [ab-threads/compare.md](ab-threads/compare.md)", "",
    ]  # fmt: skip
    out = folder / "NOISE.md"
    atomic_write_text(out, "\n".join(lines))
    return out
