"""The flex kernel (torch.compile(flex_attention)) against our explicit-softmax attention: every mask as a block
mask (causal, a window, key padding, and together), grouped key/value heads, and ALiBi (both kinds) as a
score_mod against the same encoding's (h, n, n) bias. Forward only: flex has no backward on the CPU, and the
module says so in one line. Each case compiles once (a few seconds), so the file is in the slow tier."""

from __future__ import annotations

import pytest
import torch

from bench.observe import attention_label
from model import flex as flex_module
from model.attention import MultiHeadAttention
from model.kernels import FLEX_SCOPE, FLEX_UNFUSED, attention_family
from model.positional import positional_encoding

pytestmark = pytest.mark.slow
B, N, D, H = 2, 96, 64, 4


def pair(**variant) -> tuple[MultiHeadAttention, MultiHeadAttention]:
    torch.manual_seed(0)
    explicit = MultiHeadAttention(D, H, 0.0, "naive", **variant).eval()
    flexed = MultiHeadAttention(D, H, 0.0, "flex", **variant).eval()
    flexed.load_state_dict(explicit.state_dict())
    return explicit, flexed


@pytest.mark.parametrize(
    "variant",
    [{}, {"causal": True}, {"window": 16}, {"kv_heads": 2}, {"causal": True, "window": 24, "kv_heads": 1}],
    ids=["dense", "causal", "window", "gqa", "causal-window-mqa"],
)
def test_flex_matches_the_explicit_softmax_for_every_mask_in_float32(variant):
    explicit, flexed = pair(**variant)
    x = torch.randn(B, N, D)
    with torch.no_grad():
        assert (flexed(x) - explicit(x)).abs().max().item() < 1e-5


def test_key_padding_becomes_a_block_mask_and_matches_on_every_real_token():
    explicit, flexed = pair(causal=False, window=32)
    x = torch.randn(B, N, D)
    padding = torch.zeros(B, N, dtype=torch.bool)
    padding[0, 70:] = True  # the first sequence has 70 real tokens, the second all 96
    with torch.no_grad():
        want, got = explicit(x, key_padding_mask=padding), flexed(x, key_padding_mask=padding)
    real = ~padding
    assert (got[real] - want[real]).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["alibi", "alibi_directional"])
def test_alibi_as_a_score_mod_matches_the_bias_passed_to_the_explicit_kernel(name):
    explicit, flexed = pair()
    positions = positional_encoding(name, D, H, N)
    x = torch.randn(B, N, D)
    with torch.no_grad():
        want, got = explicit(x, positional=positions), flexed(x, positional=positions)
    assert (got - want).abs().max().item() < 1e-5


def test_flex_is_observed_as_flex_and_its_eager_fallback_is_named():
    _, flexed = pair()
    x = torch.randn(B, N, D)
    with torch.no_grad(), torch.profiler.profile() as prof:
        flexed(x)
    names = [e.name for e in prof.events()]
    assert FLEX_SCOPE in names
    assert attention_label(names) == "flex"
    assert attention_family("flex") == "flex"
    # flex_attention without a compiled graph around it: the unfused path that holds the n x n scores
    assert attention_label([FLEX_SCOPE, "aten::bmm", "aten::exp"]) == FLEX_UNFUSED
    assert attention_family(FLEX_UNFUSED) == "materialised"
    assert flex_module.compilations() >= 1


def test_flex_refuses_dropout_in_training_with_one_line():
    module = MultiHeadAttention(D, H, 0.1, "flex").train()
    with pytest.raises(ValueError, match="the flex kernel has no attention dropout; got dropout=0.1"):
        module(torch.randn(B, N, D))
