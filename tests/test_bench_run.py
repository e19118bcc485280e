"""The grid run end to end, as a user starts it: machine facts and not-run cells in the JSON, bad options."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = str(Path(__file__).parents[1] / "bench")


def run_pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", BENCH, "-p", "no:cacheprovider", "-q", *args], cwd=cwd,
                          capture_output=True, text=True)  # fmt: skip


def test_json_records_machine_and_every_cell_that_did_not_run(tmp_path):
    out = tmp_path / "out.json"
    result = run_pytest("--grid", "quick", "--set", "dtype=float32,float16", "--set", "device=cpu,cuda",
                        "-k", "calibration", f"--benchmark-json={out}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    facts = data["machine_info"]["attnbench"]
    for key in (
        "torch_version",
        "cuda_version",
        "cudnn_version",
        "gpu_name",
        "gpu_memory_bytes",
        "cpu_model",
        "cpu_flags",
        "cpu_count",
        "torch_threads",
        "git_commit",
        "grid_profile",
        "flop_formulas_added",
    ):
        assert key in facts
    assert facts["grid_profile"] == "quick" and facts["grid_overrides"] == ["dtype=float32,float16", "device=cpu,cuda"]
    ran = [b["extra_info"] for b in data["benchmarks"]]
    assert [(r["device"], r["dtype"]) for r in ran] == [("cpu", "float32")]
    assert ran[0]["flops_per_s"] > 0
    reasons = {o["id"]: o["reason"] for o in data["attnbench_not_run"]}
    assert reasons["cpu-float16"].startswith("unsupported: float16")
    assert reasons["cuda-float32"].startswith("no cuda") and reasons["cuda-float16"].startswith("no cuda")


def test_bad_options_stop_at_once_with_what_is_accepted(tmp_path):
    for args, message in ((["--grid", "nosuch"], "choose from quick, default, full, cuda"),
                          (["--device", "tpu"], "choose from cpu, cuda, all"),
                          (["--set", "heads=abc"], "'abc' is not a whole number"),
                          (["--mem-budget-gb", "-1"], "give a positive number of GiB")):  # fmt: skip
        result = run_pytest(*args, cwd=tmp_path)
        assert result.returncode == 4
        assert message in result.stderr and "Traceback" not in result.stderr
