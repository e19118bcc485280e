"""Timers, memory, observed kernel labels, FLOP counting and the numerical check (no timing assertions)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import bench.cell_runner
import model.attention
from bench.cell import FACTS_PASS
from bench.cell_runner import measure, measure_facts, run_cell
from bench.flops import count_flops
from bench.grid import Cell, load_grid
from bench.memory import cpu_peak_bytes
from bench.observe import attention_label, observe, recomputes_scores
from bench.timing import device_time, host_latency, rounds_for_budget
from bench.workloads import TOLERANCE, WORKLOADS

GRID = load_grid("quick")
SHAPE = GRID.shapes["small"]


def test_host_latency_warms_up_then_times_each_round_synchronised():
    log = []
    samples = host_latency(lambda: log.append("step"), lambda: log.append("sync"), rounds=3, warmup=2)
    assert len(samples) == 3 and log == ["sync", "step", "sync"] * 5


def test_on_cpu_the_device_time_is_the_host_latency():
    times = device_time(lambda: None, "cpu", rounds=4, warmup=1, host_samples=[1.0, 2.0, 3.0, 4.0])
    assert times.samples_s == [1.0, 2.0, 3.0, 4.0] and times.method == "cpu_clock"


def test_rounds_fit_the_budget():
    assert rounds_for_budget(0.01, 1.0, 3, 50) == 50
    assert rounds_for_budget(0.1, 1.0, 3, 50) == 10
    assert rounds_for_budget(2.0, 1.0, 3, 50) == 3


def test_cpu_peak_memory_is_exact():
    x = torch.randn(1000, 1000)

    def step():
        a = x @ x  # 4 MB
        b = a @ a  # 4 MB, while a is alive
        del a
        return b.sum()

    assert cpu_peak_bytes(step) == 8_000_000


def test_cpu_peak_memory_sees_the_free_of_a_block_from_before_the_step():
    holder = [torch.empty(2 * 2**20)]  # 8 MiB allocated before any profiling

    def step():  # what a training step does with x.grad: free the old block, allocate the same size
        holder[0] = None
        holder[0] = torch.empty(2 * 2**20)

    assert cpu_peak_bytes(step) == 0


def cell(group, impl, mode="train", dtype="float32", dropout=0.0, heads=4, n=64):
    return Cell(group, "cpu", dtype, "small", n, heads, impl, mode, dropout)


def test_labels_are_what_the_profiler_saw():
    assert attention_label(["aten::linear", "aten::_scaled_dot_product_flash_attention_for_cpu"]) == "flash"
    assert (
        attention_label(
            ["aten::_transformer_encoder_layer_fwd", "aten::_native_multi_head_attention", "aten::_masked_softmax"]
        )
        == "fused:_transformer_encoder_layer_fwd/explicit softmax"
    )
    assert attention_label(["aten::_native_multi_head_attention", "aten::_scaled_dot_product_efficient_attention"]) == (
        "fused:_native_multi_head_attention/efficient"
    )
    assert attention_label(["aten::matmul", "aten::_softmax"]) == "naive"
    assert attention_label(["aten::_scaled_dot_product_attention_math", "aten::_softmax"]) == "math"
    assert recomputes_scores("cudnn") and not recomputes_scores("naive") and not recomputes_scores("fused:x/flash")


@pytest.mark.parametrize(
    "impl,mode,heads,dropout,want",
    [
        ("torch_mha", "forward", 4, 0.0, "fused:_native_multi_head_attention"),
        ("torch_mha", "forward", 1, 0.0, "flash"),  # odd head count: nn.MultiheadAttention skips its fast path
        ("sdpa", "train", 4, 0.0, "flash"),
        ("naive", "forward", 4, 0.0, "naive"),
    ],
)
def test_observed_kernel_labels(impl, mode, heads, dropout, want):
    workload = WORKLOADS["attention"](cell("attention", impl, mode, heads=heads), SHAPE, "cpu", torch.float32)
    assert observe(workload.step, "cpu").attention_kernel.startswith(want)


def test_dropout_pushes_cpu_sdpa_onto_the_math_backend():
    workload = WORKLOADS["layer"](cell("layer", "ours", "train", dropout=0.1), SHAPE, "cpu", torch.float32)
    seen = observe(workload.step, "cpu")
    assert seen.attention_kernel == "math" and "_scaled_dot_product_attention_math" in seen.attention_ops


@pytest.mark.parametrize(
    "group,impl,mode",
    [
        ("attention", "sdpa", "train"),
        ("attention", "torch_mha", "forward"),
        ("layer", "ours", "train"),
        ("layer", "torch", "eval"),
        ("layer", "torch", "train"),
        ("train_step", "sdpa", "train"),
    ],
)
def test_counted_flops_match_analytic_with_added_formulas(group, impl, mode):
    workload = WORKLOADS[group](cell(group, impl, mode), SHAPE, "cpu", torch.float32)
    counted, _ = count_flops(workload.step)
    assert counted == pytest.approx(workload.flops(observe(workload.step, "cpu").attention_kernel), rel=0.01)


def test_added_formulas_are_reported():
    workload = WORKLOADS["layer"](cell("layer", "torch", "eval"), SHAPE, "cpu", torch.float32)
    assert count_flops(workload.step)[1] == ["aten._transformer_encoder_layer_fwd"]


@pytest.mark.parametrize(
    "group,impl",
    [("attention", "sdpa"), ("attention", "torch_mha"), ("layer", "ours"), ("layer", "torch"), ("train_step", "sdpa")],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_numerical_check_passes_for_right_kernels(group, impl, dtype):
    workload = WORKLOADS[group](cell(group, impl, dtype=dtype), SHAPE, "cpu", getattr(torch, dtype))
    assert workload.check() <= TOLERANCE[dtype]


@pytest.mark.parametrize("pos", ["sinusoidal", "learned", "rope", "alibi", "alibi_directional"])
def test_positional_cells_check_against_a_reference_with_the_same_encoding(pos):
    for impl in ("ours", "torch") if pos != "rope" else ("ours",):
        c = Cell("layer", "cpu", "float32", "small", 64, 4, impl, "train", 0.0, pos)
        assert WORKLOADS["layer"](c, SHAPE, "cpu", torch.float32).check() <= TOLERANCE["float32"]


def test_numerical_check_catches_a_wrong_kernel(monkeypatch):
    def unscaled_attention(q, k, v, attn_mask=None, dropout_p=0.0):  # forgets the 1/sqrt(d)
        return (q @ k.transpose(-2, -1) + (0 if attn_mask is None else attn_mask)).softmax(-1) @ v

    monkeypatch.setattr(model.attention.F, "scaled_dot_product_attention", unscaled_attention)
    workload = WORKLOADS["layer"](cell("layer", "ours"), SHAPE, "cpu", torch.float32)
    assert workload.check() > 100 * TOLERANCE["float32"]


def test_out_of_memory_marks_the_cell_and_the_grid_goes_on(monkeypatch):
    def exhausted(*args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes")

    monkeypatch.setitem(WORKLOADS, "layer", exhausted)
    first_pass = {}
    with pytest.raises(pytest.skip.Exception, match="oom: DefaultCPUAllocator"):
        run_cell(SimpleNamespace(), cell("layer", "ours"), GRID, first_pass=first_pass)
    with pytest.raises(pytest.skip.Exception, match="oom: DefaultCPUAllocator"):  # later passes end the same way
        run_cell(SimpleNamespace(), cell("layer", "ours"), GRID, pass_index=1, first_pass=first_pass)


def test_wrong_kernel_fails_the_cell_before_any_timing(monkeypatch):
    monkeypatch.setattr(model.attention.F, "scaled_dot_product_attention", lambda q, k, v, **kw: v)
    monkeypatch.setattr(bench.cell_runner, "host_latency", lambda *a, **k: pytest.fail("timed a wrong kernel"))
    with pytest.raises(pytest.fail.Exception, match="numerical check failed at cpu-float32-small-n64-h4-ours-train-p0"):
        run_cell(SimpleNamespace(), cell("layer", "ours"), GRID)


def test_a_pass_records_both_times_and_the_facts_pass_its_facts():
    facts = measure_facts(cell("attention", "sdpa"), GRID, None)
    assert facts.attention_kernel == "flash" and facts.peak_mem_bytes > 0 and facts.check_passed
    assert facts.tokens_per_step == GRID.shapes["small"].batch * 64  # every token of the batch is real
    timing = measure(cell("attention", "sdpa"), GRID, 0)
    assert len(timing.host_samples_s) == timing.rounds == len(timing.device_samples_s)
    assert timing.device_time_method == "cpu_clock" and timing.host_samples_s == timing.device_samples_s


def test_the_facts_pass_times_nothing_and_every_timed_pass_reuses_its_facts(monkeypatch):
    """Pass FACTS_PASS checks, counts, observes and measures memory, and times nothing; the timed passes do none of
    those (so they are alike) and each records the facts pass's facts."""
    calls = {"observe": 0, "count_flops": 0, "host_latency": 0}
    for name in calls:
        real = getattr(bench.cell_runner, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(bench.cell_runner, name, counted)
    first_pass, sdpa = {}, cell("attention", "sdpa")
    untimed = SimpleNamespace(_mode=None)
    run_cell(untimed, sdpa, GRID, pass_index=FACTS_PASS, first_pass=first_pass)
    assert calls == {"observe": 1, "count_flops": 1, "host_latency": 0} and untimed._mode  # marked used, no stats
    facts = first_pass[sdpa.id]
    for index in (0, 1):
        timed = SimpleNamespace(disabled=True)
        run_cell(timed, sdpa, GRID, pass_index=index, first_pass=first_pass)
        assert first_pass[sdpa.id] is facts
    assert calls == {"observe": 1, "count_flops": 1, "host_latency": 2}


def test_a_compile_failure_fails_its_cell_with_the_reason(monkeypatch):
    def broken(module, mode):
        if mode != "inductor":
            return module

        class Broken(nn.Module):
            def forward(self, x):
                raise RuntimeError("backend compiler failed: inductor crashed")

        return Broken()

    monkeypatch.setattr("bench.workloads.compiled", broken)
    first_pass = {}
    inductor = Cell("layer", "cpu", "float32", "small", 64, 4, "ours", "train", compile="inductor")
    with pytest.raises(pytest.fail.Exception, match="compile failed .inductor. at .*inductor crashed"):
        run_cell(SimpleNamespace(), inductor, GRID, first_pass=first_pass)
    assert first_pass[inductor.id].outcome == "failed"
