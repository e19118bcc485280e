"""Benchmark JSON files -> one tidy DataFrame: a row per measured cell (its interleaved passes pooled),
a column per parameter or figure (units in the names), and the machine each row came from.

Times: `median_s` is the cell's device time, infra.record.typical_time: the geometric mean of its passes'
medians, the centre of its interval (on CPU the device time is the host latency); `host_median_s` the host
latency, the same way. The per-pass samples stay in `device_passes_s` and `host_passes_s` (a list of lists
per cell) for the statistics. The run's matmul peak per device and dtype is in its facts (`matmul_peak`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from infra import registry
from infra.machine import native_dtypes
from infra.record import (
    HOST_BOUND,
    PER_PASS,
    SCHEMA_VERSION,
    SCHEMA_WITH_FACTS_PASS,
    SCHEMA_WITH_PASS_UNIT,
    MatmulPeak,
    derive,
    step_flops,
    typical_time,
)
from infra.stats import block_log_ratios

# Fields that runs from before they were recorded lack: such runs still mix with newer ones (the field is
# empty for their cells); any other difference of fields is refused.
LATER_FIELDS = frozenset(
    {
        "auto_kernel",
        "auto_source",
        "baseline",
        "user",
        "reference",
        "common_mode_passes_s",
        "partner_id",
        "pair_log_ratios",
    }
)
UNRECORDED = "not recorded"  # a field a run from before it was recorded fills with this
OLD_PEAK_GROUP = "calibration"  # the group name runs before schema 3 measured the matmul peak in
REQUIRED_EXTRA = ("group", "device", "dtype", "id", "device_samples_s", "host_samples_s")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file (expected a pytest-benchmark JSON written by python -m bench)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnalysisError(f"{path}: not valid JSON ({err}); was the run interrupted?") from None
    if not isinstance(data, dict) or "benchmarks" not in data or "machine_info" not in data:
        raise AnalysisError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' or 'machine_info')")
    if "attnbench" not in data["machine_info"]:
        raise AnalysisError(f"{path}: has no attnbench machine facts; it was not written by attnbench's bench/")
    return data


def _peaks_from_cells(cells: list[dict]) -> list[dict]:
    """Version 2 and older measured the matmul peak as a group of cells, one per device and dtype (per shard in
    a merged run), in every pass: those passes pooled as one MatmulPeak each."""
    by_id: dict[str, list[dict]] = {}
    for extra in cells:
        if extra.get("device_samples_s") and extra.get("host_samples_s"):  # a damaged one is left out, not fatal
            by_id.setdefault(extra["id"], []).append(extra)
    peaks = []
    for cell_id, passes in by_id.items():
        first = passes[0]
        device = [s for p in passes for s in p["device_samples_s"]]
        flops = first["flops_analytic"]
        # the median of the pooled rounds, as the report of that time read it; its interval over the rounds
        low, high = np.percentile(device, [2.5, 97.5])
        peaks.append(
            asdict(
                MatmulPeak(
                    device=first["device"],
                    dtype=first["dtype"],
                    # the square matmul's side, from its FLOPs where a run did not record it
                    matmul_size=int(first.get("matmul_size") or round((flops / 2) ** (1 / 3))),
                    flops=flops,
                    device_samples_s=device,
                    host_samples_s=[s for p in passes for s in p["host_samples_s"]],
                    device_time_method=first.get("device_time_method", "not recorded"),
                    peak_flops_per_s=first["peak_flops_per_s"],
                    median_flops_per_s=flops / float(np.median(device)),
                    low_flops_per_s=flops / float(high),
                    high_flops_per_s=flops / float(low),
                    shard=cell_id.partition("@shard")[2] or None,
                )
            )
        )
    return peaks


# Version 3's words, and the names older runs stored them under: a cell's mode, the pass's index and count.
RENAMED = {"pass": "mode", "repeat": "pass_index", "repeats": "passes"}


def _renamed(fields: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in fields.items()}


def _rename_words(data: dict) -> None:
    """Versions 1 and 2 called a cell's mode `pass` and a pass `repeat`."""
    facts = data["machine_info"]["attnbench"]
    data["machine_info"]["attnbench"] = facts = _renamed(facts)
    if isinstance(facts.get("grid"), dict):
        facts["grid"] = _renamed(facts["grid"])
        facts["grid"]["blocks"] = [_renamed(b) for b in facts["grid"].get("blocks", [])]
    for bench in data["benchmarks"]:
        bench["extra_info"] = _renamed(bench.get("extra_info", {}))
        bench["params"] = _renamed(bench.get("params") or {})
        bench["extra_info"].setdefault("pass_index", 0)
    for outcome in data.get("attnbench_not_run", []):
        outcome["params"] = _renamed(outcome.get("params", {}))


