"""analysis/ on a small fixture of real results (tests/fixtures/quick-cpu: python -m bench --profile quick
--passes 2; tests/fixtures/positional: a tiny positional experiment): loading, fits, the report and
table commands, bad input, the notebook."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits import crossover_length, describe_exponent, growth_word, scaling_exponents
from analysis.load import load_runs, upgrade
from analysis.stats import median_interval

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "quick-cpu"


@pytest.fixture
def run_copy(tmp_path) -> Path:
    """A writable copy of the fixture run with the positional experiment beside it, as in results/."""
    shutil.copytree(RUN, tmp_path / "quick-cpu")
    shutil.copytree(FIXTURES / "positional", tmp_path / "positional")
    return tmp_path / "quick-cpu"


def analysis(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], capture_output=True, text=True)


def test_load_pools_each_cells_passes_into_one_row_with_units_in_names():
    cells, not_run, machines = load_runs([RUN / "benchmarks.json"])
    raw = upgrade(json.loads((RUN / "benchmarks.json").read_text()))  # its matmul peak becomes a fact of the run
    ids = {b["extra_info"]["id"] for b in raw["benchmarks"]}
    assert len(raw["machine_info"]["attnbench"]["matmul_peak"]) == 1
    assert len(cells) == len(ids) and len(raw["benchmarks"]) == 2 * len(ids)  # two interleaved passes each
    for column in (
        "median_s",
        "host_median_s",
        "iqr_s",
        "peak_mem_bytes",
        "flops_analytic",
        "tokens_per_s",
        "mfu",
        "attention_kernel",
        "device_passes_s",
        "machine",
        "run",
    ):
        assert column in cells.columns
    row = cells.iloc[0]
    assert row["passes"] == 2 and len(row["device_passes_s"]) == 2
    # one estimator: the reported time is the centre of its own interval
    assert row["median_s"] == pytest.approx(median_interval(row["device_passes_s"]).estimate)
    assert list(machines) == ["quick-cpu"] and set(not_run["outcome"]) == {"skipped"}
    assert any("no hook to rotate" in reason for reason in not_run["reason"])  # torch's layer with RoPE


def test_runs_from_different_machines_mix_safely(tmp_path):
    other = json.loads((RUN / "benchmarks.json").read_text())
    other["machine_info"]["attnbench"]["cpu_model"] = "Other CPU"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "benchmarks.json").write_text(json.dumps(other))
    cells, _, machines = load_runs([RUN / "benchmarks.json", tmp_path / "other" / "benchmarks.json"])
    assert cells["machine"].nunique() == 2 and set(machines) == {"quick-cpu", "other"}


def write(tmp_path: Path, data) -> Path:
    (tmp_path / "run").mkdir(exist_ok=True)
    path = tmp_path / "run" / "benchmarks.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_bad_inputs_raise_clear_errors(tmp_path):
    raw = json.loads((RUN / "benchmarks.json").read_text())
    with pytest.raises(AnalysisError, match="no such file"):
        load_runs([tmp_path / "missing.json"])
    with pytest.raises(AnalysisError, match="not valid JSON"):
        load_runs([write(tmp_path, (RUN / "benchmarks.json").read_text()[:5000])])
    with pytest.raises(AnalysisError, match="no cell ran"):
        load_runs([write(tmp_path, {**raw, "benchmarks": []})])
    no_samples = json.loads(json.dumps(raw))
    del no_samples["benchmarks"][0]["extra_info"]["device_samples_s"]
    with pytest.raises(AnalysisError, match="lacks device_samples_s.*raw per-round samples"):
        load_runs([write(tmp_path, no_samples)])
    changed = json.loads(json.dumps(raw))
    for bench in changed["benchmarks"]:
        bench["extra_info"]["new_field"] = 1
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "benchmarks.json").write_text(json.dumps(changed))
    with pytest.raises(AnalysisError, match="different schemas.*new_field"):
        load_runs([RUN / "benchmarks.json", tmp_path / "b" / "benchmarks.json"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_dir", "corrupt", "no_traces", "empty_grid"])
def test_report_command_fails_cleanly_on_bad_input(case, run_copy, tmp_path):
    target = run_copy
    if case == "missing_dir":
        target = tmp_path / "nowhere"
    elif case == "corrupt":
        (run_copy / "benchmarks.json").write_text('{"benchmarks": [')
    elif case == "no_traces":
        for trace in run_copy.rglob("*.pt.trace.json.gz"):
            trace.unlink()
    else:
        raw = json.loads((run_copy / "benchmarks.json").read_text())
        (run_copy / "benchmarks.json").write_text(json.dumps({**raw, "benchmarks": []}))
    result = analysis("report", target)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (run_copy / "REPORT.md").exists()


@pytest.mark.slow
def test_report_command_on_real_results(run_copy):
    result = analysis("report", run_copy)
    assert result.returncode == 0, result.stderr
    report = (run_copy / "REPORT.md").read_text()
    for heading in (
        "## Machine and grid",
        "## How the times were taken",
        "## Which kernels ran",
        "## How attention scales",
        "## Where attention overtakes",
        "## Our encoder layer vs",
        "## Memory: measured peak",
        "## FLOPs: counted vs analytic",
        "## Fraction of peak",
        "## Noise",
        "## Traces vs the benchmark",
        "## Positional encodings",
    ):
        assert heading in report
    # CPU run: device-specific sentences chosen for the CPU, verdicts with intervals, no GPU prose
    assert "on the CPU the device's time and the host's are the same" in report
    timing = report.split("## How the times were taken")[1].split("\n## ")[0]
    assert "No cell here can be host-bound: on the CPU the device's time and the host's are the same" in timing
    assert "host_over_device" not in timing  # no table of host-bound cells: a CPU cell never is one
    assert "TF32 is a CUDA setting" in report
    assert "Training step at least as fast as torch's" in report and "[" in report.split("Training step at least")[1]
    # every target's cells are counted once, each under one word, and the findings' words add up to their count
    for line in [x for x in report.splitlines() if x.startswith("- Training step ") and " cells." in x]:
        judged, total = re.fullmatch(r".*?\): (.*) of (\d+) cells\..*", line).groups()
        words = re.findall(r"(met|missed|inconclusive) in (\d+)", re.sub(r"\([^)]*\)", "", judged))
        assert words and sum(int(n) for _, n in words) == int(total), line
    # each target's finding: its verdicts add up to its cells, with how wide their intervals are
    found = report.split("## What this run found")[1].split("\n## ")[0]
    tallies = re.findall(r": met (\d+), missed (\d+), inconclusive (\d+) of (\d+) cells; median half-width", found)
    assert tallies and all(int(a) + int(b) + int(c) == int(n) for a, b, c, n in tallies)
    # how wide the verdicts' intervals are: the median no wider than the 90th percentile
    median, p90 = map(
        float,
        re.search(
            r"median half-width of the \d+ time ratios in the tables below is ([\d.]+)% \(90th percentile ([\d.]+)%",
            report,
        ).groups(),
    )
    # ... recomputed from the section's own tables (printed to 3 decimals: a rounding's worth of tolerance)
    section = report.split("## Our encoder layer vs")[1].split("\n## ")[0]
    widths = []
    for table in re.findall(r"((?:^\|.*\|\n)+)", section, flags=re.M):
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
        if "time_low" in rows[0]:
            low, high = rows[0].index("time_low"), rows[0].index("time_high")
            widths += [(float(r[high]) / float(r[low])) ** 0.5 - 1 for r in rows[2:]]
    assert widths and median == pytest.approx(100 * float(np.median(widths)), abs=0.15)
    assert p90 == pytest.approx(100 * float(np.quantile(widths, 0.9)), abs=0.15)
    assert "within timing noise" not in report
    for name in (
        "time_vs_seq_len",
        "memory_vs_seq_len",
        "heads_x_length_heatmap",
        "mfu_vs_seq_len",
        "op_share_vs_seq_len",
        "positional_accuracy_vs_length",
        "attention_maps_reverse",
    ):
        assert (run_copy / "figures" / f"{name}.png").stat().st_size > 1000
        assert (run_copy / "figures" / f"{name}.svg").exists()


@pytest.mark.slow
def test_table_command_mixes_runs_and_refuses_differing_schemas(run_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    assert analysis("table", run_copy, other, "--out", tmp_path / "c.csv").returncode == 0
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table["run"]) == {"quick-cpu", "other"} and len(table) % 2 == 0
    raw = json.loads((other / "benchmarks.json").read_text())
    for bench in raw["benchmarks"]:
        bench["extra_info"].pop("attention_family", None)
    (other / "benchmarks.json").write_text(json.dumps(raw))
    result = analysis("table", run_copy, other, "--out", tmp_path / "c.csv")
    assert result.returncode == 2 and "different schemas (fields attention_family)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_report_on_a_run_of_one_group(run_copy):
    raw = json.loads((run_copy / "benchmarks.json").read_text())
    raw["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"]["group"] in ("train_step", "calibration")]
    (run_copy / "benchmarks.json").write_text(json.dumps(raw))
    shutil.rmtree(run_copy / "traces")
    result = analysis("report", run_copy)
    assert result.returncode == 0, result.stderr
    report = (run_copy / "REPORT.md").read_text()
    assert "No attention cells in this run" in report and "No traces in this run" in report
    assert "![mfu_vs_seq_len](figures/mfu_vs_seq_len.png)" in report and "time_vs_seq_len" not in report


def test_scaling_words_only_where_the_interval_fits_one():
    n = np.array([128, 256, 512, 1024, 2048])
    cells = pd.DataFrame(
        {
            "group": "attention",
            "device": "cpu",
            "dtype": "float32",
            "shape": "small",
            "heads": 4,
            "impl": "naive",
            "mode": "train",
            "dropout": 0.0,
            "pos_encoding": "none",
            "compile": "eager",
            "machine": "m",
            "seq_len": n,
            "median_s": 1e-9 * n**2 * (1 + 0.01 * np.sin(n)),
            "peak_mem_bytes": 4 * n**2,
        }
    )
    row = scaling_exponents(cells).iloc[0]
    assert row["time_low"] < 2 < row["time_high"] and row["points"] == 5
    assert row["memory_exponent"] == pytest.approx(2.0)
    assert "quadratic" in describe_exponent(row["time_exponent"], row["time_low"], row["time_high"])
    assert growth_word(1.2, 2.3) is None  # an interval spanning two words gets none
    assert "not resolved to one word" in describe_exponent(1.7, 1.2, 2.3)
    assert scaling_exponents(cells.iloc[:3]).empty  # fewer than 5 lengths: no fit at all


def test_crossover():
    n = np.array([256, 512, 1024, 2048])
    assert crossover_length(n, n**2 / 1000.0, 1.0 * n) == pytest.approx(1000.0)
    assert crossover_length(n, 0.1 * n, 1.0 * n) is None


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_real_results(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(__file__).parents[1] / "analysis" / "figures.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    env = {"ATTNBENCH_RESULTS": str(RUN.resolve()), "ATTNBENCH_POSITIONAL": str((FIXTURES / "positional").resolve())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
        ).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6


def test_a_nan_time_is_named_left_out_of_every_table_and_never_compared_as_no_change(run_copy, tmp_path):
    data = json.loads((run_copy / "benchmarks.json").read_text())
    bad = data["benchmarks"][0]["extra_info"]
    bad["device_samples_s"][1] = bad["host_samples_s"][1] = float("nan")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "benchmarks.json").write_text(json.dumps(data))
    cells, not_run, _ = load_runs([broken / "benchmarks.json"])
    assert bad["id"] not in set(cells["id"])
    assert not_run.set_index("id").loc[bad["id"], "reason"].startswith("invalid time: nan among device_samples_s")
    report = analysis("report", broken)
    assert report.returncode == 0 and f"cell {bad['id']} is left out" in report.stderr
    assert "invalid time: nan" in (broken / "REPORT.md").read_text()
    compared = analysis("compare", run_copy, broken, "--out", tmp_path, "--fail-on", "memory:1%")
    assert f"cell {bad['id']} is left out" in compared.stderr
    assert f"Cells only in base (1): {bad['id']}" in (tmp_path / "compare.md").read_text()


def test_the_report_says_when_the_machine_was_busy_and_which_cells_were_measured_then(run_copy):
    data = json.loads((run_copy / "benchmarks.json").read_text())
    for bench in data["benchmarks"]:
        bench["extra_info"]["others_cpu_share"] = 0.02
    busy = data["benchmarks"][0]["extra_info"]
    busy["others_cpu_share"] = 0.45
    (run_copy / "benchmarks.json").write_text(json.dumps(data))
    assert analysis("report", run_copy).returncode == 0
    text = (run_copy / "REPORT.md").read_text()
    assert text.index("## How busy the machine was") < text.index("## What this run found")  # above the findings
    load = text[text.index("## How busy the machine was") : text.index("## What this run found")]
    assert "**The machine was busy.**" in load and "up to 45%" in load and f"| {busy['id']}" in load
    for bench in data["benchmarks"]:
        bench["extra_info"]["others_cpu_share"] = 0.02
    (run_copy / "benchmarks.json").write_text(json.dumps(data))
    assert analysis("report", run_copy).returncode == 0
    assert "used at most 2% of the machine's cores" in (run_copy / "REPORT.md").read_text()


def test_a_report_on_a_run_whose_baselines_were_left_out_says_so_and_does_not_crash(run_copy):
    """A run that left cells out as it went (bench/replan.py) may lack the cells a comparison divides by."""
    data = json.loads((run_copy / "benchmarks.json").read_text())
    data["benchmarks"] = [
        b
        for b in data["benchmarks"]
        if not (b["extra_info"]["group"] != "attention" and b["extra_info"].get("pos_encoding") == "none")
        or b["extra_info"].get("compile") != "eager"
    ]
    (run_copy / "benchmarks.json").write_text(json.dumps(data))
    result = analysis("report", run_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (run_copy / "REPORT.md").read_text()
    assert "No cell with an encoding has the same cell without one in this run" in text
