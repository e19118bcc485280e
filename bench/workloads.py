"""What each benchmark cell runs: the step to time, its reference check, and its analytic costs."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.grid import Cell, Shape
from bench.implementations import Implementation, ImplementationError, expected_family, resolve, user_flops
from bench.kernel_table import with_table
from bench.observe import recomputes_scores
from model import Encoder, EncoderConfig, cost
from model.attention import MultiHeadAttention
from model.layers import BERT_STYLE, EncoderLayer
from model.positional import PositionalEncoding, positional_encoding

# Relative error (Frobenius) allowed against the float32 reference, by dtype: a few roundings' worth
# (float32 flash vs math differ by ~1e-6; bf16 has 8 significant bits, fp16 11), far below the
# O(1) error of a wrong kernel.
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}


# The timed calls cycle through this many distinct inputs, and every check draws an input no call has seen: a module
# that returns a stored output instead of computing one cannot pass its checks (bench/cell_runner.py).
ROTATION = 4
_fresh_seeds = itertools.count(1)  # process-wide: no two checks of a run share an input


@dataclass
class Workload:
    step: Callable[[], object]  # one step, as timed (compiled where the cell says so)
    eager_step: Callable[[], object]  # the same step uncompiled: FLOPs are counted on it
    check: Callable[[], float]  # relative error against the float32 reference, on an input no call has seen
    flops: Callable[[str], int | None]  # analytic matmul FLOPs of one step, given the attention kernel observed
    predicted_bytes: Callable[[str], int | None]  # analytic peak memory, given the attention kernel family observed
    tokens: int  # the real tokens of one step (a variable-length batch: without its padding)
    lengths: list[int] | None = None  # a variable-length batch's sequence lengths (bench/varlen.py)
    # whether FlopCounterMode can run the step: it dispatches neither flex_attention (compiled or not) nor a nested
    # tensor's ops; where it cannot, the cell's FLOPs are the cost model's alone
    countable: bool = True
    # after the timed calls: the check on every input they cycled through (unchanged by them) and on a fresh one
    check_after: Callable[[], float] | None = None
    # one step on an input no call has seen, prepared outside what is timed: a module's time on new data
    fresh_step: Callable[[], Callable[[], object]] | None = None


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)).item()


def predicted_family(cell: Cell) -> str:
    """The attention kernel family a cell is expected to run, before it runs (for memory budgets), as its
    registry entry declares it; the results record the family it was observed to run."""
    return expected_family(cell.entry, cell)  # a user's: as SDPA would run it


def training_flops(forward: int, scores: int, label: str) -> int:
    """A training step's FLOPs from its forward's (`scores` of them QK^T and PV): backward costs each matmul
    twice more, and QK^T once again where the kernel observed (`label`) recomputes the scores."""
    return 3 * forward + (scores // 2 if recomputes_scores(label) else 0)


def uses_auto(cell: Cell) -> bool:
    return cell.entry.kernel == "auto"


def uses_flex(cell: Cell) -> bool:
    """The cell's attention compiles its own kernel (model/flex.py) on its first call of each shape and mask."""
    return cell.entry.kernel == "flex"


def predicted_peak_bytes(cell: Cell, shape: Shape, family: str | None = None) -> int:
    """The cost model's peak for this cell, given the attention kernel family (default: the expected one)."""
    b, n, d, h, p = shape.batch, cell.seq_len, shape.d_model, cell.heads, cost.dtype_bytes(cell.dtype)
    family = family or predicted_family(cell)
    m = cost.MemoryShape(b, n, d, h, shape.d_ff, p, "cpu" if cell.device == "cpu" else "cuda")
    train = cell.mode == "train"
    extra = cost.positional_extra_bytes(m, cell.pos_encoding, train, family)
    if cell.group == "attention":
        wrapper = cell.entry.training_copies * m.u if train else 0  # e.g. nn.MultiheadAttention's own copies
        attention = cost.attention_training_bytes if train else cost.attention_inference_bytes
        variant = cost.attention_variant_bytes(m, family, cell.kv_heads or h, cell.window or None, train)
        return attention(m, family) + wrapper + variant
    if cell.group == "layer":
        return extra + (
            cost.layer_training_bytes(m, family, cell.dropout > 0) if train else cost.layer_inference_bytes(m, family)
        )
    params = shape.model_layers * cost.layer_parameter_count(d, shape.d_ff) + 2 * shape.model_vocab * d
    return shape.model_layers * extra + cost.train_step_bytes(
        m, family, cell.dropout > 0, shape.model_layers, shape.model_vocab, params
    )