def upgrade(data: dict) -> dict:
    """A run of any schema version in the current shape, so nothing after loading branches on a run's age.
    - Version 1 (no schema_version) lacks the registry's marks on some cells: its baseline was torch's layer
      and a user implementation was the one named module:factory, as the analysis of that time read them; it
      did not record which layer a cell was checked against.
    - Versions 1 and 2 measured the matmul peak as cells of a group of their own: they become the run's
      matmul_peak facts. Their auto cells may lack where the choice came from ("not recorded"); the
      data-parallel launches named each pass's trace folder in trace_name. They called a cell's mode `pass`
      and a pass's index `repeat` (RENAMED).
    - Versions before 4 timed every cell alone: none has a partner, so their comparisons are unpaired.
    - Versions before 5 measured a cell's facts (check, FLOPs, kernels, memory, compilation, traces) in its first
      timed pass, before its timing: `untimed_facts_pass` says which a run did, so the report can say whether
      its passes are alike.
    - Versions before 6 did not record a step's real tokens: `tokens_per_step` is the sum of a variable-length
      batch's lengths, else batch (or a data-parallel run's global batch) x seq_len. They wrote Derived metrics
      per pass, dropped here like every per-pass key (tokens/s counted padding there)."""
    facts = data["machine_info"]["attnbench"]
    version = facts.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise AnalysisError(
            f"schema_version {version} is newer than this attnbench reads ({SCHEMA_VERSION}); update attnbench"
        )
    if version < 3:
        _rename_words(data)
        facts = data["machine_info"]["attnbench"]
        old = [b for b in data["benchmarks"] if b.get("extra_info", {}).get("group") == OLD_PEAK_GROUP]
        data["benchmarks"] = [b for b in data["benchmarks"] if b not in old]
        facts["matmul_peak"] = _peaks_from_cells([b["extra_info"] for b in old])
        data["attnbench_not_run"] = [
            o for o in data.get("attnbench_not_run", []) if o.get("params", {}).get("group") != OLD_PEAK_GROUP
        ]
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        group, impl = extra.get("group"), str(extra.get("impl", ""))
        if group is not None and extra.get("tokens_per_step") is None:  # before schema 6: not recorded
            lengths = extra.get("sequence_lengths")  # a variable-length batch's real tokens are its lengths
            extra["tokens_per_step"] = (
                sum(lengths) if lengths else extra.get("global_batch", extra.get("batch")) * extra["seq_len"]
            )
        if group == "ddp":
            if version < 3:
                extra["trace_name"] = str(extra["trace_name"]).rpartition("-r")[0]
            continue
        if group is None:
            continue
        entry = registry.builtin(group, impl)
        if extra.get("baseline") is None:
            extra["baseline"] = group == "layer" and bool(entry and entry.baseline)
        if extra.get("user") is None:
            extra["user"] = registry.is_user(impl)
        if extra.get("reference") is None:
            extra["reference"] = UNRECORDED
        extra.setdefault("auto_kernel", None)
        extra.setdefault("kv_heads", 0)  # runs before the attention variants: every key/value head, every key
        extra.setdefault("window", 0)
        extra.setdefault("varlen", "none")  # runs before variable-length batches: every sequence seq_len long
        extra.setdefault("sequence_lengths", None)
        extra.setdefault("partner_id", None)
        extra.setdefault("kernel_compilations", None)  # runs before the flex kernel: no kernel compiled itself
        extra.setdefault("kernel_recompilations", None)
        if "auto_source" not in extra:
            extra["auto_source"] = UNRECORDED if registry.running_auto(group, impl) else None
    if not facts.get("cpu_native_dtypes"):  # runs from before the field: from the flags, as it is derived
        facts["cpu_native_dtypes"] = native_dtypes(facts.get("cpu_flags") or [])
    facts.setdefault("untimed_facts_pass", version >= SCHEMA_WITH_FACTS_PASS)
    # the unit of a paired ratio's interval: its passes from schema 7; before, blocks pooled across passes
    facts.setdefault("pair_unit", "passes" if version >= SCHEMA_WITH_PASS_UNIT else "blocks")
    facts["schema_version"] = SCHEMA_VERSION
    return data


