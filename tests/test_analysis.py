"""analysis/ on a small fixture of real results (tests/fixtures, made by python -m bench --grid quick
and a tiny positional experiment): loading, traces, fits, the report command and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits import crossover_length, loglog_slope, scaling_exponents
from analysis.load import load_runs
from analysis.report import TRACE_TOLERANCE
from analysis.summaries import describe_exponent, traced_breakdown
from analysis.traces import categorize, find_traces, self_times

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "quick-cpu"


@pytest.fixture
def run_copy(tmp_path) -> Path:
    """A writable copy of the fixture run with the positional experiment beside it, as in results/."""
    shutil.copytree(RUN, tmp_path / "quick-cpu")
    shutil.copytree(FIXTURES / "positional", tmp_path / "positional")
    return tmp_path / "quick-cpu"


def test_load_gives_one_row_per_cell_with_units_in_names():
    cells, not_run, machines = load_runs([RUN / "benchmarks.json"])
    raw = json.loads((RUN / "benchmarks.json").read_text())
    assert len(cells) == len(raw["benchmarks"])
    for column in ("median_s", "iqr_s", "peak_mem_bytes", "flops_analytic", "tokens_per_s", "mfu", "machine", "run"):
        assert column in cells.columns
    assert not_run.empty and list(machines) == ["quick-cpu"]


def test_runs_from_different_machines_mix_safely(tmp_path):
    other = json.loads((RUN / "benchmarks.json").read_text())
    other["machine_info"]["attnbench"]["cpu_model"] = "Other CPU"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "benchmarks.json").write_text(json.dumps(other))
    cells, _, machines = load_runs([RUN / "benchmarks.json", tmp_path / "other" / "benchmarks.json"])
    assert cells["machine"].nunique() == 2 and set(machines) == {"quick-cpu", "other"}
    assert (cells.groupby("machine").size() == len(cells) // 2).all()


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
    changed = json.loads(json.dumps(raw))
    for bench in changed["benchmarks"]:
        bench["extra_info"]["new_field"] = 1
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "benchmarks.json").write_text(json.dumps(changed))
    with pytest.raises(AnalysisError, match="different schemas.*new_field"):
        load_runs([RUN / "benchmarks.json", tmp_path / "b" / "benchmarks.json"])
    (tmp_path / "empty_traces").mkdir()
    with pytest.raises(AnalysisError, match="no \\*.pt.trace.json traces inside"):
        find_traces(tmp_path / "empty_traces")


@pytest.mark.parametrize("case", ["missing_dir", "corrupt", "no_traces", "empty_grid"])
def test_report_command_fails_cleanly_on_bad_input(case, run_copy, tmp_path):
    target = run_copy
    if case == "missing_dir":
        target = tmp_path / "nowhere"
    elif case == "corrupt":
        (run_copy / "benchmarks.json").write_text('{"benchmarks": [')
    elif case == "no_traces":
        for trace in run_copy.rglob("*.pt.trace.json"):
            trace.unlink()
    else:
        raw = json.loads((run_copy / "benchmarks.json").read_text())
        (run_copy / "benchmarks.json").write_text(json.dumps({**raw, "benchmarks": []}))
    result = subprocess.run([sys.executable, "-m", "analysis", "report", str(target)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (run_copy / "REPORT.md").exists()


def test_report_command_on_real_results(run_copy):
    result = subprocess.run([sys.executable, "-m", "analysis", "report", str(run_copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = (run_copy / "REPORT.md").read_text()
    for heading in (
        "## Machine and grid",
        "## How attention scales",
        "## Where attention overtakes",
        "## Our encoder layer vs nn.TransformerEncoderLayer",
        "## Memory: measured peak",
        "## FLOPs: counted vs analytic",
        "## Noise",
        "## Traces vs the benchmark",
        "## Positional encodings",
    ):
        assert heading in report
    cells, _, _ = load_runs([run_copy / "benchmarks.json"])
    exps = scaling_exponents(cells[(cells["group"] == "attention")])
    naive = exps[(exps["impl"] == "naive") & (exps["pass"] == "train") & (exps["dtype"] == "float32")]
    assert f"time n^{naive['time_exponent'].iloc[0]:.2f} ± {naive['time_exponent_se'].iloc[0]:.2f}" in report
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


def test_table_command_mixes_runs_and_refuses_differing_schemas(run_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    command = [sys.executable, "-m", "analysis", "table", str(run_copy), str(other), "--out", str(tmp_path / "c.csv")]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table["run"]) == {"quick-cpu", "other"} and len(table) % 2 == 0
    raw = json.loads((other / "benchmarks.json").read_text())
    for bench in raw["benchmarks"]:
        bench["extra_info"].pop("mfu", None)
    (other / "benchmarks.json").write_text(json.dumps(raw))
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and "different schemas (fields mfu)" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_on_a_run_of_one_group(run_copy):
    raw = json.loads((run_copy / "benchmarks.json").read_text())
    raw["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"]["group"] == "train_step"]
    (run_copy / "benchmarks.json").write_text(json.dumps(raw))
    shutil.rmtree(run_copy / "traces")
    result = subprocess.run([sys.executable, "-m", "analysis", "report", str(run_copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = (run_copy / "REPORT.md").read_text()
    assert "No attention cells in this run" in report and "No traces in this run" in report
    assert "![mfu_vs_seq_len](figures/mfu_vs_seq_len.png)" in report and "time_vs_seq_len" not in report


def test_traces_load_in_torch_tb_profiler():
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    for trace in find_traces(RUN / "traces"):
        data = RunProfileData.parse(trace.parent.name, None, str(trace), str(trace.parent))
        profile = RunGenerator(trace.parent.name, None, data).generate_run_profile()
        assert profile.views and profile.operation_table_by_name


def test_trace_breakdown_agrees_with_benchmark_time():
    cells, _, _ = load_runs([RUN / "benchmarks.json"])
    breakdown = traced_breakdown(RUN / "traces", cells, d_ff=1024)
    per_cell = breakdown.groupby("trace_name").agg(ops=("self_s", "sum"), bench=("median_s", "first"))
    assert len(per_cell) == 6
    assert ((per_cell["ops"] / per_cell["bench"] - 1).abs() <= TRACE_TOLERANCE).all()
    shares = breakdown.groupby("trace_name")["share"].sum()
    np.testing.assert_allclose(shares, 1.0)


def test_self_time_subtracts_nested_ops():
    ev = [
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "pid": 1, "tid": 1, "ts": 1, "dur": 7},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 1, "ts": 12, "dur": 3},
    ]
    assert {e["name"]: t for e, t in self_times(ev)} == {"aten::linear": 3, "aten::addmm": 7, "aten::add": 3}


def test_op_categories():
    assert categorize("aten::bmm", None, 1024) == "attention_scores"
    assert categorize("aten::_scaled_dot_product_flash_attention_for_cpu", None, 1024) == "attention_scores"
    assert categorize("aten::addmm", [[1024], [128, 256], [256, 1024]], 1024) == "feed_forward_gemm"
    assert categorize("aten::addmm", [[768], [128, 256], [256, 768]], 1024) == "projection_gemm"
    assert categorize("aten::native_layer_norm", None, 1024) == "layernorm"
    assert categorize("aten::add_", None, 1024) == "elementwise"
    assert categorize("aten::_softmax", None, 1024) == "softmax"


def test_fits():
    n = np.array([256, 512, 1024, 2048])
    slope, se = loglog_slope(n, 3e-9 * n**2)
    assert slope == pytest.approx(2.0) and se == pytest.approx(0.0, abs=1e-9)
    assert crossover_length(n, n**2 / 1000.0, 1.0 * n) == pytest.approx(1000.0)
    assert crossover_length(n, 0.1 * n, 1.0 * n) is None
    assert "close to quadratic" in describe_exponent(1.9, 0.05)
    assert "close to linear" in describe_exponent(1.05, 0.02)


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
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
        ).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6
    assert isinstance(pd.read_csv(FIXTURES / "positional" / "runs.csv"), pd.DataFrame)
