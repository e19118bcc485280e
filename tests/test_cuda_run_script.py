"""scripts/cuda_run.sh on the CPU (--cpu-dry-run): its plumbing (bounded steps, the trap that packs, the
report where the grid was interrupted) is tested on every commit, not first on a lent GPU."""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from infra.machine import machine_slug

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

ROOT = Path(__file__).parents[1]


# Every step's limit, where a test does not set its own: far above what a step takes on a quiet 2-core machine
# (under a minute each), so a loaded machine (CI beside another job) slows the test and never fails it.
GENEROUS = {f"CUDA_RUN_{step}_S": "900" for step in ("CHECK", "GRID", "REPORT", "DOBENCH", "TESTS", "TUNE", "DDP")}


def dry_run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    environment = {**os.environ, **GENEROUS, "OUT": str(out), "CUDA_RUN_RESULTS": str(tmp_path / "results"), **env}
    result = subprocess.run(
        ["bash", "scripts/cuda_run.sh", "--cpu-dry-run", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return result, out


def packed(out: Path) -> list[str]:
    with tarfile.open(out / "cuda-run.tar.gz") as tar:
        return tar.getnames()


def test_the_dry_run_packs_the_runs_json_report_and_traces(tmp_path):
    result, out = dry_run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = f"results/{machine_slug('cpu')}"
    names = packed(out)
    for wanted in (f"{run}/benchmarks.json", f"{run}/REPORT.md", f"{run}-check/benchmarks.json", "kernel_table.json"):
        assert any(n.endswith(wanted) for n in names), (wanted, names)
    assert any(f"{run}/traces/" in n for n in names)
    steps = (out / "steps.txt").read_text()
    for step in ("check", "grid", "report", "tests", "autotune"):
        assert f"{step:<9} exit   0" in steps, steps
    assert "check: 3 cells, each observed after a capture" in steps
    result, out = dry_run(tmp_path, "--part", "2")
    assert result.returncode == 0 and "ddp       exit   0" in (out / "steps.txt").read_text()
    assert any(f"ddp-{machine_slug('cpu')}/benchmarks.json" in n for n in packed(out))


def test_an_interrupted_grid_leaves_its_partial_json_and_a_report_of_it(tmp_path):
    # stopped while a layer cell hangs: by then the attention cells' first pass is measured, however loaded the
    # machine (the limit is far above what they take), and the grid is not done: a stop mid-grid, by construction
    result, out = dry_run(
        tmp_path,
        CUDA_RUN_GRID_S="120",
        CUDA_RUN_GRID_ARGS="--set layer.impl=ours,hostile_attention:hangs_layer --cell-time-limit-s 0",
        PYTHONPATH=str(Path(__file__).parent / "fixtures" / "hostile"),
    )
    steps = (out / "steps.txt").read_text()
    assert "grid      exit 124" in steps, steps  # timeout's SIGINT
    run = f"results/{machine_slug('cpu')}"
    names = packed(out)
    # this run's partial JSON, named by the run (an older run's never stands in for it)
    assert any(re.search(rf"{run}/interrupted-cuda-run-[^/]+/benchmarks\.json$", n) for n in names), names
    assert any(n.endswith(f"{run}-interrupted/REPORT.md") for n in names), names
    assert not any(n.endswith(f"{run}/benchmarks.json") for n in names)


def test_bad_arguments_are_one_line():
    result = subprocess.run(["bash", "scripts/cuda_run.sh", "--part", "3"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == "error: --part '3' is not accepted; choose 1 or 2"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_the_gpu_run_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "scripts/cuda_run.sh"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no CUDA device here" in result.stderr and "--cpu-dry-run" in result.stderr
