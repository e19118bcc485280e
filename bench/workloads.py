"""What each benchmark cell runs: the step to time, its reference check, and its analytic costs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.calibration import calibration_size
from bench.grid import Cell, Shape
from model import Encoder, EncoderConfig, EncoderLayer, cost
from model.attention import MultiHeadAttention, sdpa_backend

# Relative error (Frobenius) allowed against the float32 reference, by dtype: a few roundings' worth
# (float32 flash vs math differ by ~1e-6; bf16 has 8 significant bits, fp16 11), far below the
# O(1) error of a wrong kernel.
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}


@dataclass
class Workload:
    step: Callable[[], object]
    check: Callable[[], float]  # relative error against the float32 reference
    flops: Callable[[str], int]  # analytic matmul FLOPs of one step, given the attention backend that ran
    predicted_bytes: int  # analytic peak memory of one step
    tokens: int
    backend: Callable[[], str]  # which attention kernel ran, read after a step


class CheckFailed(AssertionError):
    pass


def recomputes_scores(backend: str) -> bool:
    """Flash, memory-efficient and cuDNN kernels keep no scores and recompute QK^T in backward."""
    return any(name in backend for name in ("flash", "efficient", "cudnn"))


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)).item()


def materialises_scores(cell: Cell) -> bool:
    """Whether this cell's attention builds the (b, h, n, n) matrix (see DESIGN.md's measured facts)."""
    if cell.impl in ("naive", "ours_naive"):
        return True
    if cell.impl in ("torch", "torch_mha") and cell.pass_ in ("eval", "forward") and cell.device == "cpu":
        return True  # the fused eval fast paths build the full score matrix on CPU
    return cell.dropout > 0 and cell.device == "cpu"  # CPU flash has no dropout: SDPA falls back to math


def predicted_peak_bytes(cell: Cell, shape: Shape) -> int:
    b, n, d, h, p = shape.batch, cell.seq_len, shape.d_model, cell.heads, cost.dtype_bytes(cell.dtype)
    f = shape.d_ff if cell.group != "attention" else 0  # attention alone: the layer model without feed-forward
    scores = materialises_scores(cell)
    if cell.group == "calibration":
        return 3 * calibration_size(cell.device) ** 2 * p
    if cell.group == "train_step":
        per_layer = cost.layer_activation_bytes(b, n, d, h, f, p, cell.dropout > 0, scores)
        params = shape.model_layers * cost.layer_parameter_count(d, f) + 2 * shape.model_vocab * d
        return shape.model_layers * per_layer + params * p + 3 * b * n * shape.model_vocab * 4
    if cell.pass_ in ("train",):
        return cost.layer_training_peak_bytes(b, n, d, h, f, p, cell.dropout > 0, scores)
    return cost.layer_inference_peak_bytes(b, n, d, h, f, p, scores)


def _set_dropout(module: nn.Module, p: float) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        if isinstance(m, (MultiHeadAttention, nn.MultiheadAttention)):
            m.dropout = p
    return module


def _forward_backward(module: Callable, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        module(x).backward(grad)

    return step


def _inference(module: Callable, x: torch.Tensor) -> Callable[[], object]:
    def step() -> object:
        with torch.no_grad():
            return module(x)

    return step


def _checker(
    impl: nn.Module, reference: nn.Module, call: Callable, x: torch.Tensor, train: bool
) -> Callable[[], float]:
    """Relative error of impl vs a float32 reference on the same input, dropout off; with train, the
    input gradient too (the larger of the two errors)."""

    def check() -> float:
        mine = _set_dropout(copy.deepcopy(impl), 0.0).train(train)
        ref = _set_dropout(copy.deepcopy(reference), 0.0).float().train(train)
        xs = [x.detach().clone().requires_grad_(train), x.detach().float().clone().requires_grad_(train)]
        with torch.set_grad_enabled(train):
            outs = [call(mine, xs[0]), call(ref, xs[1])]
        errors = [relative_error(outs[0], outs[1])]
        if train:
            g = torch.randn(outs[1].shape, generator=torch.Generator().manual_seed(0)).to(outs[1].device)
            outs[0].backward(g.to(outs[0].dtype))
            outs[1].backward(g)
            errors.append(relative_error(xs[0].grad, xs[1].grad))
        return max(errors)

    return check


def attention_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    b, n, d = shape.batch, cell.seq_len, shape.d_model
    torch.manual_seed(0)
    ours = MultiHeadAttention(d, cell.heads, 0.0, "naive" if cell.impl == "naive" else "sdpa")
    reference = MultiHeadAttention(d, cell.heads, 0.0, "naive")
    reference.load_state_dict(ours.state_dict())
    if cell.impl == "torch_mha":
        module: nn.Module = nn.MultiheadAttention(d, cell.heads, batch_first=True)
        with torch.no_grad():
            module.in_proj_weight.copy_(ours.in_proj.weight)
            module.in_proj_bias.copy_(ours.in_proj.bias)
            module.out_proj.load_state_dict(ours.out_proj.state_dict())

        def call(m, x):
            return m(x, x, x, need_weights=False)[0] if isinstance(m, nn.MultiheadAttention) else m(x)
    else:
        module = ours

        def call(m, x):
            return m(x)

    module = module.to(device, dtype)
    train = cell.pass_ == "train"
    x = torch.randn(b, n, d, device=device, dtype=dtype, requires_grad=train)
    module.train(train)
    fn = lambda inp: call(module, inp)  # noqa: E731
    step = _forward_backward(fn, x, torch.randn_like(x)) if train else _inference(fn, x)
    forward = 2 * b * n * 4 * d * d + cost.attention_score_flops(b, n, d)

    def flops(backend: str) -> int:  # backward: 2x forward, plus QK^T again where the kernel recomputes it
        if not train:
            return forward
        return 3 * forward + (cost.attention_score_flops(b, n, d) // 2 if recomputes_scores(backend) else 0)

    def backend() -> str:
        if cell.impl == "torch_mha":
            if not train:
                return "fused:_native_multi_head_attention"
            q = torch.empty(b, cell.heads, n, d // cell.heads, device=device, dtype=dtype)
            return sdpa_backend(q, q, q, None, 0.0)
        return ours.last_backend or "not run"

    return Workload(step, _checker(module, reference.to(device), call, x, train), flops,
                    predicted_peak_bytes(cell, shape), b * n, backend)  # fmt: skip


def layer_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    b, n, d, f = shape.batch, cell.seq_len, shape.d_model, shape.d_ff
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(d, cell.heads, f, cell.dropout, batch_first=True, norm_first=True)
    reference = EncoderLayer.from_torch(theirs, attention="naive")
    module = (
        theirs
        if cell.impl == "torch"
        else EncoderLayer.from_torch(theirs, "naive" if cell.impl == "ours_naive" else "sdpa")
    )
    module = module.to(device, dtype)
    train = cell.pass_ == "train"
    module.train(train)
    x = torch.randn(b, n, d, device=device, dtype=dtype, requires_grad=train)
    step = _forward_backward(module, x, torch.randn_like(x)) if train else _inference(module, x)

    def flops(backend: str) -> int:
        forward = cost.layer_forward_flops(b, n, d, f).total
        return forward + (cost.layer_backward_flops(b, n, d, f, recomputes_scores(backend)).total if train else 0)

    def backend() -> str:
        if cell.impl == "torch":
            if not train:
                return "fused:_transformer_encoder_layer_fwd"
            q = torch.empty(b, cell.heads, n, d // cell.heads, device=device, dtype=dtype)
            return sdpa_backend(q, q, q, None, cell.dropout)
        return module.self_attn.last_backend or "not run"

    return Workload(step, _checker(module, reference.to(device), lambda m, x: m(x), x, train), flops,
                    predicted_peak_bytes(cell, shape), b * n, backend)  # fmt: skip


def train_step_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    b, n, d, f, V = shape.batch, cell.seq_len, shape.d_model, shape.d_ff, shape.model_vocab
    config = EncoderConfig(d_model=d, n_heads=cell.heads, d_ff=f, n_layers=shape.model_layers, attention=cell.impl,
                           max_len=n, vocab_size=V, output_size=V)  # fmt: skip
    torch.manual_seed(0)
    model = Encoder(config).to(device, dtype)
    reference = Encoder(EncoderConfig(**{**config.to_dict(), "attention": "naive"})).to(device)
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, V, (b, n), device=device, generator=None)
    targets = torch.randint(0, V, (b, n), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens).view(-1, V).float(), targets.view(-1)).backward()
        optimizer.step()

    def check() -> float:
        with torch.no_grad():
            return relative_error(model(tokens), reference(tokens))

    def flops(backend: str) -> int:
        forward = cost.model_forward_flops(b, n, d, f, shape.model_layers, None, V).total
        return (
            forward
            + cost.model_backward_flops(b, n, d, f, shape.model_layers, None, V, recomputes_scores(backend)).total
        )

    return Workload(step, check, flops, predicted_peak_bytes(cell, shape), b * n,
                    lambda: model.layers[0].self_attn.last_backend or "not run")  # fmt: skip


WORKLOADS = {"attention": attention_workload, "layer": layer_workload, "train_step": train_step_workload}
