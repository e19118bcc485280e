"""How each implementation is built. Who it is (group, kernel, expected family, baseline, reference, how it
takes positions) is its entry in the shared registry, infra/registry.py, which analysis reads too; this
module adds how to build it and load the reference's weights. Adding a built-in is one entry there and
one builder here. User implementations (`module.path:factory`) enter the same way, imported once per run.

A user attention factory is called as factory(d_model, n_heads, dropout), a user layer factory as
factory(d_model, n_heads, d_ff, dropout). Each returns an nn.Module mapping (batch, seq, d_model) to the
same shape. The float32 reference's weights (model.attention.MultiHeadAttention for attention,
model.layers.EncoderLayer for layer) are loaded into it, so the two compute the same function: by its
own `load_reference(self, reference)` where it defines one (any parameter layout), else by parameter
name. The module may define flops(b, n): its forward's matmul FLOPs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench.hf_reference import hf_bert
from bench.kernel_table import bench_chooser, with_table
from infra.registry import (
    ENTRIES,
    HF_BERT_EAGER,
    HF_BERT_SDPA,
    OURS_AUTO_LAYER,
    OURS_BERT_LAYER,
    OURS_LAYER,
    Entry,
    is_user,
    lookup,
)
from model.attention import MultiHeadAttention
from model.layers import BERT_STYLE, TORCH_PARAMETER_NAMES, EncoderLayer

if TYPE_CHECKING:
    from bench.cell import Cell, Shape


class ImplementationError(Exception):
    """An implementation that cannot be loaded, built or checked: one line that names it."""


class TorchMHA(nn.Module):
    """nn.MultiheadAttention as self-attention on one input (batch_first)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d_model, n_heads, dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


def sdpa_family(cell: Cell) -> str:
    """The family SDPA's dispatcher picks (as the committed runs observed it): on CPU flash, or math with
    dropout (the CPU flash kernel has none); on CUDA efficient for float32, cuDNN for half precision."""
    if cell.device == "cpu":
        return "math" if cell.dropout > 0 else "flash"
    return "efficient" if cell.dtype == "float32" else "cudnn"


def auto_lookup(cell: Cell) -> tuple[str, str]:
    """(kernel, where it comes from: table, cache or fallback) of the auto kernel in this cell, without tuning."""
    return bench_chooser().lookup(cell.device, cell.dtype, cell.seq_len, cell.dropout > 0, cell.mode == "train")


def kernel_family(kernel: str, cell: Cell) -> str:
    """The family a named attention kernel runs in this cell (auto: the choice known before tuning)."""
    if kernel == "auto":
        kernel, _ = auto_lookup(cell)
    if kernel == "sdpa":
        return sdpa_family(cell)
    return {"naive": "materialised"}.get(kernel, kernel)


def torch_family(cell: Cell) -> str:
    """nn.MultiheadAttention takes its fused fast path in inference, with an even head count."""
    if cell.mode in ("eval", "forward") and cell.heads % 2 == 0:
        return "fused_explicit" if cell.device == "cpu" else "fused_sdpa"
    return sdpa_family(cell)


def expected_family(entry: Entry, cell: Cell) -> str:
    """The attention kernel family an implementation is expected to run in a cell before it runs (for memory
    budgets), by its entry's rule; the results record the family observed."""
    if entry.family_rule == "kernel":
        return kernel_family(entry.kernel or "sdpa", cell)
    if entry.family_rule == "sdpa":
        return sdpa_family(cell)
    if entry.family_rule == "torch_mha":
        return torch_family(cell)
    return entry.family_rule


@dataclass(frozen=True)
class Implementation:
    """An entry of the shared registry (infra/registry.py) with how to build it and load the reference."""

    entry: Entry
    build: Callable[[Shape, int, float], nn.Module] | None  # (shape, heads, dropout) -> module; None: train_step
    load_reference: Callable[[nn.Module, nn.Module], None] | None  # copy the reference's weights in

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def kernel(self) -> str | None:
        return self.entry.kernel

    @property
    def user(self) -> bool:
        return self.entry.user

    @property
    def reference(self) -> str:
        return self.entry.reference

    @property
    def positional(self) -> str:
        return self.entry.positional


def _load_same_names(module: nn.Module, reference: nn.Module) -> None:
    module.load_state_dict(reference.state_dict())


def load_by_hook_or_names(name: str, reference_type: str) -> Callable[[nn.Module, nn.Module], None]:
    """The loader of a module that is not ours: its own load_reference(reference) where it defines one,
    else the reference's state_dict by parameter name; one line naming the hook where neither works."""

    def load(module: nn.Module, reference: nn.Module) -> None:
        hook = getattr(module, "load_reference", None)
        if callable(hook):
            try:
                hook(reference)
            except Exception as err:  # noqa: BLE001 - the module's own hook failed: one line naming it
                raise ImplementationError(f"{name}: load_reference raised {type(err).__name__}: {err}") from None
            return
        want, got = set(reference.state_dict()), set(module.state_dict())
        if want != got:
            raise ImplementationError(
                f"{name}: cannot load the reference weights: its parameters {sorted(got)} differ from "
                f"{reference_type}'s {sorted(want)}; define load_reference(self, reference) to copy them into "
                "its own layout, or use the same names (e.g. subclass it)"
            )
        module.load_state_dict(reference.state_dict())

    return load


def _load_torch_mha(module: nn.Module, reference: nn.Module) -> None:
    with torch.no_grad():
        module.mha.in_proj_weight.copy_(reference.in_proj.weight)
        module.mha.in_proj_bias.copy_(reference.in_proj.bias)
        module.mha.out_proj.load_state_dict(reference.out_proj.state_dict())


