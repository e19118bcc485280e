"""Benchmark JSON files -> one tidy DataFrame: a row per measured cell (its interleaved passes pooled),
a column per parameter or figure (units in the names), and the machine each row came from.

Times: `median_s` is the median device time over every pass's rounds (on CPU the device time is the
host latency); `host_median_s` the host latency. The per-pass samples stay in `device_passes_s` and
`host_passes_s` (a list of lists per cell) for the statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from infra.record import HOST_BOUND, PER_PASS, SCHEMA_VERSION, derive

# Fields that runs from before they were recorded lack: such runs still mix with newer ones (the field is
# empty for their cells); any other difference of fields is refused.
LATER_FIELDS = frozenset({"auto_kernel", "auto_source", "baseline", "user", "reference", "common_mode_passes_s"})
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


def upgrade(data: dict) -> dict:
    """A run of any schema version in the current shape, so nothing after loading branches on a run's age.
    Version 1 (no schema_version) lacks the registry's marks on some cells: its baseline was torch's layer and
    a user implementation was the one named module:factory, as the analysis of that time read them."""
    facts = data["machine_info"]["attnbench"]
    version = facts.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise AnalysisError(
            f"schema_version {version} is newer than this attnbench reads ({SCHEMA_VERSION}); update attnbench"
        )
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        if extra.get("group") in (None, "calibration", "ddp"):
            continue
        impl = str(extra.get("impl", ""))
        if extra.get("baseline") is None:
            extra["baseline"] = impl == "torch"
        if extra.get("user") is None:
            extra["user"] = ":" in impl
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
    """One cell's passes as one row: facts from the first pass, samples kept per pass, stats pooled."""
    passes = sorted(group, key=lambda e: e.get("repeat", 0))
    row = {k: v for k, v in passes[0].items() if k not in PER_PASS}
    device = [list(e["device_samples_s"]) for e in passes]
    host = [list(e["host_samples_s"]) for e in passes]
    pooled = np.concatenate(device)
    q1, median, q3 = np.percentile(pooled, [25, 50, 75])
    host_median = float(np.median(np.concatenate(host)))
    references = [e.get("common_mode_samples_s") for e in passes]
    if all(references):  # the reference matmul timed after each round (python -m bench ab)
        row["common_mode_passes_s"] = [list(r) for r in references]
    row.update(
        device_passes_s=device,
        host_passes_s=host,
        passes=len(passes),
        rounds=int(pooled.size),
        median_s=float(median),
        iqr_s=float(q3 - q1),
        min_s=float(pooled.min()),
        max_s=float(pooled.max()),
        host_median_s=host_median,
        host_over_device=host_median / float(median),
        device_time_method=passes[0].get("device_time_method"),
        device_time_note=passes[0].get("device_time_note"),
    )
    if row["group"] != "calibration":
        flops = row["flops_analytic"] if row.get("flops_analytic") is not None else row["flops_counted"]
        tokens = row.get("global_batch", row["batch"]) * row["seq_len"]
        # the threshold the run recorded; runs from before it was recorded used today's
        threshold = passes[0].get("host_bound_threshold", HOST_BOUND)
        row.update(asdict(derive(flops, float(median), host_median, row.get("peak_flops_per_s"), tokens, threshold)))
        row.update(
            {
                k: passes[0].get(k)
                for k in ("first_call_s", "compile_s", "graph_breaks", "inductor_cache_hits", "graph_break_reasons")
            }
        )
    else:
        row["flops_per_s"] = row["flops_analytic"] / median
    return row


def load_run(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cells that ran (passes pooled), cells that did not (with reasons), and the machine facts of one JSON."""
    data = upgrade(read_json(path))
    facts = data["machine_info"]["attnbench"]
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
    frame = pd.DataFrame([_pooled(group) for group in by_id.values()])
    not_run = pd.DataFrame(
        [
            {**o["params"], "id": o["id"], "outcome": o["outcome"], "reason": o["reason"]}
            for o in data.get("attnbench_not_run", [])
        ]
    )
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
