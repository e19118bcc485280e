"""Query-chunked attention: exact softmax attention computed a block of queries at a time, so no more
than a (chunk x n) block of scores per head exists at once. In training each block is recomputed in
backward (torch.utils.checkpoint) instead of kept, so memory grows linearly in n at the price of
running each block's forward twice. A memory-saving order for explicit softmax, without a fused kernel.

    pytest bench/ --profile quick --set attention.impl=sdpa,examples.chunked_attention:make
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from model.attention import NO_POSITIONS, MultiHeadAttention
from model.cost import attention_forward_flops, attention_score_flops
from model.positional import PositionalEncoding


class ChunkedAttention(MultiHeadAttention):
    """Same parameters as MultiHeadAttention (so attnbench loads the reference weights into it)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, chunk: int = 128) -> None:
        super().__init__(d_model, n_heads, dropout, kernel="naive")
        self.chunk = chunk

    def _block(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, nh, chunk, n)
        if mask is not None:
            scores = scores + mask
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout if self.training else 0.0)
        return weights @ v  # (B, nh, chunk, hs)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        positional: PositionalEncoding = NO_POSITIONS,
    ) -> torch.Tensor:
        B, n, d = x.shape
        q, k, v = self.in_proj(x).view(B, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = positional.rotate(q, k)
        bias = positional.attention_bias(n, x.device, x.dtype)
        recompute = self.training and torch.is_grad_enabled()
        blocks = []
        for start in range(0, n, self.chunk):
            rows = slice(start, start + self.chunk)
            mask = None if bias is None else bias[..., rows, :]
            if recompute:
                blocks.append(checkpoint(self._block, q[:, :, rows], k, v, mask, use_reentrant=False))
            else:
                blocks.append(self._block(q[:, :, rows], k, v, mask))
        y = torch.cat(blocks, dim=2)  # (B, nh, n, hs)
        return self.out_proj(y.transpose(1, 2).reshape(B, n, d))

    def flops(self, b: int, n: int, train: bool = False) -> int:
        """Matmul FLOPs of one step: projections and the score matmuls, forward; in training, backward
        costs two of each, and every block's QK^T runs once more: checkpoint's recomputation stops as soon
        as the tensors backward needs are back, which is before PV."""
        d = self.in_proj.in_features
        forward = attention_forward_flops(b, n, d).total
        return 3 * forward + attention_score_flops(b, n, d) // 2 if train else forward


def make(d_model: int, n_heads: int, dropout: float) -> ChunkedAttention:
    return ChunkedAttention(d_model, n_heads, dropout)