def set_dropout(module: nn.Module, p: float) -> nn.Module:
    """Every nn.Dropout's p and every float `dropout` attribute (attention modules) set to p."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = p
    return module


class PositionedLayer(nn.Module):
    """A layer with a positional encoding, applied the way the layer takes it: ours through its
    `positional` argument, ALiBi-style biases as torch's float src_mask (batch x heads, n, n) or as
    BERT's additive attention_mask (1, heads, n, n)."""

    def __init__(self, layer: nn.Module, positional: PositionalEncoding, style: str) -> None:
        super().__init__()
        self.layer, self.positional, self.style = layer, positional, style

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.positional.embed(x)
        if self.style == "ours":
            return self.layer(x, positional=self.positional)
        bias = self.positional.attention_bias(x.shape[1], x.device, x.dtype)  # (nh, n, n) or None
        if bias is None:
            return self.layer(x)
        if self.style == "hf":
            return self.layer(x, attention_mask=bias.unsqueeze(0))
        return self.layer(x, src_mask=bias.repeat(x.shape[0], 1, 1))


class Rotation:
    """The inputs a cell's timed calls cycle through, each drawn from its own seed (the first as every earlier
    run drew its one input), so consecutive calls never see the same tensor."""

    def __init__(self, make: Callable[[torch.Generator | None], torch.Tensor], count: int = ROTATION) -> None:
        self.make = make
        self.inputs = [make(None)] + [make(torch.Generator().manual_seed(seed)) for seed in range(1, count)]
        self.kept = [_fingerprint(x) for x in self.inputs]  # what they held before any call
        self.calls = 0

    def next(self) -> torch.Tensor:
        x = self.inputs[self.calls % len(self.inputs)]
        self.calls += 1
        return x

    def fresh(self) -> torch.Tensor:
        """An input no call and no other check has seen."""
        return self.make(torch.Generator().manual_seed(10_000 + next(_fresh_seeds)))

    def written(self) -> bool:
        """Whether a call wrote into one of the inputs it was handed."""
        return any(_fingerprint(x) != kept for x, kept in zip(self.inputs, self.kept))


def _fingerprint(x: torch.Tensor) -> tuple[float, float]:
    """Two sums that any write into a random tensor changes (a copy of each input would double their memory)."""
    x = x.detach()
    return x.sum(dtype=torch.float64).item(), x.square().sum(dtype=torch.float64).item()


