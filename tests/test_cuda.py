"""What only a GPU can show: device timing by graph replay and events, the allocator's exact peak, and
the kernels observed. Skipped without CUDA (scripts/cuda_run.sh runs them on a GPU)."""

import pytest
import torch
from torch import nn

from bench.grid import Cell, load_grid
from bench.memory import cuda_peak_bytes
from bench.observe import observe
from bench.timing import capture_cuda_graph, device_time
from bench.workloads import WORKLOADS
from model.layers import EncoderLayer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda: these check the GPU path")
GRID = load_grid("cuda")


def workload(group, impl, mode, dtype="bfloat16", n=512):
    cell = Cell(group, "cuda", dtype, "small", n, 4, impl, mode)
    return WORKLOADS[group](cell, GRID.shapes["small"], "cuda", getattr(torch, dtype))


def test_a_training_step_replays_as_a_cuda_graph():
    w = workload("layer", "ours", "train")
    w.step()
    graph = capture_cuda_graph(w.step, torch.device("cuda"))
    graph.replay()
    torch.cuda.synchronize()
    times = device_time(w.step, "cuda", rounds=5, warmup=1, host_samples=[1.0] * 5)
    assert times.method == "cuda_graph" and len(times.samples_s) == 5 and min(times.samples_s) > 0


def test_a_step_that_cannot_be_captured_is_timed_by_events_with_the_reason():
    x = torch.randn(256, 256, device="cuda")
    times = device_time(lambda: (x @ x).sum().item(), "cuda", rounds=3, warmup=1, host_samples=[1.0] * 3)
    assert times.method == "cuda_events" and "not capturable" in times.note


def test_cuda_peak_memory_is_exact():
    def step():
        a = torch.empty(2 * 2**20, device="cuda")  # 8 MiB
        b = torch.empty(2 * 2**20, device="cuda")
        del a, b

    assert cuda_peak_bytes(step, torch.device("cuda")) == 16 * 2**20


def test_the_kernels_that_ran_are_observed():
    seen = observe(workload("attention", "sdpa", "train").step, "cuda")
    assert seen.attention_kernel in ("cudnn", "flash", "efficient") and seen.device_kernels
    fused = observe(workload("attention", "torch_mha", "forward").step, "cuda").attention_kernel
    assert fused.startswith("fused:")


def test_a_replayed_training_step_computes_the_eager_steps_gradients():
    torch.manual_seed(0)
    layer = EncoderLayer.from_torch(
        nn.TransformerEncoderLayer(256, 4, 1024, 0.0, batch_first=True, norm_first=True), "sdpa"
    ).cuda()
    x = torch.randn(2, 512, 256, device="cuda", requires_grad=True)
    grad = torch.randn_like(x)

    def step():
        x.grad = None
        layer(x).backward(grad)

    step()
    eager = [p.grad.clone() for p in layer.parameters()] + [x.grad.clone()]
    graph = capture_cuda_graph(step, torch.device("cuda"))
    for p in layer.parameters():
        p.grad.zero_()  # the graph accumulates into these buffers, as the eager step does
    graph.replay()
    torch.cuda.synchronize()
    replayed = [p.grad for p in layer.parameters()] + [x.grad]
    for got, want in zip(replayed, eager):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_kernels_are_still_observed_after_a_capture():
    """CUPTI has lost kernel events after graph captures on some CUDA versions: every cell is observed after
    the previous one was captured, so this order must still see kernels."""
    first = observe(workload("attention", "sdpa", "train").step, "cuda")
    assert first.device_kernel_count > 0
    capture_cuda_graph(workload("attention", "sdpa", "train").step, torch.device("cuda")).replay()
    torch.cuda.synchronize()
    after = observe(workload("attention", "sdpa", "train").step, "cuda")
    assert after.device_kernel_count > 0 and after.device_kernels


def test_a_full_training_step_with_its_optimizer_replays_as_a_graph():
    w = workload("train_step", "sdpa", "train")
    times = device_time(w.step, "cuda", rounds=3, warmup=1, host_samples=[1.0] * 3)
    assert times.method == "cuda_graph", times.note  # AdamW is capturable on CUDA
