"""Benchmark JSON files -> one tidy DataFrame: a row per measured cell, a column per parameter or
figure (units in the names), and the machine each row came from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError

STATS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3")
REQUIRED_EXTRA = ("group", "device", "dtype", "seq_len", "heads", "impl", "pass", "flops_analytic")


def _read_json(path: Path) -> dict:
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


def machine_label(facts: dict) -> str:
    return facts.get("gpu_name") or f"{facts.get('cpu_model')} ({facts.get('cpu_count')} cores)"


def load_run(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cells that ran, cells that did not (with reasons), and the machine facts of one JSON."""
    data = _read_json(path)
    facts = data["machine_info"]["attnbench"]
    rows = []
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        missing = [k for k in REQUIRED_EXTRA if k not in extra]
        if missing:
            raise AnalysisError(f"{path}: benchmark {bench.get('name')!r} lacks {', '.join(missing)} in extra_info")
        stats = {f"{k}_s": bench["stats"][k] for k in STATS}
        rows.append({**extra, **stats, "rounds": bench["stats"]["rounds"], "name": bench["name"]})
    frame = pd.DataFrame(rows)
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
        columns = frozenset(frame.columns)
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