def _forward_backward(module: Callable, inputs: Rotation, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x = inputs.next()
        x.grad = None
        module(x).backward(grad)

    return step


def _inference(module: Callable, inputs: Rotation) -> Callable[[], object]:
    def step() -> object:
        x = inputs.next()
        with torch.no_grad():
            return module(x)

    return step


def _checker(
    impl: Implementation, module: nn.Module, reference: nn.Module, train: bool, dropout: float
) -> Callable[[torch.Tensor], float]:
    """Relative error of the module as timed vs the float32 reference on the input given, dropout off; with train,
    of the input gradient too (the larger of the two errors). An output of another shape or dtype than the input's,
    one that is not finite, and a write into the input are each the implementation's error, named."""

    def check(x: torch.Tensor) -> float:
        mine = module if dropout == 0 else set_dropout(copy.deepcopy(module), 0.0)
        xs = [x.detach().clone().requires_grad_(train), x.detach().float().clone().requires_grad_(train)]
        handed = xs[0].detach().clone()
        with torch.set_grad_enabled(train):
            outs = [mine(xs[0]), reference(xs[1])]
        if not isinstance(outs[0], torch.Tensor) or outs[0].shape != outs[1].shape:
            got = f"shape {tuple(outs[0].shape)}" if isinstance(outs[0], torch.Tensor) else type(outs[0]).__name__
            raise ImplementationError(
                f"{impl.name} returned {got} for input {tuple(x.shape)}; it must map (batch, seq, d_model) to a "
                "tensor of the same shape"
            )
        if outs[0].dtype != x.dtype:
            raise ImplementationError(
                f"{impl.name} returned {str(outs[0].dtype).removeprefix('torch.')} for a "
                f"{str(x.dtype).removeprefix('torch.')} input: a cell is measured in its own dtype"
            )
        if not torch.isfinite(outs[0]).all():
            raise ImplementationError(f"{impl.name} returned NaN or inf for a finite input")
        if not torch.equal(xs[0].detach(), handed):
            raise ImplementationError(f"{impl.name} wrote into its input: a step must leave its input as it was")
        errors = [relative_error(outs[0], outs[1])]
        if train:
            g = torch.randn(outs[1].shape, generator=torch.Generator().manual_seed(0)).to(outs[1].device)
            outs[0].backward(g.to(outs[0].dtype))
            outs[1].backward(g)
            errors.append(relative_error(xs[0].grad, xs[1].grad))
        return max(errors)

    return check


def compiled(module: nn.Module, mode: str) -> nn.Module:
    """The module as the cell's compile mode runs it (cudagraph captures the eager step later)."""
    return torch.compile(module) if mode == "inductor" else module


def _module_workload(
    cell: Cell,
    impl: Implementation,
    module: nn.Module,
    reference: nn.Module,
    shape: Shape,
    device: str,
    dtype: torch.dtype,
    forward_flops: Callable[[str], int],
) -> Workload:
    """Shared by attention and layer cells: a module mapping (b, n, d) to the same shape."""
    b, n, d = shape.batch, cell.seq_len, shape.d_model
    train = cell.mode == "train"
    module = module.to(device, dtype).train(train)
    reference = reference.to(device).train(train)
    inputs = Rotation(
        lambda generator: (
            torch.randn(b, n, d, generator=generator, dtype=dtype).to(device).requires_grad_(train)
            if generator is not None
            else torch.randn(b, n, d, device=device, dtype=dtype, requires_grad=train)
        )
    )
    grad = torch.randn_like(inputs.inputs[0])
    timed = compiled(module, cell.compile)
    make_step = (lambda m: _forward_backward(m, inputs, grad)) if train else (lambda m: _inference(m, inputs))
    check = _checker(impl, timed, reference, train, cell.dropout)

    def check_after() -> float:
        """Every input of the rotation, unchanged by the timed calls, then a fresh one (enough consecutive calls
        to catch a module that goes wrong on every few)."""
        if inputs.written():
            raise ImplementationError(f"{impl.name} wrote into an input of its timed calls")
        return max(check(x) for x in [*inputs.inputs, inputs.fresh()])

    def fresh_step() -> Callable[[], object]:
        x = inputs.fresh()
        once = Rotation(lambda _: x, count=1)
        return _forward_backward(timed, once, grad) if train else _inference(timed, once)

    def flops(label: str) -> int | None:
        if impl.user:
            return user_flops(getattr(module, "layer", module), b, n, train)  # a layer sits in its PositionedLayer
        forward = forward_flops(label)
        return training_flops(forward, cost.attention_score_flops(b, n, d), label) if train else forward

    def memory(family: str) -> int | None:  # a user implementation's memory is its own: no model for it
        return None if impl.user else predicted_peak_bytes(cell, shape, family)

    return Workload(
        make_step(timed),
        make_step(module),
        lambda: check(inputs.fresh()),
        flops,
        memory,
        b * n,
        countable=not uses_flex(cell),
        check_after=check_after,
        fresh_step=fresh_step,
    )


def attention_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    impl = resolve("attention", cell.impl)
    torch.manual_seed(0)
    variant = cell.variant  # only ours takes one (bench/skips.py): the reference is ours, explicit softmax
    reference = MultiHeadAttention(shape.d_model, cell.heads, 0.0, "naive", **variant)
    module = impl.build(shape, cell.heads, cell.dropout, **variant)
    impl.load_reference(module, reference)
    if cell.varlen != "none":
        from bench.varlen import varlen_workload  # imported here: bench.varlen builds on this module

        return varlen_workload(cell, impl, module, reference, shape, device, dtype)
    b, n, d = shape.batch, cell.seq_len, shape.d_model

    def forward_flops(label: str) -> int:  # every kernel computes the masked scores too: the dense figure
        return cost.grouped_attention_forward_flops(b, n, d, cell.heads, cell.kv_heads or cell.heads).total

    return _module_workload(cell, impl, module, reference, shape, device, dtype, forward_flops)


def layer_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    impl = resolve("layer", cell.impl)
    b, n, d, f = shape.batch, cell.seq_len, shape.d_model, shape.d_ff
    torch.manual_seed(0)
    if impl.reference == "bert":  # ours configured as BERT, in float32, explicit softmax
        reference_layer = EncoderLayer(d, cell.heads, f, 0.0, attention="naive", **BERT_STYLE)
    else:  # torch's initialisation, so every implementation starts from the weights torch's layer would have
        reference_layer = EncoderLayer.from_torch(
            nn.TransformerEncoderLayer(d, cell.heads, f, 0.0, batch_first=True, norm_first=True), "naive"
        )
    layer = impl.build(shape, cell.heads, cell.dropout)
    impl.load_reference(layer, reference_layer)
    positional = positional_encoding(cell.pos_encoding, d, cell.heads, n)
    module = PositionedLayer(layer, positional, impl.positional)
    reference = PositionedLayer(reference_layer, copy.deepcopy(positional).float(), "ours")

    def forward_flops(label: str) -> int:
        return cost.layer_forward_flops(b, n, d, f).total

    return _module_workload(cell, impl, module, reference, shape, device, dtype, forward_flops)


def make_optimizer(model: nn.Module, device: str) -> torch.optim.Optimizer:
    """AdamW; on CUDA capturable, so that its step (its step counter on the device) can be captured in the
    CUDA graph that times the training step: a non-capturable step raises inside capture."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=device.startswith("cuda"))


def train_step_workload(cell: Cell, shape: Shape, device: str, dtype: torch.dtype) -> Workload:
    b, n, d, f, V = shape.batch, cell.seq_len, shape.d_model, shape.d_ff, shape.model_vocab
    kernel = resolve("train_step", cell.impl).kernel
    config = EncoderConfig(
        d_model=d,
        n_heads=cell.heads,
        d_ff=f,
        n_layers=shape.model_layers,
        attention=kernel,
        max_len=n,
        vocab_size=V,
        output_size=V,
        pos_encoding=cell.pos_encoding,
        dropout=cell.dropout,
    )
    torch.manual_seed(0)
    model = with_table(Encoder(config)).to(device, dtype)
    reference = Encoder(EncoderConfig(**{**config.to_dict(), "attention": "naive", "dropout": 0.0})).to(device)
    reference.load_state_dict(model.state_dict())
    optimizer = make_optimizer(model, device)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (b, n), generator=generator).to(device)
    targets = torch.randint(0, V, (b, n), generator=generator).to(device)
    timed = compiled(model, cell.compile)

    def make_step(m: nn.Module) -> Callable[[], None]:
        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(m(tokens).view(-1, V).float(), targets.view(-1)).backward()
            optimizer.step()

        return step

    def check() -> float:
        mine = timed if cell.dropout == 0 else set_dropout(copy.deepcopy(model), 0.0)
        with torch.no_grad():
            return relative_error(mine(tokens), reference(tokens))

    def flops(label: str) -> int:
        forward = cost.model_forward_flops(b, n, d, f, shape.model_layers, None, V).total
        backward = cost.model_backward_flops(b, n, d, f, shape.model_layers, None, V, recomputes_scores(label)).total
        return forward + backward

    return Workload(
        make_step(timed),
        make_step(model),
        check,
        flops,
        lambda family: predicted_peak_bytes(cell, shape, family),
        b * n,
    )


WORKLOADS = {"attention": attention_workload, "layer": layer_workload, "train_step": train_step_workload}
