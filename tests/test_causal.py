"""Causal attention: ours equals torch's layer under a causal mask with every kernel, no position ever
sees a later one with any encoding, and ALiBi's bias under the causal mask is its original causal form."""

import pytest
import torch
from torch import nn

from model import Encoder, EncoderConfig, EncoderLayer
from model.config import POS_ENCODINGS
from model.positional import ALiBiPositionalEncoding, alibi_slopes

D, H, F, B, N = 32, 4, 64, 3, 12
KERNELS = ["naive", "blocked", "sdpa", "flash", "math", "auto"]


def forward_backward(layer: nn.Module, x: torch.Tensor, padding, torch_layer: bool):
    x = x.clone().requires_grad_(True)
    if torch_layer:
        causal = torch.ones(N, N, dtype=torch.bool).triu(1)  # True: not allowed to attend
        out = layer(x, src_mask=causal, src_key_padding_mask=padding, is_causal=True)
    else:
        out = layer(x, padding)
    torch.manual_seed(1)
    (out * torch.randn(out.shape)).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("with_padding", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
def test_causal_layer_equals_torch_with_a_causal_mask(kernel, with_padding):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, batch_first=True, norm_first=True)
    ours = EncoderLayer.from_torch(theirs, attention="naive")
    for module in ours.modules():  # the same layer, made causal, on the kernel under test
        if hasattr(module, "causal"):
            module.causal, module.kernel = True, kernel
    x = torch.randn(B, N, D)
    padding = None
    if with_padding:
        padding = torch.zeros(B, N, dtype=torch.bool)
        padding[0, -3:] = True
    out_o, dx_o = forward_backward(ours, x, padding, False)
    out_t, dx_t = forward_backward(theirs, x, padding, True)
    keep = ~padding[..., None] if padding is not None else torch.ones(B, N, 1, dtype=torch.bool)
    torch.testing.assert_close(out_o * keep, out_t * keep, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx_o, dx_t, atol=1e-5, rtol=1e-5)
    grads_t = dict(theirs.named_parameters())
    from model.layers import TORCH_PARAMETER_NAMES

    for name, param in ours.named_parameters():
        torch.testing.assert_close(
            param.grad, grads_t[TORCH_PARAMETER_NAMES[name]].grad, atol=1e-5, rtol=1e-5, msg=name
        )


@pytest.mark.parametrize("kernel", ["naive", "blocked", "sdpa", "flash", "math", "auto"])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_no_position_sees_a_later_one(pos, kernel):
    torch.manual_seed(0)
    model = Encoder(
        EncoderConfig(
            d_model=D, n_heads=H, d_ff=F, pos_encoding=pos, max_len=N, vocab_size=20, output_size=20, causal=True
        )
    ).eval()
    for layer in model.layers:
        layer.self_attn.kernel = kernel
    tokens = torch.randint(1, 20, (2, N))
    changed = tokens.clone()
    changed[:, 7:] = torch.randint(1, 20, (2, N - 7))
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # the changed positions do change: the test can fail


def test_alibi_under_the_causal_mask_is_its_original_causal_form():
    bias = ALiBiPositionalEncoding(H).attention_bias(N, torch.device("cpu"), torch.float32)
    i, j = torch.arange(N)[:, None], torch.arange(N)[None, :]
    original = -alibi_slopes(H)[:, None, None] * (i - j)  # Press et al.: -m (i - j) for keys j <= i
    below = (j <= i).expand(H, N, N)
    torch.testing.assert_close(bias.reshape(H, N, N)[below], original[below])