def machine_label(facts: dict) -> str:
    return facts.get("gpu_name") or f"{facts.get('cpu_model')} ({facts.get('cpu_count')} cores)"


def machine_description(facts: dict) -> str:
    """The machine as its fingerprint tells it apart: name, family/model, the kernel-deciding flags, cores."""
    if facts.get("gpu_name"):
        return str(facts["gpu_name"])
    flags = ", ".join(facts.get("cpu_flags") or []) or "no AVX2"
    if facts.get("cpu_family") is None:
        return f"{facts.get('cpu_model')} ({flags}; {facts.get('cpu_count')} cores; recorded before fingerprints)"
    return (
        f"{facts.get('cpu_model')} ({facts.get('cpu_vendor')} family {facts.get('cpu_family')} model "
        f"{facts.get('cpu_model_number')}; {flags}; {facts.get('cpu_count')} cores)"
    )


def _pooled(group: list[dict]) -> dict:
    """One cell's passes as one row: facts from the first pass, samples kept per pass, its time the one
    estimator (infra.record.typical_time, the centre of its interval), the spread of its pooled rounds."""
    passes = sorted(group, key=lambda e: e["pass_index"])
    row = {k: v for k, v in passes[0].items() if k not in PER_PASS}
    device = [list(e["device_samples_s"]) for e in passes]
    host = [list(e["host_samples_s"]) for e in passes]
    pooled = np.concatenate(device)
    q1, q3 = np.percentile(pooled, [25, 75])
    median, host_median = typical_time(device), typical_time(host)
    recompiled = [e.get("kernel_recompilations") for e in passes]  # a kernel the model compiles itself (flex)
    row["kernel_recompilations"] = None if None in recompiled else int(sum(recompiled))
    shares = [e.get("others_cpu_share") for e in passes]  # how busy other processes kept the machine (schema 6)
    row["others_cpu_share_max"] = max(shares) if shares and None not in shares else None
    references = [e.get("common_mode_samples_s") for e in passes]
    if all(references):  # the reference matmul timed after each round (python -m bench ab)
        row["common_mode_passes_s"] = [list(r) for r in references]
    partners = {e.get("partner_id") for e in passes}
    paired = len(partners) == 1 and None not in partners and all(e.get("partner_samples_s") for e in passes)
    row["partner_id"] = partners.pop() if paired else None  # timed in ABBA blocks beside it (bench/pairs.py)
    blocks = [block_log_ratios(e["host_samples_s"], e["partner_samples_s"]) for e in passes] if paired else None
    row["pair_pass_log_ratios"] = blocks  # one list of block log ratios per pass
    row["pair_log_ratios"] = [x for b in blocks for x in b] if paired else None
    row.update(
        device_passes_s=device,
        host_passes_s=host,
        passes=len(passes),
        rounds=int(pooled.size),
        median_s=median,
        iqr_s=float(q3 - q1),
        min_s=float(pooled.min()),
        max_s=float(pooled.max()),
        host_median_s=host_median,
        device_time_method=passes[0].get("device_time_method"),
        device_time_note=passes[0].get("device_time_note"),
    )
    flops = row["flops"] = step_flops(row.get("flops_analytic"), row.get("flops_counted"))
    tokens = row["tokens_per_step"]  # real tokens: a variable-length batch's padding is not counted
    # the threshold the run recorded; runs from before it was recorded used today's
    threshold = passes[0].get("host_bound_threshold", HOST_BOUND)
    row.update(asdict(derive(flops, median, host_median, row.get("peak_flops_per_s"), tokens, threshold)))
    return row


TIMES = ("device_samples_s", "host_samples_s")


