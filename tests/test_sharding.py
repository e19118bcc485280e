"""Grids sharded across machines: deterministic, disjoint, complete, balanced by cost; merged back into
one report that lists the cells of the unsharded run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.load import load_runs
from bench.grid import load_grid
from bench.sharding import assign_shards, in_shard, predicted_seconds

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("n_shards", [2, 3])
def test_shards_of_quick_are_disjoint_and_together_the_whole_grid(n_shards):
    grid = load_grid("quick")
    cells = grid.cells()
    owner = assign_shards(cells, grid, n_shards)
    shards = [{c.trace_name for c in cells if in_shard(c, owner, k)} for k in range(1, n_shards + 1)]
    assert sum(map(len, shards)) == len(set().union(*shards))  # disjoint
    assert set().union(*shards) == {c.trace_name for c in cells}
    assert all(shards) and assign_shards(cells, grid, n_shards) == owner  # none empty; deterministic


def test_shards_are_balanced_by_predicted_cost_not_by_count():
    grid = load_grid("default")
    cells = grid.cells()
    owner = assign_shards(cells, grid, 4)
    loads = [sum(predicted_seconds(c, grid) for c in cells if owner[c.trace_name] == k) for k in range(1, 5)]
    assert (max(loads) - min(loads)) / max(loads) < 0.05
    # cells differ in cost: an even split by count (the grid in four consecutive quarters) is far from balanced
    quarter = len(cells) // 4
    by_count = [sum(predicted_seconds(c, grid) for c in cells[k * quarter : (k + 1) * quarter]) for k in range(4)]
    assert (max(by_count) - min(by_count)) / max(by_count) > 0.2


def collected(*args: str) -> set[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "bench"),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--profile",
            "quick",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_pytest_shard_option_selects_the_shard():
    whole = collected()
    parts = [collected("--shard", f"{k}/3") for k in (1, 2, 3)]
    assert set().union(*parts) == whole and sum(map(len, parts)) == len(whole)


def bench_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "bench",
        "--profile",
        "quick",
        "--results",
        str(tmp_path),
        "--set",
        "seq_len=64",
        "--set",
        "layer.dropout=0",
        "--no-report",
        *args,
        "-q",
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_a_report_merged_from_shards_lists_the_cells_of_the_unsharded_run(tmp_path):
    assert bench_run(tmp_path, "--name", "whole").returncode == 0
    for k in (1, 2):
        result = bench_run(tmp_path, "--shard", f"{k}/2", "--name", f"shard{k}")
        assert result.returncode == 0, result.stderr
        assert (
            json.loads((tmp_path / f"shard{k}" / "benchmarks.json").read_text())["machine_info"]["attnbench"]["shard"]
            == f"{k}/2"
        )
    merge = [
        sys.executable,
        "-m",
        "analysis",
        "merge",
        str(tmp_path / "merged"),
        str(tmp_path / "shard1"),
        str(tmp_path / "shard2"),
    ]
    assert subprocess.run(merge, capture_output=True, text=True).returncode == 0
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "merged")], capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    whole, _, _ = load_runs([tmp_path / "whole" / "benchmarks.json"])
    merged, _, facts = load_runs([tmp_path / "merged" / "benchmarks.json"])
    assert set(merged["id"]) == set(whole["id"])
    # each shard measured its own matmul peak: the merge keeps each, naming its shard
    assert sorted(p["shard"] for p in facts["merged"]["matmul_peak"]) == ["1", "2"]
    assert facts["merged"]["merged_shards"] == ["1/2", "2/2"]
    assert re.search(r"shards merged\s*\|\s*1/2, 2/2", (tmp_path / "merged" / "REPORT.md").read_text())
    # shards of another commit are refused, and so is an incomplete set
    data = json.loads((tmp_path / "shard2" / "benchmarks.json").read_text())
    data["machine_info"]["attnbench"]["git_commit"] = "0" * 40
    (tmp_path / "shard2" / "benchmarks.json").write_text(json.dumps(data))
    refused = subprocess.run(merge, capture_output=True, text=True)
    assert refused.returncode == 2 and "differ in git_commit" in refused.stderr
    alone = subprocess.run(merge[:-1], capture_output=True, text=True)
    assert alone.returncode == 2 and "shards [1] of 2 given" in alone.stderr
