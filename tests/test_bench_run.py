"""The grid run end to end, as a user starts it: machine facts and not-run cells in the JSON, user
implementations named on the command line, bad options."""

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.skips import fast_fp16
from infra.machine import cpu_model_and_flags

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

ROOT = Path(__file__).parents[1]
BENCH = str(ROOT / "bench")


def run_pytest(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", BENCH, "-p", "no:cacheprovider", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )


def test_json_records_machine_and_every_cell_that_did_not_run(tmp_path):
    out = tmp_path / "out.json"
    result = run_pytest(
        "--profile",
        "quick",
        "--set",
        "dtype=float32,float16",
        "--set",
        "device=cpu,cuda",
        "-k",
        "attention and n128 and sdpa and forward",  # one cheap cell per device and dtype
        f"--benchmark-json={out}",
        cwd=tmp_path,
    )
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
        "grid",
        "passes",
        "shard",
        "matmul_peak",
        "numeric_settings",
        "flop_formulas_added",
        "memory_bytes",
    ):
        assert key in facts
    assert {"cuda_matmul_allow_tf32", "cudnn_allow_tf32", "float32_matmul_precision"} <= set(facts["numeric_settings"])
    assert facts["grid_profile"] == "quick" and facts["grid_overrides"] == ["dtype=float32,float16", "device=cpu,cuda"]
    ran = {(b["extra_info"]["device"], b["extra_info"]["dtype"]) for b in data["benchmarks"]}
    # float16 runs on a CPU with fast fp16 kernels (AVX512-FP16, AMX) and is skipped with its reason elsewhere
    fp16_here = fast_fp16(cpu_model_and_flags()[1])
    assert ran == ({("cpu", "float32"), ("cpu", "float16")} if fp16_here else {("cpu", "float32")})
    reasons = {o["id"].split("-small")[0]: o["reason"] for o in data["attnbench_not_run"]}  # by device-dtype
    assert ("cpu-float16" in reasons) != fp16_here
    if not fp16_here:
        assert reasons["cpu-float16"].startswith("unsupported: float16")
    assert reasons["cuda-float32"].startswith("no cuda") and reasons["cuda-float16"].startswith("no cuda")
    bench = data["benchmarks"][0]
    assert bench["params"]["device"] == "cpu" and "cell" not in bench["params"]  # plain, serialisable parameters
    assert bench["stats"]["median"] == statistics.median(bench["extra_info"]["device_samples_s"])  # device time
    assert {(p["device"], p["dtype"]) for p in facts["matmul_peak"]} == ran  # the peak of each that ran, once


def test_bad_options_stop_at_once_with_what_is_accepted(tmp_path):
    for args, message in (
        (["--profile", "nosuch"], "choose from quick, default, full, cuda"),
        (["--device", "tpu"], "choose from cpu, cuda, all"),
        (["--set", "heads=abc"], "'abc' is not a whole number"),
        (["--passes", "0"], "give a whole number of passes"),
        (["--shard", "3/2"], "--shard '3/2' is not accepted; write K/N with 1 <= K <= N"),
        (["--mem-budget-gb", "-1"], "give a positive number of GiB"),
    ):
        result = run_pytest(*args, cwd=tmp_path)
        assert result.returncode == 4
        assert message in result.stderr and "Traceback" not in result.stderr


WRONG = textwrap.dedent("""
    from model.attention import MultiHeadAttention

    class ReturnsItsInput(MultiHeadAttention):
        def forward(self, x, key_padding_mask=None, positional=None):
            return x

    class DropsAColumn(MultiHeadAttention):
        def forward(self, x, key_padding_mask=None, positional=None):
            return super().forward(x)[..., :-1]

    def make(d_model, n_heads, dropout):
        return ReturnsItsInput(d_model, n_heads, dropout)

    def narrow(d_model, n_heads, dropout):
        return DropsAColumn(d_model, n_heads, dropout)
""")


def test_user_implementations_run_beside_the_built_ins_and_wrong_ones_are_never_timed(tmp_path):
    (tmp_path / "wrongattn.py").write_text(WRONG)
    out = tmp_path / "out.json"
    impls = "sdpa,examples.chunked_attention:make,wrongattn:make,wrongattn:narrow,nosuchmodule:make,wrongattn:nope"
    result = run_pytest(
        "--profile",
        "quick",
        "--set",
        f"attention.impl={impls}",
        "--set",
        "seq_len=64",
        "-k",
        "attention",
        f"--benchmark-json={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 1  # some cells failed; the grid went on
    data = json.loads(out.read_text())
    timed = {b["extra_info"]["impl"] for b in data["benchmarks"]}
    assert timed == {"sdpa", "examples.chunked_attention:make"}
    reasons = {(o["params"]["impl"], o["params"]["mode"]): o["reason"] for o in data["attnbench_not_run"]}
    assert "numerical check failed" in reasons[("wrongattn:make", "forward")]
    assert "wrongattn:make is off from the float32 reference" in reasons[("wrongattn:make", "train")]
    assert "wrongattn:narrow returned shape (2, 64, 255)" in reasons[("wrongattn:narrow", "forward")]
    assert "nosuchmodule:make: cannot import module 'nosuchmodule'" in reasons[("nosuchmodule:make", "train")]
    assert "wrongattn:nope: module 'wrongattn' has no attribute 'nope'" in reasons[("wrongattn:nope", "train")]
    assert all("\n" not in reason for reason in reasons.values())
    chunked = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["impl"].startswith("examples")]
    for extra in chunked:  # everything a built-in gets: check, counted and analytic FLOPs, memory, kernel label
        assert extra["check_passed"] and extra["flops_counted"] == extra["flops_analytic"]
        assert extra["peak_mem_bytes"] > 0 and extra["attention_kernel"] == "naive"
