"""The analytic matmul FLOPs equal what FlopCounterMode counts on the math path, exactly."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from model import Encoder, EncoderConfig, EncoderLayer, cost

SHAPES = [  # (batch, seq, d_model, heads, d_ff)
    (1, 8, 16, 1, 32),
    (2, 17, 32, 4, 64),
    (3, 64, 48, 6, 96),
    (2, 128, 64, 16, 256),
]


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("kernel", ["naive", "sdpa"])
@pytest.mark.parametrize("b,n,d,h,f", SHAPES)
def test_layer_flops_match_counter(b, n, d, h, f, kernel):
    layer = EncoderLayer(d, h, f, attention=kernel)
    x = torch.randn(b, n, d, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):  # the math path decomposes SDPA into counted bmm's
        out = layer(x)
        forward = counted(lambda: layer(x))
        backward = counted(lambda: out.sum().backward())
    assert forward == cost.layer_forward_flops(b, n, d, f).total
    assert backward == cost.layer_backward_flops(b, n, d, f).total


@pytest.mark.parametrize("input_size,output_size", [(None, 10), (5, 1), (3, None)])
def test_model_flops_match_counter(input_size, output_size):
    b, n, d, h, f, layers = 2, 20, 32, 4, 64, 3
    config = EncoderConfig(
        d_model=d,
        n_heads=h,
        d_ff=f,
        n_layers=layers,
        attention="naive",
        vocab_size=None if input_size else 12,
        input_size=input_size,
        output_size=output_size,
    )
    model = Encoder(config)
    inputs = torch.randn(b, n, input_size) if input_size else torch.randint(0, 12, (b, n))
    out = model(inputs)
    assert counted(lambda: model(inputs)) == cost.model_forward_flops(b, n, d, f, layers, input_size, output_size).total
    assert (
        counted(lambda: out.sum().backward())
        == cost.model_backward_flops(b, n, d, f, layers, input_size, output_size).total
    )


def test_attention_share_grows_with_length():
    short, long = cost.layer_forward_flops(1, 128, 256, 1024), cost.layer_forward_flops(1, 4096, 256, 1024)
    assert short.attention_scores / short.total < long.attention_scores / long.total


def test_korthikanti_activation_formula():
    # With p=2 bytes, f=4d and dropout, Korthikanti et al.'s per-layer count is
    # s*b*h*(34 + 5*a*s/h); torch's layer adds a dropout mask between the feed-forward linears.
    b, n, d, h = 2, 256, 128, 8
    ours = cost.layer_activation_bytes(b, n, d, h, 4 * d, 2, dropout=True, materialises_scores=True)
    assert ours == n * b * d * (34 + 5 * h * n / d) + b * n * 4 * d


def test_flash_activation_memory_is_linear_in_length():
    grow = [cost.layer_activation_bytes(1, n, 64, 4, 256, 4, False, materialises_scores=False) for n in (1024, 2048)]
    assert grow[1] == 2 * grow[0]
    naive = [cost.layer_activation_bytes(1, n, 64, 4, 256, 4, False, materialises_scores=True) for n in (1024, 2048)]
    assert naive[1] > 2.5 * naive[0]
