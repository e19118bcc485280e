"""python -m analysis compare: matching, flags, the gate's exit codes, warnings and errors, on copies
of the real fixture run changed in known ways."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.compare import compare_runs, parse_thresholds
from analysis.errors import AnalysisError

RUN = Path(__file__).parent / "fixtures" / "quick-cpu"


def changed_copy(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(RUN, folder)
    data = json.loads((folder / "benchmarks.json").read_text())
    edit(data)
    (folder / "benchmarks.json").write_text(json.dumps(data))
    return folder


def known_noise(seed: int, factor: float = 1.0, group: str = "layer"):
    """The fixture's cells, in four passes, with their timings replaced by seeded draws of a known spread
    (2% within a pass, 1% between passes), times `factor` for one group: the flags expected are known."""

    def edit(data):
        rng = np.random.default_rng(seed)
        extra_passes = json.loads(json.dumps(data["benchmarks"]))
        for bench in extra_passes:
            bench["extra_info"]["repeat"] += 2
        data["benchmarks"] += extra_passes
        for bench in data["benchmarks"]:
            extra = bench["extra_info"]
            scale = factor if extra["group"] == group else 1.0
            center = 1e-3 * scale * np.exp(rng.normal(0, 0.01))
            extra["device_samples_s"] = list(center * np.exp(rng.normal(0, 0.02, len(extra["device_samples_s"]))))
            extra["host_samples_s"] = list(extra["device_samples_s"])

    return edit


def compare(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "analysis", "compare", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.slow
def test_a_run_against_itself_flags_nothing_and_exits_0(tmp_path):
    result = compare(RUN, RUN, "--out", tmp_path, "--fail-on", "time:5%,memory:1%,flops:0%")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "compare.md").read_text()
    assert "flagged (significant and at least the minimum change): 0 (0.0%)" in report
    assert (tmp_path / "figures" / "compare.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_slower_group_is_flagged_and_the_gate_fails(tmp_path):
    base = changed_copy(tmp_path, "base", known_noise(seed=1))
    slower = changed_copy(tmp_path, "slower", known_noise(seed=2, factor=1.25))
    comparison = compare_runs(base, slower, parse_thresholds("time:5%", "--fail-on"), {})
    table = comparison.table.set_index("id")
    layer = table[table["group"] == "layer"]
    assert layer["device_time_flag"].all() and (layer["device_time_low"] > 1).all()
    assert ((layer["device_time"] - 1.25).abs() < 0.1).all()
    assert table[table["group"] != "layer"]["device_time_flag"].mean() <= 0.1  # same code: few false alarms
    assert len(comparison.failures) >= len(layer)
    result = compare(base, slower, "--fail-on", "time:5%")
    assert result.returncode == 1 and "gate:" in result.stderr
    assert compare(base, slower, "--fail-on", "time:40%").returncode == 0  # 25% slower is under a 40% gate


@pytest.mark.slow
def test_memory_and_flops_are_gated_exactly(tmp_path):
    def more_memory(data):
        for bench in data["benchmarks"]:
            if bench["extra_info"]["id"].endswith("ours-train-p0"):
                bench["extra_info"]["peak_mem_bytes"] = int(bench["extra_info"]["peak_mem_bytes"] * 1.02)
                bench["extra_info"]["flops_counted"] += 1

    grown = changed_copy(tmp_path, "grown", more_memory)
    assert compare(RUN, grown, "--fail-on", "memory:1%").returncode == 1
    assert compare(RUN, grown, "--fail-on", "memory:3%").returncode == 0
    assert compare(RUN, grown, "--fail-on", "flops:0%").returncode == 1


@pytest.mark.slow
def test_cells_in_one_run_only_are_listed_and_machine_differences_warned(tmp_path):
    def drop_and_rethread(data):
        data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["impl"] != "naive"]
        data["machine_info"]["attnbench"]["torch_threads"] = 1

    other = changed_copy(tmp_path, "other", drop_and_rethread)
    result = compare(RUN, other)
    assert result.returncode == 0
    assert "warning: the runs differ in torch_threads: 2 vs 1" in result.stderr
    report = (other / "compare.md").read_text()
    assert "Cells only in base (6): " in report and "cpu-float32-small-n128-h4-naive-forward" in report


@pytest.mark.slow
def test_a_run_without_repeats_is_compared_with_a_warning(tmp_path):
    def one_pass(data):
        data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"].get("repeat", 0) == 0]

    single = changed_copy(tmp_path, "single", one_pass)
    result = compare(single, single)
    assert result.returncode == 0 and "within-run only" in result.stderr


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "no such run folder or benchmark JSON"),
        ("grid", "different grids (grid_profile: quick vs default)"),
        ("samples", "lacks device_samples_s"),
        ("disjoint", "have no cell in common"),
        ("fail_on", "--fail-on 'speed:5%' is not accepted; write METRIC:PERCENT"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, message):
    edits = {
        "grid": lambda d: d["machine_info"]["attnbench"].update(grid_profile="default"),
        "samples": lambda d: [b["extra_info"].pop("device_samples_s") for b in d["benchmarks"]],
        "disjoint": lambda d: [b["extra_info"].update(id="x" + b["extra_info"]["id"]) for b in d["benchmarks"]],
    }
    new = tmp_path / "nowhere" if case == "missing" else RUN
    if case in edits:
        new = changed_copy(tmp_path, case, edits[case])
    extra = ["--fail-on", "speed:5%"] if case == "fail_on" else []
    result = compare(RUN, new, "--out", tmp_path / "out", *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_noise_floor_widens_the_intervals_and_is_checked(tmp_path):
    base = changed_copy(tmp_path, "base", known_noise(seed=1))
    shifted = changed_copy(tmp_path, "shifted", known_noise(seed=2, factor=1.15))  # 15% slower layer cells
    plain = compare_runs(base, shifted, {}, {})
    floor = {"run_sd": 0.06, "machine": "elsewhere"}
    widened = compare_runs(base, shifted, {}, {}, floor)
    layer = lambda c: c.table[c.table["group"] == "layer"]  # noqa: E731
    assert layer(plain)["device_time_flag"].all() and not layer(widened)["device_time_flag"].any()
    assert any("measured on elsewhere" in w for w in widened.warnings)
    assert any("no --noise-floor" in w for w in plain.warnings)
    (tmp_path / "floor.json").write_text(json.dumps({"run_sd": -1}))
    result = compare(base, shifted, "--noise-floor", tmp_path / "floor.json")
    assert result.returncode == 2 and "run_sd must be a non-negative number" in result.stderr


def test_parse_thresholds():
    assert parse_thresholds("time:5%,memory:1%,flops:0%", "--fail-on") == {"time": 0.05, "memory": 0.01, "flops": 0.0}
    with pytest.raises(AnalysisError, match="'time:-5%' is not accepted"):
        parse_thresholds("time:-5%", "--fail-on")


@pytest.mark.slow
def test_pytest_benchmarks_own_compare_reads_our_json_with_group_by_a_parameter():
    command = "from pytest_benchmark.cli import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "compare",
            str(RUN / "benchmarks.json"),
            "--group-by=param:seq_len",
            "--columns=median",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "benchmark 'seq_len=128'" in result.stdout and "benchmark 'seq_len=256'" in result.stdout


def test_the_floor_is_the_run_to_run_spread_of_an_a_a_pair(tmp_path):
    from analysis.noise import measure_floor

    a1 = changed_copy(tmp_path, "a1", known_noise(seed=1))
    a2 = changed_copy(tmp_path, "a2", known_noise(seed=1, factor=1.1, group="attention"))  # same draws
    floor = measure_floor(a1, a2)
    attention = len(
        {
            b["extra_info"]["id"]
            for b in json.loads((a1 / "benchmarks.json").read_text())["benchmarks"]
            if b["extra_info"]["group"] == "attention"
        }
    )
    share = attention / floor["cells"]
    assert floor["run_sd"] == pytest.approx(np.sqrt(share * np.log(1.1) ** 2 / 2), rel=1e-6)
    assert floor["from"] == ["a1", "a2"] and floor["grid"] == "quick"
