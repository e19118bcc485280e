"""One registry of attention and layer implementations. Built-ins and user ones (`module.path:factory`)
enter it the same way, and the workloads ask it rather than branching on names.

A user attention factory is called as factory(d_model, n_heads, dropout), a user layer factory as
factory(d_model, n_heads, d_ff, dropout). Each returns an nn.Module mapping (batch, seq, d_model) to the
same shape, whose state_dict has the parameter names of model.attention.MultiHeadAttention (attention)
or model.layers.EncoderLayer (layer): the float32 reference's weights are loaded into it, so the two
compute the same function. The module may define flops(b, n): its forward's matmul FLOPs.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.grid import USER_IMPL, Shape
from model.attention import MultiHeadAttention
from model.layers import TORCH_PARAMETER_NAMES, EncoderLayer


class ImplementationError(Exception):
    """An implementation that cannot be loaded, built or checked: one line that names it."""


class TorchMHA(nn.Module):
    """nn.MultiheadAttention as self-attention on one input (batch_first)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d_model, n_heads, dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


@dataclass(frozen=True)
class Implementation:
    name: str
    group: str
    build: Callable[[Shape, int, float], nn.Module]  # (shape, heads, dropout) -> module
    load_reference: Callable[[nn.Module, nn.Module], None]  # copy the reference's weights in
    positional: str  # how it takes positions: "ours" (positional= argument), "torch" (src_mask), "none"
    user: bool = False


def _load_same_names(module: nn.Module, reference: nn.Module) -> None:
    module.load_state_dict(reference.state_dict())


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


def _attention(kernel: str) -> Callable[[Shape, int, float], nn.Module]:
    return lambda shape, heads, dropout: MultiHeadAttention(shape.d_model, heads, dropout, kernel)


def _layer(kernel: str) -> Callable[[Shape, int, float], nn.Module]:
    return lambda shape, heads, dropout: EncoderLayer(shape.d_model, heads, shape.d_ff, dropout, attention=kernel)


def _torch_layer(shape: Shape, heads: int, dropout: float) -> nn.Module:
    return nn.TransformerEncoderLayer(shape.d_model, heads, shape.d_ff, dropout, batch_first=True, norm_first=True)


BUILTINS = {
    impl.name if impl.group == "attention" else f"layer:{impl.name}": impl
    for impl in [
        *(Implementation(k, "attention", _attention(k), _load_same_names, "ours") for k in ("naive", "sdpa", "auto")),
        Implementation("torch_mha", "attention", lambda s, h, p: TorchMHA(s.d_model, h, p), _load_torch_mha, "none"),
        Implementation("ours", "layer", _layer("sdpa"), _load_same_names, "ours"),
        Implementation("ours_naive", "layer", _layer("naive"), _load_same_names, "ours"),
        Implementation("ours_auto", "layer", _layer("auto"), _load_same_names, "ours"),
        Implementation("torch", "layer", _torch_layer, _load_torch_layer, "torch"),
    ]
}


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by `module.path:factory`, or ImplementationError saying what went wrong."""
    if not USER_IMPL.match(path):
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

    def load(module: nn.Module, reference: nn.Module) -> None:
        want, got = set(reference.state_dict()), set(module.state_dict())
        if want != got:
            raise ImplementationError(
                f"{path}: cannot load the reference weights: its parameters {sorted(got)} differ from "
                f"{reference_type}'s {sorted(want)}; use the same names (e.g. subclass it)"
            )
        module.load_state_dict(reference.state_dict())

    return Implementation(path, group, build, load, "none", user=True)


def resolve(group: str, name: str) -> Implementation:
    """The implementation `name` of benchmark group `group` ("attention" or "layer")."""
    key = name if group == "attention" else f"layer:{name}"
    if key in BUILTINS:
        return BUILTINS[key]
    return _user(name, group)


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
