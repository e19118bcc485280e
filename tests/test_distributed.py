"""The data-parallel benchmark on a 2-core CPU with gloo, launched by torchrun as a user would: gradients
equal a single process's, one JSON for the run, a report with scaling and communication, and faults
that end the run with their reason."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.ddp import scaling_table

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

ROOT = Path(__file__).parents[1]
SMALL = ["--seq-len", "64", "--rounds", "3", "--global-batch", "2", "--batch-per-rank", "1", "--no-report"]


def launch(tmp_path: Path, *args: str, fault: str | None = None, timeout: float = 300):
    env = {**os.environ, **({"ATTNBENCH_DDP_FAULT": fault} if fault else {})}
    command = [sys.executable, "-m", "bench.distributed", "--results", str(tmp_path), "--name", "run", *SMALL, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def test_ddp_gradients_equal_one_process_and_the_run_is_one_report(tmp_path):
    result = launch(tmp_path, "--nproc-per-node", "1,2", "--passes", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "run" / "benchmarks.json").read_text())
    cells = [b["extra_info"] for b in data["benchmarks"]]
    assert sorted((c["world"], c["scaling"]) for c in cells) == [(1, "strong"), (1, "weak"), (2, "strong"), (2, "weak")]
    assert all(c["check_relative_error"] <= 1e-4 for c in cells)
    two = next(c for c in cells if c["world"] == 2 and c["scaling"] == "strong")
    assert len(two["rank_samples_s"]) == 2 and two["global_batch"] == 2 and two["batch"] == 1
    assert two["allreduce_bytes_analytic"] == two["grad_bytes"]  # 2 (W-1)/W = 1 at W = 2
    assert len(list((tmp_path / "run" / "traces").glob(f"ddp.{two['id']}-r0/rank*.pt.trace.json.gz"))) == 2
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "run")], capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "run" / "REPORT.md").read_text()
    assert "strong-scaling efficiency T1/(W·T_W)" in text and "weak-scaling throughput kept" in text
    assert "% of the step" in text and "MB all-reduced" in text
    compare = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "compare",
            str(tmp_path / "run"),
            str(tmp_path / "run"),
            "--fail-on",
            "memory:1%,flops:0%",  # a time gate between unpaired runs is refused without a noise floor
        ],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0, compare.stderr  # compare reads it as it reads any run
    assert "Cells compared: 4" in compare.stdout


def test_fsdp2_runs_and_matches_one_process(tmp_path):
    result = launch(tmp_path, "--nproc-per-node", "2", "--passes", "1", "--strategy", "fsdp", "--scaling", "weak")
    assert result.returncode == 0, result.stdout + result.stderr
    cell = json.loads((tmp_path / "run" / "benchmarks.json").read_text())["benchmarks"][0]["extra_info"]
    assert cell["impl"] == "fsdp" and cell["check_relative_error"] <= 1e-4


def test_a_rank_that_raises_ends_the_run_with_its_reason(tmp_path):
    result = launch(tmp_path, "--nproc-per-node", "2", "--passes", "1", "--scaling", "weak", fault="raise:1")
    assert result.returncode == 1
    assert "error: world size 2: rank 1 failed: RuntimeError: injected fault on rank 1" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_rank_that_hangs_is_stopped_within_the_timeout(tmp_path):
    result = launch(
        tmp_path,
        "--nproc-per-node",
        "2",
        "--passes",
        "1",
        "--scaling",
        "weak",
        "--timeout-s",
        "15",
        fault="hang:1",
        timeout=90,
    )
    assert result.returncode == 1 and "no result within 15 s (a rank hung)" in result.stderr
    left = subprocess.run(["pgrep", "-f", "bench.ddp_worker"], capture_output=True, text=True).stdout.split()
    assert not left and not (tmp_path / "run").exists()


def test_wrong_gradients_fail_the_launch(tmp_path):
    result = launch(tmp_path, "--nproc-per-node", "2", "--passes", "1", "--scaling", "weak", fault="skew:1")
    assert result.returncode == 1 and "ddp gradients differ from one process's on the whole batch" in result.stderr


def test_bad_options_are_refused_before_launching(tmp_path):
    for args, message in (
        (["--nproc-per-node", "0"], "is not a list of world sizes"),
        (["--scaling", "diagonal"], "'diagonal' is not accepted; choose from strong, weak"),
        (["--nproc-per-node", "3", "--global-batch", "4"], "does not split evenly over 3 ranks"),
    ):
        result = launch(tmp_path, *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_scaling_table_efficiency_and_its_interval():
    def passes(ms):  # three passes whose medians differ by a few percent
        return [[ms * 1e-3 * drift * f for f in (0.99, 1.0, 1.01)] for drift in (0.97, 1.0, 1.03)]

    cells = pd.DataFrame(
        [
            {
                "id": "w1",
                "impl": "ddp",
                "scaling": "strong",
                "seq_len": 64,
                "world": 1,
                "median_s": 0.1,
                "device_passes_s": passes(100),
                "allreduce_bytes_analytic": 0,
            },
            {
                "id": "w2",
                "impl": "ddp",
                "scaling": "strong",
                "seq_len": 64,
                "world": 2,
                "median_s": 0.0625,
                "device_passes_s": passes(62.5),
                "allreduce_bytes_analytic": 8e6,
            },
        ]
    )
    comm = pd.DataFrame(
        {"id": ["w2"] * 3, "repeat": [0, 1, 2], "communication_s": [0.01, 0.012, 0.011], "share": [0.15, 0.2, 0.17]}
    )
    row = scaling_table(cells, comm).set_index("world").loc[2]
    assert row["efficiency"] == pytest.approx(0.8)  # 100 / (2 * 62.5)
    assert row["efficiency_low"] < 0.8 < row["efficiency_high"]
    assert row["comm_share_low"] < 0.1733 < row["comm_share_high"]
    assert row["bandwidth_gb_s"] == pytest.approx(8e6 / 0.011 / 1e9)
