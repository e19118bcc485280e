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
WITH_MARKS = ROOT / "tests" / "fixtures" / "schema-marks" / "benchmarks.json"  # marks, no schema_version


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


def test_the_matmul_peak_cells_of_an_older_run_become_the_runs_matmul_peak_fact():
    data = json.loads(WITH_MARKS.read_text())
    old = [e for e in (b["extra_info"] for b in data["benchmarks"]) if e["group"] == "calibration"]
    assert old, "the committed run measured its peak as cells"
    upgraded = upgrade(copy.deepcopy(data))
    assert not [b for b in upgraded["benchmarks"] if b["extra_info"]["group"] == "calibration"]
    peaks = {(p["device"], p["dtype"]): p for p in upgraded["machine_info"]["attnbench"]["matmul_peak"]}
    assert set(peaks) == {(e["device"], e["dtype"]) for e in old}
    for extra in old:  # the same peak every cell divided by, and every pass's rounds pooled
        peak = peaks[(extra["device"], extra["dtype"])]
        assert peak["peak_flops_per_s"] == extra["peak_flops_per_s"] and peak["matmul_size"] == extra["matmul_size"]
        passes = [e for e in old if e["id"] == extra["id"]]
        assert len(peak["device_samples_s"]) == sum(len(e["device_samples_s"]) for e in passes)
        assert peak["low_flops_per_s"] <= peak["median_flops_per_s"] <= peak["high_flops_per_s"]


def test_a_data_parallel_run_names_its_cells_trace_folder_once():
    data = upgrade(json.loads((ROOT / "results" / "ddp-cpu-amd-epyc-2c" / "benchmarks.json").read_text()))
    names = {b["extra_info"]["trace_name"] for b in data["benchmarks"]}
    assert names == {f"ddp.{b['extra_info']['id']}" for b in data["benchmarks"]}


def test_older_auto_cells_say_their_choices_source_was_not_recorded():
    data = upgrade(json.loads(BEFORE_MARKS.read_text()))
    auto = [e for e in grid_extras(data) if e["impl"] in ("auto", "ours_auto")]
    assert auto and all(e["auto_source"] in ("not recorded", "table", "cache", "fallback") for e in auto)
    assert all(e["auto_source"] is None for e in grid_extras(data) if e["impl"] not in ("auto", "ours_auto"))


def test_docs_record_is_what_the_dataclasses_say():
    from infra.record_doc import OUT, render

    assert OUT.read_text() == render(), "docs/RECORD.md is stale: run python -m infra.record_doc"
    for field in ("check_relative_error", "device_samples_s", "mfu", "peak_flops_per_s", "cuda_sync"):
        assert f"`{field}`" in OUT.read_text()
