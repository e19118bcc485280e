"""Grouped-query attention and sliding windows in model.attention: every kernel against a reference written out
by hand (k and v repeated per query head; a boolean mask built pair by pair), with gradients, and the cost
model's FLOPs and visible pairs against what is counted."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.attention import MultiHeadAttention
from model.config import EncoderConfig
from model.cost import effective_score_flops, grouped_attention_forward_flops, visible_pairs
from model.encoder import Encoder

KERNELS = ("naive", "blocked", "sdpa", "math")
B, N, D, H = 2, 40, 32, 8


def reference(module: MultiHeadAttention, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Attention in float64 the long way: q, k, v from the projection, each query head reading key/value head
    i // (h / h_kv), softmax over the keys `allowed` (a (n, n) bool, True = seen) marks."""
    w, bias = module.in_proj.weight.double(), module.in_proj.bias.double()
    x = x.double()
    hs, h, h_kv = D // H, module.n_heads, module.kv_heads
    proj = x @ w.T + bias
    q = proj[..., :D].view(B, N, h, hs).transpose(1, 2)
    k = proj[..., D : D + h_kv * hs].view(B, N, h_kv, hs).transpose(1, 2)
    v = proj[..., D + h_kv * hs :].view(B, N, h_kv, hs).transpose(1, 2)
    group = h // h_kv
    k = torch.stack([k[:, i // group] for i in range(h)], dim=1)
    v = torch.stack([v[:, i // group] for i in range(h)], dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D)
    return y @ module.out_proj.weight.double().T + module.out_proj.bias.double()


def window_pairs(n: int, window: int, causal: bool) -> torch.Tensor:
    """The window's pairs, one by one: query i sees key j within `window` of it (causal: j <= i)."""
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            allowed[i, j] = (0 <= i - j < window) if causal else abs(i - j) < window
    return allowed


def check(module: MultiHeadAttention, allowed: torch.Tensor | None) -> None:
    """Output within 1e-5 of the reference in float32, and the gradients of the input and of the projection."""
    torch.manual_seed(1)
    x = torch.randn(B, N, D, requires_grad=True)
    y = module(x)
    want = reference(module, x, allowed)
    assert (y.double() - want).abs().max().item() < 1e-5
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, module.in_proj.weight), grad)
    expected = torch.autograd.grad(want, (x, module.in_proj.weight), grad.double())
    for g, e in zip(got, expected):
        assert (g.double() - e).abs().max().item() < 1e-5


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("kv_heads", [8, 2, 1])
def test_grouped_query_attention_equals_repeated_keys_and_values(kernel, kv_heads):
    torch.manual_seed(0)
    module = MultiHeadAttention(D, H, kernel=kernel, kv_heads=kv_heads)
    assert module.in_proj.out_features == D + 2 * kv_heads * (D // H)
    check(module, None)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 7, 100])
def test_a_sliding_window_equals_its_mask_written_pair_by_pair(kernel, causal, window):
    torch.manual_seed(0)
    module = MultiHeadAttention(D, H, kernel=kernel, causal=causal, window=window, kv_heads=2)
    check(module, window_pairs(N, window, causal))


def test_without_a_window_or_groups_the_module_is_what_it_was():
    """kv_heads = h keeps nn.MultiheadAttention's (3d, d) projection, so weights still copy across."""
    module = MultiHeadAttention(D, H)
    assert module.kv_heads == H and module.window is None and module.in_proj.out_features == 3 * D
    check(MultiHeadAttention(D, H, causal=True), window_pairs(N, N, True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kv_heads": 3}, "kv_heads=3 must divide n_heads=8: one of [1, 2, 4, 8]"), ({"window": 0}, "window=0")],
)
def test_bad_groups_or_windows_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(D, H, **kwargs)


@pytest.mark.parametrize("n", [1, 5, 16])
@pytest.mark.parametrize("window", [None, 1, 3, 16, 40])
@pytest.mark.parametrize("causal", [False, True])
def test_visible_pairs_count_the_mask(n, window, causal):
    allowed = window_pairs(n, n if window is None else window, causal)
    assert visible_pairs(n, causal, window) == int(allowed.sum())
    assert effective_score_flops(B, n, D, causal, window) == 4 * B * D * int(allowed.sum())


@pytest.mark.parametrize("kv_heads", [8, 2, 1])
def test_grouped_flops_are_what_the_flop_counter_counts(kv_heads):
    module = MultiHeadAttention(D, H, kernel="naive", kv_heads=kv_heads)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.randn(B, N, D))
    assert counter.get_total_flops() == grouped_attention_forward_flops(B, N, D, H, kv_heads).total


def test_an_encoder_with_a_causal_window_sees_only_its_window():
    """One layer, window 4: the output at position i depends on tokens i-3..i and on nothing else."""
    torch.manual_seed(0)
    config = EncoderConfig(d_model=D, n_heads=4, kv_heads=2, window=4, causal=True, n_layers=1, pos_encoding="rope")
    model = Encoder(config).eval()
    tokens = torch.randint(0, config.vocab_size, (1, 12))
    changed = tokens.clone()
    changed[0, 5] = (tokens[0, 5] + 1) % config.vocab_size
    with torch.no_grad():
        moved = (model(tokens) - model(changed)).abs().amax(-1)[0]
    assert moved[:5].max() == 0 and moved[9:].max() == 0 and moved[5:9].min() > 0


def test_a_config_with_groups_that_do_not_divide_the_heads_is_refused():
    with pytest.raises(ValueError, match=re.escape("kv_heads=3 must divide n_heads=4: one of [1, 2, 4]")):
        EncoderConfig(kv_heads=3)
