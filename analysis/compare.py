"""python -m analysis compare BASE NEW: did the change make anything slower, larger or costlier?

Cells are matched by id. Each metric is a ratio new / base: host latency (`time`) and device time
(`device_time`) with a 95% interval (analysis/stats.py), peak memory and FLOPs exactly (they are
deterministic), MFU through the device time. A change is flagged only when it is both significant (the
interval excludes 1) and large (at least --min-change), as asv and pyperf report changes. With
--fail-on, a flagged regression beyond its threshold makes the exit code 1, for CI gates.

The intervals are simultaneous over the cells compared (analysis.stats.family_confidence): with 24 unchanged
cells, per-cell 95% intervals exclude 1 in 1.2 of them on average (the first paired experiment flagged one
unaffected cell so), and a gate must be wrong about the whole grid at most 5% of the time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common_mode import PROCESS_ID, common_mode, process_interval, process_warnings, with_process
from analysis.errors import AnalysisError
from analysis.load import load_run, machine_label
from analysis.stats import (
    CONFIDENCE,
    Interval,
    family_confidence,
    paired_ratio_interval,
    ratio_interval,
    with_run_noise,
)
from infra.machine import identity_differences, missing_identity

METRICS = ("time", "device_time", "memory", "flops", "mfu")
EXACT = ("memory", "flops")  # deterministic: any change is real
DEFAULT_MIN_CHANGE = {"time": 0.05, "device_time": 0.05, "mfu": 0.05, "memory": 0.0, "flops": 0.0}
# Beside the machine's identity (infra.machine.IDENTITY): the settings that change what a timing means.
FACTS_THAT_MATTER = ("cpu_model", "torch_threads", "torch_version", "cuda_version", "cudnn_version", "numeric_settings")


def parse_thresholds(text: str | None, option: str) -> dict[str, float]:
    """'time:5%,memory:1%' -> {'time': 0.05, 'memory': 0.01}; a bad item names itself and what is accepted."""
    out: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        metric, sep, value = item.strip().partition(":")
        try:
            number = float(value.strip().removesuffix("%")) / 100
        except ValueError:
            number = math.nan
        if not sep or metric not in METRICS or not number >= 0:
            raise AnalysisError(
                f"{option} {item!r} is not accepted; write METRIC:PERCENT[,...] with METRIC one of "
                f"{', '.join(METRICS)}, e.g. time:5%,memory:1%"
            )
        out[metric] = number
    return out


def resolve(path: Path) -> Path:
    json_path = path / "benchmarks.json" if path.is_dir() else path
    if not json_path.is_file():
        raise AnalysisError(f"{path}: no such run folder or benchmark JSON")
    return json_path


def check_comparable(base: dict, new: dict, base_path: Path, new_path: Path) -> None:
    for fact in ("grid_profile", "shapes"):
        a = base["grid"].get(fact) if fact == "shapes" else base.get(fact)
        b = new["grid"].get(fact) if fact == "shapes" else new.get(fact)
        if a != b:
            raise AnalysisError(
                f"{base_path} and {new_path} come from different grids ({fact}: {a} vs {b}); "
                "compare runs of the same grid profile"
            )


def machine_warnings(base: dict, new: dict) -> list[str]:
    """Whether the runs come from one machine (by the fingerprint's fields both record, naming those that an
    older run lacks), and the other facts that change what a timing means where they differ."""
    out = []
    differences = identity_differences(base, new)
    if differences:
        out.append(f"the runs come from different machines ({'; '.join(differences)})")
    for side, facts in (("base", base), ("new", new)):
        missing = missing_identity(facts)
        if missing:
            out.append(
                f"the {side} run does not record {', '.join(missing)} (it predates machine fingerprints): "
                "the machines are compared on what both record"
            )
    return out + [f"the runs differ in {d}" for d in machine_differences(base, new)]


def machine_differences(base: dict, new: dict) -> list[str]:
    """The facts that change what a timing means, where the two runs differ."""
    out = []
    for fact in FACTS_THAT_MATTER:
        a, b = base.get(fact), new.get(fact)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{fact}.{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{fact}: {a} vs {b}")
    return out


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per cell in both runs
    only_base: list[str]
    only_new: list[str]
    warnings: list[str]
    failures: list[str]  # gate failures, one line each
    undecided: list[str] = field(default_factory=list)  # gated intervals too wide for their threshold


def _flag(ratio: float, low: float, high: float, metric: str, min_change: float) -> bool:
    if pd.isna(ratio):
        return False
    if metric in EXACT:
        return abs(ratio - 1) > min_change
    return (low > 1 or high < 1) and abs(ratio - 1) >= min_change


def _has(row: pd.Series, field: str) -> bool:
    return field in row and not pd.isna(row[field]) and row[field] != 0


def _ratio(new: pd.Series, base: pd.Series, field: str) -> float:
    """new / base of a field, NaN where a run does not measure it (a data-parallel run has no memory)."""
    return new[field] / base[field] if _has(new, field) and _has(base, field) else np.nan


def _levels(cells: int, process: bool, simultaneous: bool) -> tuple[float, float]:
    """(each cell's level, the process row's): simultaneous over every interval of the comparison, the process
    row and each cell's product with it included (Bonferroni: half the miss to the process, half shared by the
    cells); or 95% each."""
    if not simultaneous:
        return CONFIDENCE, CONFIDENCE
    if not process:
        return family_confidence(cells), CONFIDENCE
    miss = 1 - CONFIDENCE
    return 1 - miss / 2 / max(cells, 1), 1 - miss / 2


def _row(
    cell_id: str,
    group: str,
    passes: str,
    host: Interval,
    device: Interval,
    raw: Interval,
    level: float,
    own: tuple[Interval, Interval] | None = None,
) -> dict:
    """A row of the table. `own`: (host, device) over the reference, where the whole change is that times the
    process's; elsewhere the cell's own change is its whole change."""
    own_host, own_device = own or (host, device)
    return {
        "time_vs_process": own_host.estimate,
        "time_vs_process_low": own_host.low,
        "time_vs_process_high": own_host.high,
        "device_time_vs_process": own_device.estimate,
        "device_time_vs_process_low": own_device.low,
        "device_time_vs_process_high": own_device.high,
        "id": cell_id,
        "group": group,
        "passes": passes,
        "interval": device.method,
        "confidence": level,
        "time": host.estimate,
        "time_low": host.low,
        "time_high": host.high,
        "device_time": device.estimate,
        "device_time_low": device.low,
        "device_time_high": device.high,
        "device_time_p": device.p_value,
        "device_time_raw": raw.estimate,
        "device_time_raw_low": raw.low,
        "device_time_raw_high": raw.high,
    }


def compare_cells(
    base: pd.DataFrame,
    new: pd.DataFrame,
    min_change: dict[str, float],
    run_sd: float = 0.0,
    paired: bool = False,
    use_common_mode: bool = False,
    simultaneous: bool = True,
) -> pd.DataFrame:
    """One row per cell in both runs. `paired`: the runs' passes alternated in pairs (python -m bench ab), so
    ratios come from per-pair differences; `use_common_mode`: each round is divided by the reference matmul
    timed after it, and the reference's own ratio (the process as a whole, a row of its own) multiplied back
    in, so drift cancels and a process-wide slowdown is never divided away; `simultaneous`: 95% for every
    interval of the comparison together, else 95% for each alone."""
    base, new = base.set_index("id"), new.set_index("id")
    cells = sorted(set(base.index) & set(new.index))
    process = None
    if paired and use_common_mode:
        _, process_level = _levels(len(cells), True, simultaneous)
        process = process_interval(base, new, cells, process_level)
    level, process_level = _levels(len(cells), process is not None, simultaneous)
    rows = []
    for cell_id in cells:
        a, b = base.loc[cell_id], new.loc[cell_id]
        own = None  # the cell's change over the process as a whole, where the reference was timed
        if paired:
            raw = paired_ratio_interval(b["device_passes_s"], a["device_passes_s"], confidence=level)
            host = paired_ratio_interval(b["host_passes_s"], a["host_passes_s"], confidence=level)
            divided = common_mode(a, b, "device_passes_s", level) if process is not None else None
            divided_host = common_mode(a, b, "host_passes_s", level) if process is not None else None
            own = (divided_host or host, divided) if divided is not None else None
            device = with_process(divided, process) if divided is not None else raw
            host = with_process(divided_host, process) if divided_host is not None else host
        else:
            host = with_run_noise(ratio_interval(b["host_passes_s"], a["host_passes_s"], level), run_sd, level)
            raw = device = with_run_noise(
                ratio_interval(b["device_passes_s"], a["device_passes_s"], level), run_sd, level
            )
        flops = _ratio(b, a, "flops")  # each side's step FLOPs by the one rule (infra.record.step_flops)
        # mfu ratio = k / device ratio; a pair runs on one machine, whose peak is one: its per-run estimate is noise
        k = flops * (1.0 if paired else _ratio(a, b, "peak_flops_per_s"))
        row = _row(cell_id, a["group"], f"{int(a['passes'])}/{int(b['passes'])}", host, device, raw, level, own)
        row["impl"] = a.get("impl")
        row.update(
            memory=_ratio(b, a, "peak_mem_bytes"),
            flops=flops,
            mfu=k / device.estimate,
            mfu_low=k / device.high,
            mfu_high=k / device.low,
        )
        rows.append(row)
    if process is not None:  # the process as a whole: a row of the comparison, gated like any cell
        n = len(base.loc[cells[0], "common_mode_passes_s"])
        row = _row(PROCESS_ID, "process", f"{n}/{n}", process, process, process, process_level)
        row.update(memory=np.nan, flops=np.nan, mfu=np.nan, mfu_low=np.nan, mfu_high=np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for metric in METRICS:
        low = table[metric] if metric in EXACT else table[f"{metric}_low"]
        high = table[metric] if metric in EXACT else table[f"{metric}_high"]
        table[f"{metric}_flag"] = [
            _flag(r, lo, hi, metric, min_change[metric]) for r, lo, hi in zip(table[metric], low, high)
        ]
    for metric in ("time", "device_time"):  # a cell's own change, beside the process's, is a change too
        own = f"{metric}_vs_process"
        table[f"{own}_flag"] = [
            _flag(r, lo, hi, metric, min_change[metric])
            for r, lo, hi in zip(table[own], table[f"{own}_low"], table[f"{own}_high"])
        ]
        table[f"{metric}_flag"] = table[f"{metric}_flag"] | table[f"{own}_flag"]
    return table


UNDECIDED = 3  # the exit code of a gate whose intervals are too wide for its thresholds
GATE_WORDS = {0: "passed, exit 0", 1: "failed, exit 1", UNDECIDED: "undecided, exit 3"}
TIMED = ("time", "device_time", "mfu")  # the metrics an interval decides, not an exact count


def gate(table: pd.DataFrame, fail_on: dict[str, float]) -> list[str]:
    """One line per cell and metric whose flagged change is a regression beyond its threshold: its whole
    change, or (paired) its change over the process as a whole, which drift cannot blur."""
    out = []
    for metric, threshold in fail_on.items():
        columns = [metric, f"{metric}_vs_process"] if f"{metric}_vs_process" in table else [metric]
        for row in table.to_dict("records"):
            for column in columns:
                value = row[column]
                worse = value < 1 - threshold if metric == "mfu" else value > 1 + threshold
                own_flag = row[f"{column}_flag"] if column != metric else row[f"{metric}_flag"]
                if worse and (metric in EXACT or own_flag):
                    what = metric if column == metric else f"{metric} over the process"
                    out.append(f"{row['id']}: {what} x{value:.3f} (threshold {threshold:.0%})")
                    break
    return out


def repeats_to_decide(half_width: float, threshold: float, have: int) -> int:
    """How many pairs (or passes) would narrow a relative half-width to the threshold: the log half-width
    shrinks as one over the square root of their number (the t quantile's own shrinking left aside)."""
    need = math.log1p(half_width) / math.log1p(threshold)
    return max(have + 1, math.ceil(have * need**2))


def undecided(table: pd.DataFrame, fail_on: dict[str, float], failures: list[str]) -> list[str]:
    """One line per cell and timed metric whose interval is wider than the threshold it is gated on, and that
    is not already a failure: the gate cannot tell a regression of that size from noise there."""
    failed = {line.split(": ")[0] for line in failures}
    out = []
    for metric, threshold in fail_on.items():
        if metric not in TIMED:
            continue
        own = f"{metric}_vs_process" if f"{metric}_vs_process" in table else metric
        for row in table.to_dict("records"):
            if pd.isna(row[metric]) or row["id"] in failed:
                continue
            # a cell's own change decides it (the process's share is the process row's to decide)
            half = math.sqrt(row[f"{own}_high"] / row[f"{own}_low"]) - 1
            if half > threshold:
                have = int(str(row["passes"]).split("/")[0])
                more = (
                    "two unpaired runs this far apart cannot resolve it with more passes: gate it with python -m "
                    "bench ab"
                    if str(row["interval"]).endswith("+runs")
                    else f"about {repeats_to_decide(half, threshold, have)} pairs would decide"
                )
                out.append(
                    f"{row['id']}: {metric} x{row[own]:.3f} [{row[f'{own}_low']:.3f}, "
                    f"{row[f'{own}_high']:.3f}] is wider than its {threshold:.0%} threshold (half-width "
                    f"{half:.1%}); {more}"
                )
    return out


def exit_code(comparison: Comparison) -> int:
    """The gate's exit code: 1 where a regression beyond its threshold was found, 3 where an interval is too
    wide to decide its threshold (run more pairs), else 0."""
    if comparison.failures:
        return 1
    return UNDECIDED if comparison.undecided else 0


def is_ab_pair(base: dict, new: dict) -> bool:
    """Both runs are the two sides of one `python -m bench ab`: their passes alternated in pairs."""
    a, b = base.get("ab") or {}, new.get("ab") or {}
    return bool(a) and a.get("id") == b.get("id") and {a.get("side"), b.get("side")} == {"base", "new"}


def read_noise_floor(path: Path) -> dict:
    """noise_floor.json (written by python -m analysis noise), or the folder that holds it."""
    file = path / "noise_floor.json" if path.is_dir() else path
    if not file.is_file():
        raise AnalysisError(f"{path}: no noise_floor.json (python -m bench.noise_floor writes one)")
    try:
        floor = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise AnalysisError(
            f"--noise-floor {file}: not valid JSON ({err}); give the noise_floor.json that "
            "python -m analysis noise writes"
        ) from None
    if not isinstance(floor, dict) or not isinstance(floor.get("run_sd"), float | int) or floor["run_sd"] < 0:
        got = floor.get("run_sd") if isinstance(floor, dict) else floor
        raise AnalysisError(f"{file}: run_sd must be a non-negative number, got {got!r}")
    return floor


def noise_floor_warnings(floor: dict, facts: dict) -> list[str]:
    """A floor measured on another machine says nothing of this one's noise: say so, naming the difference."""
    recorded = floor.get("fingerprint")
    if recorded is None:
        if floor.get("machine") != machine_label(facts):
            return [f"the noise floor was measured on {floor.get('machine')}, not on {machine_label(facts)}"]
        return [
            "the noise floor records no machine fingerprint (measured before fingerprints): it is matched by "
            f"the machine's name alone ({floor.get('machine')})"
        ]
    differences = identity_differences(recorded, facts)
    if differences:
        return [f"the noise floor was measured on another machine ({'; '.join(differences)})"]
    return []


@dataclass(frozen=True)
class Side:
    """One side of a comparison, read once: its cells (passes pooled), machine facts and JSON's path."""

    cells: pd.DataFrame
    facts: dict
    path: Path


def read_side(path: Path) -> Side:
    json_path = resolve(path)
    cells, _, facts = load_run(json_path)
    return Side(cells, facts, json_path)


def compare_runs(
    base_path: Path,
    new_path: Path,
    fail_on: dict[str, float],
    min_change: dict[str, float],
    noise_floor: dict | None = None,
    measure_passes_only: bool = False,
) -> Comparison:
    return compare_sides(
        read_side(base_path), read_side(new_path), fail_on, min_change, noise_floor, measure_passes_only
    )


def compare_sides(
    base_side: Side,
    new_side: Side,
    fail_on: dict[str, float],
    min_change: dict[str, float],
    noise_floor: dict | None = None,
    measure_passes_only: bool = False,
) -> Comparison:
    """compare_runs on sides already read (a caller that also reads their cells reads each file once)."""
    base, base_facts, base_json = base_side.cells, base_side.facts, base_side.path
    new, new_facts, new_json = new_side.cells, new_side.facts, new_side.path
    check_comparable(base_facts, new_facts, base_json, new_json)
    limits = {**DEFAULT_MIN_CHANGE, **min_change}
    for metric, threshold in fail_on.items():  # a gate's threshold is also the smallest change it flags
        limits[metric] = min(limits[metric], threshold) if metric in min_change else threshold
    paired = is_ab_pair(base_facts, new_facts)
    timed_gate = sorted(set(fail_on) & set(TIMED))
    # the noise experiments measure exactly that untrustworthy gate (measure_passes_only); a user is refused it
    if timed_gate and not paired and noise_floor is None and not measure_passes_only:
        raise AnalysisError(
            f"--fail-on {','.join(timed_gate)} between two unpaired runs: runs on a shared machine drift apart by "
            "more than their passes show, so such a gate cannot be trusted without this machine's measured noise "
            "floor (--noise-floor results/noise-<machine>/, from python -m bench.noise_floor); gate a change with "
            "python -m bench ab --base REV --fail-on ..., which alternates the two sides"
        )
    table = compare_cells(
        base,
        new,
        limits,
        noise_floor["run_sd"] if noise_floor else 0.0,
        paired=paired,
        use_common_mode=paired,
    )
    if table.empty:
        raise AnalysisError(f"{base_json} and {new_json} have no cell in common")
    warnings = machine_warnings(base_facts, new_facts)
    if noise_floor and not paired:
        warnings += noise_floor_warnings(noise_floor, new_facts)
    if paired:
        warnings += process_warnings(table)
    elif not noise_floor:
        warnings.append(
            "no --noise-floor: intervals see the noise between passes within each run, not the shift "
            "between runs; a measured floor (python -m bench.noise_floor) widens them by it"
        )
    if (table["interval"].str.startswith("rounds-bootstrap")).any():
        warnings.append(
            "a run has one pass per cell: its intervals are within-run only (a bootstrap over rounds) "
            "and miss run-to-run noise; run both with --passes 3 for a gate you can trust"
        )
    ids_base, ids_new = set(base["id"]), set(new["id"])
    failures = gate(table, fail_on)
    return Comparison(
        table,
        sorted(ids_base - ids_new),
        sorted(ids_new - ids_base),
        warnings,
        failures,
        undecided(table, fail_on, failures),
    )
