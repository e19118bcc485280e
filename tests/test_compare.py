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


# Measured on these machines (the committed runs and noise floors): rounds within a pass spread by a log SD of
# about 0.11, a cell's passes by 0.058, and two runs of the same code by 0.067 (results/noise-*/noise_floor.json).
WITHIN_PASS, BETWEEN_PASSES, RUN_TO_RUN = 0.11, 0.058, 0.067


def floor_file(tmp_path: Path) -> Path:
    path = tmp_path / "noise_floor.json"
    path.write_text(json.dumps({"run_sd": RUN_TO_RUN, "machine": "measured on these machines"}))
    return path


def known_noise(seed: int, factor: float = 1.0, group: str = "layer"):
    """The fixture's cells, in four passes, with their timings replaced by seeded draws of the spread measured
    here (within a pass, between passes), times `factor` for one group: the flags expected are known."""

    def edit(data):
        rng = np.random.default_rng(seed)
        extra_passes = json.loads(json.dumps(data["benchmarks"]))
        for bench in extra_passes:
            bench["extra_info"]["repeat"] += 2
        data["benchmarks"] += extra_passes
        for bench in data["benchmarks"]:
            extra = bench["extra_info"]
            scale = factor if extra["group"] == group else 1.0
            center = 1e-3 * scale * np.exp(rng.normal(0, BETWEEN_PASSES))
            rounds = len(extra["device_samples_s"])
            extra["device_samples_s"] = list(center * np.exp(rng.normal(0, WITHIN_PASS, rounds)))
            extra["host_samples_s"] = list(extra["device_samples_s"])

    return edit


def compare(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "analysis", "compare", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.slow
def test_a_time_gate_between_unpaired_runs_needs_a_noise_floor_and_exact_gates_do_not(tmp_path):
    refused = compare(RUN, RUN, "--out", tmp_path, "--fail-on", "time:5%,memory:1%")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "two unpaired runs" in refused.stderr and "python -m bench ab" in refused.stderr
    result = compare(RUN, RUN, "--out", tmp_path, "--fail-on", "memory:1%,flops:0%")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "compare.md").read_text()
    assert "flagged (significant and at least the minimum change): 0 (0.0%)" in report
    assert (tmp_path / "figures" / "compare.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_slower_group_is_flagged_and_a_gate_too_narrow_for_the_noise_is_undecided(tmp_path):
    base = changed_copy(tmp_path, "base", known_noise(seed=1))
    slower = changed_copy(tmp_path, "slower", known_noise(seed=2, factor=2.5))
    floor = {"run_sd": RUN_TO_RUN}
    comparison = compare_runs(base, slower, parse_thresholds("time:5%", "--fail-on"), {}, floor)
    table = comparison.table.set_index("id")
    layer = table[table["group"] == "layer"]
    assert layer["device_time_flag"].all() and (layer["device_time_low"] > 1).all()
    assert ((layer["device_time"] - 2.5).abs() < 0.4).all()
    assert not table[table["group"] != "layer"]["device_time_flag"].any()  # same code: no false alarm
    assert len(comparison.failures) >= len(layer)
    result = compare(base, slower, "--fail-on", "time:5%", "--noise-floor", floor_file(tmp_path))
    assert result.returncode == 1 and "gate:" in result.stderr
    # 25% slower is beyond a 5% gate, but two unpaired runs this noisy cannot resolve 5%: undecided, not passed
    quarter = changed_copy(tmp_path, "quarter", known_noise(seed=3, factor=1.25))
    result = compare(base, quarter, "--fail-on", "time:5%", "--noise-floor", floor_file(tmp_path))
    assert result.returncode == 3 and "gate undecided:" in result.stderr and "bench ab" in result.stderr
    # a threshold wider than the noise decides: 25% slower is under a 300% gate
    assert compare(base, quarter, "--fail-on", "time:300%", "--noise-floor", floor_file(tmp_path)).returncode == 0


@pytest.mark.slow
def test_memory_and_flops_are_gated_exactly(tmp_path):
    def more_memory(data):
        for bench in data["benchmarks"]:
            if bench["extra_info"]["id"].endswith("ours-train-p0"):
                bench["extra_info"]["peak_mem_bytes"] = int(bench["extra_info"]["peak_mem_bytes"] * 1.02)
                bench["extra_info"]["flops_counted"] += 1
                bench["extra_info"]["flops_analytic"] += 1  # the step's FLOPs: analytic first (one rule)

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
    shifted = changed_copy(tmp_path, "shifted", known_noise(seed=2, factor=1.5))  # 50% slower layer cells
    plain = compare_runs(base, shifted, {}, {})
    floor = {"run_sd": 0.06, "machine": "elsewhere"}
    widened = compare_runs(base, shifted, {}, {}, floor)
    layer = lambda c: c.table[c.table["group"] == "layer"]  # noqa: E731
    width = lambda t: t["device_time_high"] / t["device_time_low"]  # noqa: E731
    assert (width(layer(widened)) >= width(layer(plain))).all()  # never narrower than the passes' own interval
    assert layer(plain)["device_time_flag"].mean() >= 0.75
    assert width(layer(widened)).mean() > width(layer(plain)).mean()
    assert layer(widened)["device_time_flag"].sum() <= layer(plain)["device_time_flag"].sum()
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