def _load_torch_layer(module: nn.Module, reference: nn.Module) -> None:
    theirs = dict(module.named_parameters())
    with torch.no_grad():
        for ours_name, value in reference.named_parameters():
            theirs[TORCH_PARAMETER_NAMES[ours_name]].copy_(value)


def _attention(kernel: str) -> Callable[..., nn.Module]:
    """Ours with `kernel`; a cell's attention variant (kv_heads, window) passed through as keywords."""

    def build(shape: Shape, heads: int, dropout: float, **variant: int) -> nn.Module:
        return with_table(MultiHeadAttention(shape.d_model, heads, dropout, kernel, **variant))

    return build


def _layer(kernel: str) -> Callable[[Shape, int, float], nn.Module]:
    def build(shape: Shape, heads: int, dropout: float) -> nn.Module:
        return with_table(EncoderLayer(shape.d_model, heads, shape.d_ff, dropout, attention=kernel))

    return build


def _torch_layer(shape: Shape, heads: int, dropout: float) -> nn.Module:
    return nn.TransformerEncoderLayer(shape.d_model, heads, shape.d_ff, dropout, batch_first=True, norm_first=True)


def _torch_mha(shape: Shape, heads: int, dropout: float) -> nn.Module:
    return TorchMHA(shape.d_model, heads, dropout)


def _bert_layer(kernel: str) -> Callable[[Shape, int, float], nn.Module]:
    def build(shape: Shape, heads: int, dropout: float) -> nn.Module:
        return with_table(EncoderLayer(shape.d_model, heads, shape.d_ff, dropout, attention=kernel, **BERT_STYLE))

    return build


def _hf_loader(name: str) -> Callable[[nn.Module, nn.Module], None]:
    """Hugging Face's BertLayer is loaded through its load_reference like any module."""
    return load_by_hook_or_names(name, "ours")


# How each registry entry is built and takes the reference's weights, by (group, name).
BUILDERS: dict[tuple[str, str], tuple[Callable | None, Callable | None]] = {
    **{
        ("attention", k): (_attention(kernel), _load_same_names)
        for k, kernel in (
            ("naive", "naive"),
            ("sdpa", "sdpa"),
            ("auto", "auto"),
            ("sdpa_math", "math"),
            ("flex", "flex"),
        )
    },
    ("attention", "torch_mha"): (_torch_mha, _load_torch_mha),
    ("layer", OURS_LAYER): (_layer("sdpa"), _load_same_names),
    ("layer", "ours_naive"): (_layer("naive"), _load_same_names),
    ("layer", OURS_AUTO_LAYER): (_layer("auto"), _load_same_names),
    ("layer", "ours_flex"): (_layer("flex"), _load_same_names),
    ("layer", "torch"): (_torch_layer, _load_torch_layer),
    ("layer", OURS_BERT_LAYER): (_bert_layer("sdpa"), _load_same_names),
    ("layer", HF_BERT_EAGER): (hf_bert("eager", ImplementationError), _hf_loader(HF_BERT_EAGER)),
    ("layer", HF_BERT_SDPA): (hf_bert("sdpa", ImplementationError), _hf_loader(HF_BERT_SDPA)),
    **{("train_step", k): (None, None) for k in ("naive", "sdpa", "auto")},
}
REGISTRY = tuple(Implementation(entry, *BUILDERS[(entry.group, entry.name)]) for entry in ENTRIES)
assert len(BUILDERS) == len(REGISTRY), "every builder belongs to a registry entry"


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by `module.path:factory`, or ImplementationError saying what went wrong."""
    if not is_user(path):
        raise ImplementationError(f"{path!r} is neither a built-in implementation nor module.path:factory")
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` does: modules beside the working directory import
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is this implementation's, reported in one line
        reason = f"{type(err).__name__}: {err}"
        raise ImplementationError(f"{path}: cannot import module {module_name!r} ({reason})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImplementationError(f"{path}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImplementationError(f"{path}: {attr!r} is not callable; give a factory function or class")
    return obj


def _user(path: str, group: str) -> Implementation:
    factory = import_factory(path)
    reference_type = "model.attention.MultiHeadAttention" if group == "attention" else "model.layers.EncoderLayer"

    def build(shape: Shape, heads: int, dropout: float) -> nn.Module:
        args = (shape.d_model, heads, dropout) if group == "attention" else (shape.d_model, heads, shape.d_ff, dropout)
        try:
            module = factory(*args)
        except Exception as err:  # noqa: BLE001 - the user's factory failed: say so in one line
            raise ImplementationError(f"{path}{args} raised {type(err).__name__}: {err}") from None
        if not isinstance(module, nn.Module):
            raise ImplementationError(f"{path}{args} returned {type(module).__name__}, not an nn.Module")
        return module

    return Implementation(lookup(group, path), build, load_by_hook_or_names(path, reference_type))


_BUILT = {(i.entry.group, i.entry.name): i for i in REGISTRY}


@functools.cache
def resolve(group: str, name: str) -> Implementation:
    """The implementation `name` of benchmark group `group`: a registry entry, or a user's module:factory,
    imported once per run (a failed import is not cached, so each cell says why)."""
    return _BUILT.get((group, name)) or _user(name, group)


def user_flops(module: nn.Module, b: int, n: int, train: bool) -> int | None:
    """Matmul FLOPs of one step from the module's own flops(b, n) hook, where it has one. The hook gives
    the forward's; where it also takes `train`, it gives the training step's itself (a recomputing
    implementation knows what it recomputes), else training counts 3x the forward."""
    hook = getattr(module, "flops", None)
    if not callable(hook):
        return None
    if "train" in inspect.signature(hook).parameters:
        return int(hook(b, n, train=train))
    return int(hook(b, n)) * (3 if train else 1)
