"""Timer, memory and FLOP measurement, and the numerical check (no timing assertions)."""

from types import SimpleNamespace

import pytest
import torch

import model.attention
from bench.cell_runner import run_cell
from bench.flops import count_flops
from bench.grid import Cell, load_grid
from bench.memory import cpu_peak_bytes
from bench.timing import rounds_for_budget, synchronized
from bench.workloads import TOLERANCE, WORKLOADS
from model import cost

SHAPE = load_grid("quick").shape


def test_synchronized_call_syncs_after_every_call():
    log = []
    call = synchronized(lambda: log.append("launch"), lambda: log.append("sync"))
    call()
    call()
    assert log == ["launch", "sync", "launch", "sync"]


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


def cell(group, impl, pass_="train", dtype="float32", dropout=0.0):
    return Cell(group, "cpu", dtype, 64, 4, impl, pass_, dropout)


@pytest.mark.parametrize("group,impl,pass_", [("attention", "sdpa", "train"), ("attention", "torch_mha", "forward"),
                                              ("layer", "ours", "train"), ("layer", "torch", "eval"),
                                              ("layer", "torch", "train"), ("train_step", "sdpa", "")])  # fmt: skip
def test_counted_flops_match_analytic_with_added_formulas(group, impl, pass_):
    workload = WORKLOADS[group](cell(group, impl, pass_), SHAPE, "cpu", torch.float32)
    counted, _ = count_flops(workload.step)
    assert counted == pytest.approx(workload.flops(workload.backend()), rel=0.01)


def test_added_formulas_are_reported():
    workload = WORKLOADS["layer"](cell("layer", "torch", "eval"), SHAPE, "cpu", torch.float32)
    assert count_flops(workload.step)[1] == ["aten._transformer_encoder_layer_fwd"]


@pytest.mark.parametrize("group,impl", [("attention", "sdpa"), ("attention", "torch_mha"), ("layer", "ours"),
                                        ("layer", "torch"), ("train_step", "sdpa")])  # fmt: skip
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_numerical_check_passes_for_right_kernels(group, impl, dtype):
    workload = WORKLOADS[group](cell(group, impl, dtype=dtype), SHAPE, "cpu", getattr(torch, dtype))
    assert workload.check() <= TOLERANCE[dtype]


def test_numerical_check_catches_a_wrong_kernel(monkeypatch):
    def unscaled_attention(q, k, v, attn_mask=None, dropout_p=0.0):  # forgets the 1/sqrt(d)
        return (q @ k.transpose(-2, -1) + (0 if attn_mask is None else attn_mask)).softmax(-1) @ v

    monkeypatch.setattr(model.attention.F, "scaled_dot_product_attention", unscaled_attention)
    workload = WORKLOADS["layer"](cell("layer", "ours"), SHAPE, "cpu", torch.float32)
    assert workload.check() > 100 * TOLERANCE["float32"]


def test_predicted_memory_uses_the_cost_model():
    train = WORKLOADS["layer"](cell("layer", "ours_naive"), SHAPE, "cpu", torch.float32)
    assert train.predicted_bytes == cost.layer_training_peak_bytes(2, 64, 256, 4, 1024, 4, False, True)


def test_out_of_memory_marks_the_cell_and_the_grid_goes_on(monkeypatch):
    def exhausted(*args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes")

    monkeypatch.setitem(WORKLOADS, "layer", exhausted)
    with pytest.raises(pytest.skip.Exception, match="oom: DefaultCPUAllocator"):
        run_cell(SimpleNamespace(), cell("layer", "ours"), load_grid("quick"))


def test_wrong_kernel_fails_the_cell_before_timing(monkeypatch):
    monkeypatch.setattr(model.attention.F, "scaled_dot_product_attention", lambda q, k, v, **kw: v)
    timed = SimpleNamespace(pedantic=lambda *a, **k: pytest.fail("timed a wrong kernel"))
    with pytest.raises(pytest.fail.Exception, match="numerical check failed at cpu-float32-n64-h4-ours-train-p0"):
        run_cell(timed, cell("layer", "ours"), load_grid("quick"))
