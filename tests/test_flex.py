"""The flex kernel (torch.compile(flex_attention)) against our explicit-softmax attention: every mask as a block
mask (causal, a window, key padding, and together), grouped key/value heads, and ALiBi (both kinds) as a
score_mod against the same encoding's (h, n, n) bias. Forward only: flex has no backward on the CPU, and the
module says so in one line. Each case compiles once (a few seconds), so the file is in the slow tier."""

from __future__ import annotations

import pytest
import torch

from bench.observe import attention_label
from model import cost
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


def test_packed_sequences_as_a_flex_document_mask_are_each_sequence_alone():
    explicit, flexed = pair()
    lengths = [40, 56]  # one row of 96 tokens, two sequences
    documents = torch.repeat_interleave(torch.arange(2), torch.tensor(lengths))
    x = torch.randn(1, N, D)
    with torch.no_grad():
        got = flexed(x, documents=documents)[0]
        want = torch.cat([explicit(part)[0] for part in x.split(lengths, dim=1)])
    assert (got - want).abs().max().item() < 1e-5


def test_a_flex_cell_records_its_first_call_compile_and_counts_its_flops():
    from bench.cell import Cell
    from bench.cell_runner import measure, measure_facts
    from bench.grid import load_grid

    grid = load_grid("variants")
    cell = Cell("attention", "cpu", "float32", "small", 80, 8, "flex", "forward", window=16)
    before = flex_module.compilations()
    facts = measure_facts(cell, grid, None)
    assert facts.attention_kernel == "flex" and facts.attention_family == "flex"
    assert facts.kernel_compilations == flex_module.compilations() - before >= 1  # a new shape and mask compiles
    assert facts.first_call_s > facts.compile_s > 0
    # FlopCounterMode dispatches no flex_attention (compiled or not): the cost model's dense figure alone
    assert facts.flops_counted is None and facts.flops == cost.grouped_attention_forward_flops(2, 80, 256, 8, 8).total
    timing = measure(cell, grid, 0)
    assert timing.kernel_recompilations == 0  # the compiled kernel served the new pass's module
    again = measure_facts(cell, grid, None)
    assert again.kernel_compilations == 0  # the same shape and mask: nothing to compile
