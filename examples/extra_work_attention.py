"""Our SDPA attention doing a known fraction of extra work: the slowdown injected into the paired noise
experiment (`python -m bench.noise_floor --paired`), which commits EXTRA_FRACTION = 0.06 on a throwaway
revision and checks that `python -m bench ab` flags these cells and no others.

The extra is one matmul of the input with a fixed (d, k) matrix, k chosen so that it costs EXTRA_FRACTION
of the attention's work: of its forward FLOPs (projections and scores) in a forward pass; in a training
step, where the attention costs about 3x its forward (the backward twice) and the extra 2x (its backward
needs only the input's gradient), 1.5x as wide. One more op, not another module call, so the slowdown is
a fraction of the work at every length, not an overhead. The output is unchanged: the extra result
enters with weight 0.
"""

from __future__ import annotations

import torch

from model.attention import MultiHeadAttention

EXTRA_FRACTION = 0.0


class ExtraWorkAttention(MultiHeadAttention):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        y = super().forward(x, *args, **kwargs)
        if not EXTRA_FRACTION:
            return y
        _, n, d = x.shape
        forward_flops = 8 * n * d * d + 4 * n * n * d  # per example: the four projections, QK^T and PV
        training = torch.is_grad_enabled() and x.requires_grad
        width = max(1, round(EXTRA_FRACTION * forward_flops * (1.5 if training else 1.0) / (2 * n * d)))
        extra = torch.ones(d, width, dtype=x.dtype, device=x.device) / d
        return y + 0.0 * (x @ extra).mean()


def make(d_model: int, n_heads: int, dropout: float) -> ExtraWorkAttention:
    return ExtraWorkAttention(d_model, n_heads, dropout, kernel="sdpa")
