"""Every committed run loads through one version-aware upgrade (analysis.load.upgrade), so nothing after
loading branches on a run's age: runs from before the registry's marks, runs with them, and the current
schema, which a newer attnbench's run is refused against."""

import copy
import json
from pathlib import Path

import pytest

from analysis.errors import AnalysisError
from analysis.load import load_runs, upgrade
from infra.record import SCHEMA_VERSION

ROOT = Path(__file__).parents[1]
BEFORE_MARKS = ROOT / "results" / "cpu-amd-epyc-2c" / "benchmarks.json"  # no baseline/user marks
WITH_MARKS = ROOT / "results" / "cpu-amd-epyc-avx512bf16-2c" / "benchmarks.json"  # marks, no schema_version


def grid_extras(data: dict) -> list[dict]:
    return [b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["group"] != "calibration"]


def test_a_run_from_before_the_registrys_marks_is_marked_as_its_analysis_read_it():
    data = json.loads(BEFORE_MARKS.read_text())
    assert "schema_version" not in data["machine_info"]["attnbench"]
    assert not any("baseline" in e for e in grid_extras(data))
    upgraded = upgrade(data)
    assert upgraded["machine_info"]["attnbench"]["schema_version"] == SCHEMA_VERSION
    for extra in grid_extras(upgraded):
        assert extra["baseline"] == (extra["impl"] == "torch") and extra["user"] == (":" in extra["impl"])
    cells, _, _ = load_runs([BEFORE_MARKS])
    grid = cells[cells["group"] != "calibration"]
    assert set(grid[grid["baseline"].astype(bool)]["impl"]) == {"torch"}


def test_a_run_with_the_marks_keeps_them_and_a_current_run_is_unchanged():
    data = json.loads(WITH_MARKS.read_text())
    marks = [(e["baseline"], e["user"]) for e in grid_extras(data)]
    upgraded = upgrade(copy.deepcopy(data))
    assert [(e["baseline"], e["user"]) for e in grid_extras(upgraded)] == marks
    assert {e["impl"] for e in grid_extras(upgraded) if e["baseline"]} == {"torch", "torch_mha"}
    again = upgrade(copy.deepcopy(upgraded))
    assert again == upgraded  # the current schema passes through as it is


def test_a_run_of_a_newer_schema_is_refused_in_one_line():
    data = json.loads(WITH_MARKS.read_text())
    data["machine_info"]["attnbench"]["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(AnalysisError, match="newer than this attnbench reads"):
        upgrade(data)
