"""Our EncoderLayer is the same computation as nn.TransformerEncoderLayer, kernel for kernel."""

import pytest
import torch
from torch import nn

from bench.observe import observe
from model import EncoderLayer
from model.layers import TORCH_PARAMETER_NAMES

D, H, F, B, N = 32, 4, 64, 3, 12

PARAM_PAIRS = TORCH_PARAMETER_NAMES  # ours -> torch's, for comparing weight gradients


def make_pair(norm_first: bool, activation: str, kernel: str, dtype=torch.float32):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(
        D, H, F, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = EncoderLayer.from_torch(theirs, attention=kernel)
    return ours.to(dtype), theirs.to(dtype)


def padding_mask(with_mask: bool) -> torch.Tensor | None:
    if not with_mask:
        return None
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[0, -4:] = True
    mask[2, -1:] = True
    return mask


def forward_backward(layer: nn.Module, x: torch.Tensor, mask, names: dict[str, str] | None):
    x = x.clone().requires_grad_(True)
    out = layer(x, src_key_padding_mask=mask) if isinstance(layer, nn.TransformerEncoderLayer) else layer(x, mask)
    torch.manual_seed(1)
    (out.float() * torch.randn(out.shape)).sum().backward()
    params = dict(layer.named_parameters())
    grads = {ours: params[theirs if names else ours].grad for ours, theirs in PARAM_PAIRS.items()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("kernel", ["naive", "sdpa", "auto"])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_matches_torch_float32(norm_first, activation, with_mask, kernel):
    ours, theirs = make_pair(norm_first, activation, kernel)
    x = torch.randn(B, N, D)
    mask = padding_mask(with_mask)
    out_o, dx_o, grads_o = forward_backward(ours, x, mask, None)
    out_t, dx_t, grads_t = forward_backward(theirs, x, mask, PARAM_PAIRS)
    torch.testing.assert_close(out_o, out_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx_o, dx_t, atol=1e-5, rtol=1e-5)
    for name in PARAM_PAIRS:
        torch.testing.assert_close(grads_o[name], grads_t[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("kernel", ["sdpa", "auto", "flash", "math", "blocked"])
def test_naive_and_sdpa_kernels_agree(with_mask, kernel):
    naive, _ = make_pair(True, "gelu", "naive")
    other, _ = make_pair(True, "gelu", "naive")
    other.self_attn.kernel = kernel
    x, mask = torch.randn(B, N, D), padding_mask(with_mask)
    for got, want in zip(forward_backward(other, x, mask, None)[:2], forward_backward(naive, x, mask, None)[:2]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    seen = observe(lambda: other(x, mask), "cpu").attention_kernel  # what ran, read from the profiler
    assert seen in (
        {"flash", "math", "naive", "blocked"}
        if kernel == "auto"
        else {"flash", "math"}
        if kernel == "sdpa"
        else {kernel}
    )


def test_eval_fast_path_matches():
    ours, theirs = make_pair(False, "relu", "sdpa")
    ours.eval(), theirs.eval()
    x = torch.randn(B, N, D)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.mark.parametrize("kernel", ["naive", "sdpa"])
def test_matches_torch_bfloat16(kernel):
    # bfloat16 keeps 8 significant bits, and how far a bf16 layer lands from float32 depends on the CPU's
    # kernels (its matmul accumulation, whether ReLU gates flip near zero). So the bound is derived from
    # torch's own layer on this machine, not tuned to one: ours may be off from the float32 reference by
    # at most 1.5x torch's own bf16 error, plus 0.5% (two bf16 roundings). A wrong kernel is off by O(100%).
    ours, theirs = make_pair(True, "relu", kernel, torch.bfloat16)
    reference, _ = make_pair(True, "relu", kernel)
    x = torch.randn(B, N, D, dtype=torch.bfloat16)
    out_o, dx_o, grads_o = forward_backward(ours, x, None, None)
    out_t, dx_t, grads_t = forward_backward(theirs, x, None, PARAM_PAIRS)
    out_r, dx_r, grads_r = forward_backward(reference, x.float(), None, None)

    def bound(torch_error: float) -> float:
        return 1.5 * torch_error + 0.005

    assert relative_error(out_o, out_r) <= bound(relative_error(out_t, out_r))
    assert relative_error(dx_o, dx_r) <= bound(relative_error(dx_t, dx_r))
    for name in PARAM_PAIRS:
        assert relative_error(grads_o[name], grads_r[name]) <= bound(relative_error(grads_t[name], grads_r[name])), name


def test_from_torch_rejects_sequence_first():
    layer = nn.TransformerEncoderLayer(D, H, F, batch_first=False)
    with pytest.raises(ValueError, match="batch_first"):
        EncoderLayer.from_torch(layer)
