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


def shape(n: int, device: str = "cpu", p: int = 4) -> cost.MemoryShape:
    return cost.MemoryShape(b=2, n=n, d=256, h=4, f=1024, p=p, device=device)


def test_fused_kernels_memory_is_linear_in_length_and_materialised_quadratic():
    for family in ("flash", "efficient", "cudnn"):
        grow = [cost.layer_training_bytes(shape(n, "cuda"), family, False) for n in (1024, 2048)]
        assert grow[1] == 2 * grow[0]
    naive = [cost.layer_training_bytes(shape(n), "materialised", False) for n in (1024, 2048)]
    assert naive[1] > 3 * naive[0]


def test_families_of_observed_labels():
    assert cost.attention_family("flash") == "flash"
    assert cost.attention_family("cudnn") == "cudnn"
    assert cost.attention_family("naive") == "materialised"
    assert cost.attention_family("math") == "math"
    assert cost.attention_family("fused:_transformer_encoder_layer_fwd/explicit softmax") == "fused_explicit"
    assert cost.attention_family("fused:_native_multi_head_attention/efficient") == "fused_sdpa"
    assert cost.attention_family("inductor:bmm+generated softmax") == "materialised"


def test_cudnn_workspace_is_float32_dq_dk_dv():
    m = shape(4096, "cuda", p=2)
    assert cost.kernel_workspace_bytes(m, "cudnn") == 3 * m.b * m.n * m.d * 4 + 2 * m.u


def test_the_memory_crossover_is_where_a_layers_saved_n2_bytes_equal_its_linear_ones():
    from model.cost import MemoryShape, layer_saved_bytes, saved_memory_crossover

    for d, h, f in ((256, 4, 1024), (256, 1, 1024), (1024, 16, 4096)):
        n = saved_memory_crossover(d, h, f)
        m = MemoryShape(2, round(n), d, h, f, 2, "cpu")
        linear = layer_saved_bytes(m, "flash")  # no score term: the linear activations alone
        assert layer_saved_bytes(m, "materialised") - linear == pytest.approx(linear, rel=1e-3)
    # Korthikanti et al.'s 34 + 5·a·s/h: equal parts at s = 6.8·d_head
    from model.cost import KORTHIKANTI_CROSSOVER_D_HEADS

    assert 5 * 16 * (KORTHIKANTI_CROSSOVER_D_HEADS * 64) / 1024 == pytest.approx(34)