def invalid_times(passes: list[dict]) -> str | None:
    """Why a cell's recorded times cannot be a time (a NaN, an infinity, zero or less, none at all), or None."""
    for record in passes:
        for key in TIMES:
            samples = record.get(key) or []
            bad = [x for x in samples if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0)]
            if bad or not samples:
                what = f"{bad[0]!r} among" if bad else "no samples in"
                return f"{what} {key} of pass {record.get('pass_index')}"
    return None


def _cell_params(extra: dict) -> dict:
    return {k: extra.get(k) for k in ("group", "device", "dtype", "shape", "seq_len", "heads", "impl", "mode")}


def load_run(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cells that ran (passes pooled), cells that did not (with reasons), and the machine facts of one JSON."""
    data = upgrade(read_json(path))
    # the run's facts, and when pytest-benchmark recorded it (whether a run came after a rule was fixed)
    facts = {**data["machine_info"]["attnbench"], "recorded_at": data.get("datetime")}
    by_id: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        missing = [k for k in REQUIRED_EXTRA if k not in extra]
        if missing:
            raise AnalysisError(
                f"{path}: benchmark {bench.get('name')!r} lacks {', '.join(missing)} in extra_info "
                "(raw per-round samples are needed; was it written by an older attnbench?)"
            )
        by_id.setdefault(extra["id"], []).append({**extra, "name": bench["name"]})
    invalid = {cell: why for cell, group in by_id.items() if (why := invalid_times(group))}
    for cell, why in invalid.items():  # named, kept out of every table and average, listed as not measured
        print(f"warning: {path}: cell {cell} is left out: {why}", file=sys.stderr)
    frame = pd.DataFrame([_pooled(group) for cell, group in by_id.items() if cell not in invalid])
    outcomes = list(data.get("attnbench_not_run", [])) + [
        {"params": _cell_params(by_id[cell][0]), "id": cell, "outcome": "failed", "reason": f"invalid time: {why}"}
        for cell, why in invalid.items()
    ]
    not_run = pd.DataFrame(
        [
            {
                "kv_heads": 0,
                "window": 0,
                "varlen": "none",
                **o["params"],
                "id": o["id"],
                "outcome": o["outcome"],
                "reason": o["reason"],
            }
            for o in outcomes
        ]
    )
    frame["pair_unit"] = facts["pair_unit"]
    for df in (frame, not_run):
        df["machine"] = machine_label(facts)
        df["run"] = path.parent.name
    return frame, not_run, facts


def load_runs(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Several runs in one frame. Runs from different machines mix safely (the machine and run are
    columns); runs whose cells carry different fields are refused, so no column is silently half-empty."""
    if not paths:
        raise AnalysisError("no benchmark JSON given")
    frames, not_runs, machines, schema = [], [], {}, None
    for path in paths:
        frame, not_run, facts = load_run(Path(path))
        columns = frozenset(frame.columns) - LATER_FIELDS
        if schema is not None and frame.size and columns != schema[1]:
            diff = sorted(columns ^ schema[1])
            raise AnalysisError(
                f"{path} and {schema[0]} have different schemas (fields {', '.join(diff)}); "
                "compare runs made by the same attnbench version"
            )
        if frame.size and schema is None:
            schema = (path, columns)
        frames.append(frame)
        not_runs.append(not_run)
        machines[frame["run"].iloc[0] if len(frame) else Path(path).parent.name] = facts
    cells = pd.concat(frames, ignore_index=True)
    if cells.empty:
        raise AnalysisError(
            f"no cell ran in {', '.join(map(str, paths))}: the grid was empty or everything was skipped"
        )
    return cells, pd.concat(not_runs, ignore_index=True), machines


def read_runs_csv(path: Path, columns: set[str], made_by: str) -> pd.DataFrame:
    """An experiment's tidy runs.csv, or one line saying what is wrong with it and what writes it."""
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file (run {made_by})")
    try:
        runs = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise AnalysisError(f"{path}: not a readable CSV ({err})") from None
    missing = columns - set(runs.columns)
    if missing:
        raise AnalysisError(f"{path}: lacks columns {', '.join(sorted(missing))}")
    return runs
