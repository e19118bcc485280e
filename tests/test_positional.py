"""Each positional encoding does what its paper says."""

import math

import pytest
import torch

from model import Encoder, EncoderConfig
from model.positional import (
    ALiBiPositionalEncoding,
    RotaryPositionalEncoding,
    alibi_slopes,
    sinusoidal_table,
)


def test_sinusoidal_matches_vaswani_formula():
    n, d = 50, 16
    table = sinusoidal_table(n, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    hs, n = 16, 24
    rope = RotaryPositionalEncoding(hs)
    # The same query and key vector at every position: any change of q.k along a diagonal
    # could only come from absolute position.
    q = torch.randn(hs).expand(1, 1, n, hs)
    k = torch.randn(hs).expand(1, 1, n, hs)
    q_rot, k_rot = rope.rotate(q, k)
    scores = (q_rot @ k_rot.transpose(-2, -1))[0, 0]  # (n, n)
    for offset in range(-n + 1, n):
        diagonal = torch.diagonal(scores, offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    # and it does depend on the relative position
    assert not torch.allclose(scores[0, 1], scores[0, 5])


def test_rope_preserves_norms():
    q = torch.randn(2, 3, 10, 8)
    q_rot, _ = RotaryPositionalEncoding(8).rotate(q, q)
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))


def test_alibi_slopes_for_eight_heads_match_paper():
    # Press et al. 2022, sec. 3: for 8 heads the slopes are 1/2, 1/4, ..., 1/256.
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))


def test_alibi_slopes_for_non_power_of_two():
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other of the 8-head
    # slopes (2^-1, 2^-3, ...) for the remaining 2 heads: 2^-1, 2^-3.
    want = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(want))


def test_alibi_bias_is_symmetric_distance_penalty():
    bias = ALiBiPositionalEncoding(4).attention_bias(5, torch.device("cpu"), torch.float32)
    slopes = alibi_slopes(4)
    assert bias.shape == (4, 5, 5)
    torch.testing.assert_close(bias, bias.transpose(-2, -1))
    assert bias[2, 1, 4].item() == pytest.approx(-3 * slopes[2].item())
    assert torch.all(torch.diagonal(bias, dim1=-2, dim2=-1) == 0)


@pytest.mark.parametrize("kernel", ["naive", "sdpa"])
def test_without_positions_encoder_is_permutation_equivariant(kernel):
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(pos_encoding="none", attention=kernel, vocab_size=20)).eval()
    tokens = torch.randint(0, 20, (2, 15))
    perm = torch.randperm(15)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens[:, perm]), model(tokens)[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ["sinusoidal", "learned", "rope", "alibi"])
def test_with_positions_encoder_is_not_permutation_equivariant(pos):
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(pos_encoding=pos, vocab_size=20)).eval()
    if pos == "learned":
        torch.nn.init.normal_(model.positional.table.weight, std=1.0)
    tokens = torch.randint(0, 20, (2, 15))
    # Not the reversal: symmetric ALiBi only sees |i - j|, which a reversal preserves.
    perm = torch.tensor([3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 14, 12, 13])
    with torch.no_grad():
        assert not torch.allclose(model(tokens[:, perm]), model(tokens)[:, perm], atol=1e-3)


@pytest.mark.parametrize("pos", ["sinusoidal", "learned", "rope", "alibi", "none"])
def test_kernels_agree_for_every_encoding(pos):
    torch.manual_seed(0)
    naive = Encoder(EncoderConfig(pos_encoding=pos, attention="naive"))
    sdpa = Encoder(EncoderConfig(pos_encoding=pos, attention="sdpa"))
    sdpa.load_state_dict(naive.state_dict())
    tokens = torch.randint(0, 16, (2, 9))
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, -3:] = True
    torch.testing.assert_close(sdpa(tokens, mask), naive(tokens, mask), atol=1e-5, rtol=1e-5)


def test_directional_alibi_tells_left_from_right():
    from model.positional import DirectionalALiBiPositionalEncoding

    enc = DirectionalALiBiPositionalEncoding(4)
    bias = enc.attention_bias(6, torch.device("cpu"), torch.float32)  # (h, n, n)
    slopes = alibi_slopes(4)
    # head 0: the paper's steepest slope to the left, its shallowest to the right
    assert bias[0, 3, 1].item() == pytest.approx(-slopes[0] * 2)
    assert bias[0, 3, 5].item() == pytest.approx(-slopes[3] * 2)
    assert torch.all(torch.diagonal(bias, dim1=-2, dim2=-1) == 0)
    # unlike symmetric ALiBi, reversing the sequence does not map the bias onto itself
    reversed_bias = bias.flip(-1).flip(-2)
    assert not torch.allclose(reversed_bias, bias)
    symmetric = ALiBiPositionalEncoding(4).attention_bias(6, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(symmetric.flip(-1).flip(-2), symmetric)


def test_directional_alibi_breaks_reversal_symmetry_of_the_encoder():
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(pos_encoding="alibi_directional", n_heads=4)).eval()
    tokens = torch.randint(1, 16, (1, 10))
    out = model(tokens)
    out_reversed = model(tokens.flip(-1)).flip(1)
    assert not torch.allclose(out, out_reversed, atol=1e-4)


def test_rope_frequencies_stay_float32_in_a_bfloat16_model():
    rope = RotaryPositionalEncoding(64).to(torch.bfloat16)
    q = torch.randn(1, 1, 2048, 64)
    q32, _ = rope.rotate(q, q)
    q16, _ = rope.rotate(q.bfloat16(), q.bfloat16())
    assert ((q16.float() - q32).norm() / q32.norm()).item() < 0.02  # bf16 rounding, not garbage angles
