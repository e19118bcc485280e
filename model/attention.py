"""Multi-head self-attention with a fused QKV projection and two interchangeable kernels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend

from model.positional import NoPositionalEncoding, PositionalEncoding

NO_POSITIONS = NoPositionalEncoding()  # stateless, so one instance serves every layer


def additive_mask(
    batch: int,
    n: int,
    key_padding_mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Fold a (B, n) key-padding mask (True = ignore) and a (nh, n, n) or (B, nh, n, n) bias into
    one additive float mask that both kernels accept; None when there is neither."""
    if key_padding_mask is None and bias is None:
        return None
    # A 4-D mask keeps the CPU flash kernel eligible; a 3-D one sends SDPA to the math backend.
    mask = bias.reshape(-1, *bias.shape[-3:]) if bias is not None else torch.zeros((), dtype=dtype)
    if key_padding_mask is not None:
        if key_padding_mask.shape != (batch, n) or key_padding_mask.dtype != torch.bool:
            raise ValueError(
                f"key_padding_mask must be a bool tensor of shape ({batch}, {n}), "
                f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )
        padding = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
        padding = padding.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]  # (B,1,1,n)
        mask = mask.to(padding.device) + padding
    return mask.to(dtype)


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T / sqrt(d) + mask) V, materialising the (B, nh, n, n) probabilities."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, n, n)
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    return F.dropout(weights, p=dropout_p) @ v, weights  # (B, nh, n, hs)


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float) -> str:
    """The backend F.scaled_dot_product_attention dispatches to for these inputs (flash, math, ...)."""
    choice = torch._fused_sdp_choice(q, k, v, mask, dropout_p, False)
    return SDPBackend(choice).name.lower()


class MultiHeadAttention(nn.Module):
    """Parameter layout mirrors nn.MultiheadAttention (in_proj, out_proj) so weights copy across."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        kernel: str = "sdpa",
    ) -> None:
        super().__init__()
        if kernel not in ("naive", "sdpa"):
            raise ValueError(f"attention kernel {kernel!r} is not supported; choose naive or sdpa")
        self.n_heads, self.dropout, self.kernel = n_heads, dropout, kernel
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.last_backend: str | None = None  # which kernel actually ran in the last forward
        self.keep_weights = False  # set to record attention probabilities (naive kernel only)
        self.last_weights: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        positional: PositionalEncoding = NO_POSITIONS,
    ) -> torch.Tensor:
        B, n, d = x.shape
        q, k, v = (
            self.in_proj(x).view(B, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        )  # (B, nh, n, hs)
        q, k = positional.rotate(q, k)
        bias = positional.attention_bias(n, x.device, x.dtype)
        mask = additive_mask(B, n, key_padding_mask, bias, x.dtype)
        dropout_p = self.dropout if self.training else 0.0
        if self.kernel == "naive" or self.keep_weights:
            y, weights = naive_attention(q, k, v, mask, dropout_p)
            self.last_backend = "naive"
            self.last_weights = weights.detach() if self.keep_weights else None
        else:
            self.last_backend = sdpa_backend(q, k, v, mask, dropout_p)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return self.out_proj(y.transpose(1, 2).reshape(B, n, d))  # (B, n, d)
