"""The CUDA paths' defects that can be shown without a GPU: what the capture's try covers, the optimizer a
graph can capture, a profiler gone blind, the forced backend that really ran, the NCCL launcher's
defaults, the datasheet's parts, and a report where torch-tb-profiler is missing."""

import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import bench.cell_runner
import bench.timing
from analysis.datasheet import datasheet_flops, model_of
from analysis.report import write_report
from bench.autotune import runnable_steps
from bench.cell_runner import measure_facts
from bench.distributed import default_world_sizes
from bench.grid import Cell, load_grid
from bench.implementations import ImplementationError
from bench.observe import Observation, observe
from bench.timing import device_time
from bench.workloads import make_optimizer

FIXTURE = Path(__file__).parent / "fixtures" / "quick-cpu"


@pytest.fixture
def fake_cuda(monkeypatch):
    """device_time's CUDA branch with the device calls replaced: what it catches is what is tested."""
    monkeypatch.setattr(bench.timing, "l2_flush_buffer", lambda device: "flush")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    calls = []

    def event_times(fn, dev, rounds, warmup, flush):
        calls.append((fn, flush))
        return [1e-3] * rounds

    monkeypatch.setattr(bench.timing, "cuda_event_times", event_times)
    return calls


def test_a_capture_failure_falls_back_to_events_with_its_reason_even_without_a_message(monkeypatch, fake_cuda):
    def refuse(step, device):
        raise RuntimeError("")

    monkeypatch.setattr(bench.timing, "capture_cuda_graph", refuse)
    times = device_time(lambda: None, "cuda", rounds=3, warmup=1, host_samples=[1.0] * 3)
    assert times.method == "cuda_events" and times.note == "not capturable as a CUDA graph: RuntimeError"
    assert fake_cuda[0][1] == "flush"  # the buffer allocated once, before the capture, is the one flushed


def test_running_out_of_memory_is_never_called_not_capturable(monkeypatch, fake_cuda):
    def exhausted(step, device):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(bench.timing, "capture_cuda_graph", exhausted)
    with pytest.raises(torch.OutOfMemoryError):
        device_time(lambda: None, "cuda", rounds=3, warmup=1, host_samples=[1.0] * 3)


def test_an_error_while_timing_the_replays_is_the_cells_not_a_fallback(monkeypatch, fake_cuda):
    class Graph:
        def replay(self):
            pass

    monkeypatch.setattr(bench.timing, "capture_cuda_graph", lambda step, device: Graph())

    def broken(fn, dev, rounds, warmup, flush):
        raise RuntimeError("an error of the replay's own")

    monkeypatch.setattr(bench.timing, "cuda_event_times", broken)
    with pytest.raises(RuntimeError, match="replay's own"):
        device_time(lambda: None, "cuda", rounds=3, warmup=1, host_samples=[1.0] * 3)


def test_the_training_steps_optimizer_is_capturable_on_cuda_only():
    layer = nn.Linear(4, 4)
    assert make_optimizer(layer, "cuda").defaults["capturable"] is True
    assert make_optimizer(layer, "cpu").defaults["capturable"] is False


def test_a_profiler_that_saw_no_gpu_kernel_fails_the_cell(monkeypatch):
    blind = Observation("flash", ["scaled_dot_product_attention"], [], None, device_kernel_count=0)
    monkeypatch.setattr(bench.cell_runner, "observe", lambda step, device: blind)
    cell = Cell("attention", "cpu", "float32", "small", 64, 4, "sdpa", "forward")
    with pytest.raises(ImplementationError, match="saw no GPU kernel"):
        measure_facts(cell, load_grid("quick"), None)
    assert observe(lambda: torch.ones(2) @ torch.ones(2), "cpu").device_kernel_count is None  # not counted on CPU


def test_autotune_keeps_only_kernels_that_ran_as_named():
    # with dropout the CPU's flash kernel rejects the inputs and SDPA runs math: that is no "flash" timing
    assert set(runnable_steps("cpu", "float32", 64, True, 0.1)) == {"naive", "blocked", "math"}
    assert set(runnable_steps("cpu", "float32", 64, False, 0.0)) == {"naive", "blocked", "flash", "math"}


def test_the_nccl_launcher_defaults_to_the_gpus_present():
    assert default_world_sizes("cuda", 1) == [1]
    assert default_world_sizes("cuda", 4) == [1, 4]
    assert default_world_sizes("cpu", 0) == [1, 2]


@pytest.mark.parametrize(
    "name,part",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
    ],
)
def test_datasheet_parts_are_told_apart(name, part):
    assert model_of(name) == part


def test_an_nvl_board_is_not_given_the_sxm_peak():
    assert datasheet_flops("NVIDIA H200 NVL", "bfloat16", False) < datasheet_flops("NVIDIA H200", "bfloat16", False)


@pytest.mark.slow
def test_the_report_without_torch_tb_profiler_says_so_and_writes_the_rest(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    for name in [m for m in sys.modules if m.startswith("torch_tb_profiler")] + ["torch_tb_profiler"]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as on an image without it
    report = write_report(run).read_text()
    assert "traces not broken down: torch-tb-profiler is not installed" in report
    assert "## Which kernels ran" in report and "## Memory: measured peak vs the analytic model" in report
    assert capsys.readouterr().err.count("torch-tb-profiler is not installed") == 1
