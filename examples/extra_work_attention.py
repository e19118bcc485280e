"""Our SDPA attention doing a known fraction of extra work: the slowdown injected into the paired noise
experiment (`python -m bench.noise_floor --paired`), which commits EXTRA_FRACTION = 0.125 on a throwaway
revision and checks that `python -m bench ab` flags these cells and no others.

Each call also runs the attention on the first EXTRA_FRACTION of the sequence, forward (and backward when
training), so the extra is that fraction of the projections' work and its square of the scores'. The
output is unchanged: the extra result enters with weight 0.
"""

from __future__ import annotations

import math

import torch

from model.attention import MultiHeadAttention

EXTRA_FRACTION = 0.0


class ExtraWorkAttention(MultiHeadAttention):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        y = super().forward(x, *args, **kwargs)
        m = math.ceil(EXTRA_FRACTION * x.shape[1])
        return y + 0.0 * super().forward(x[:, :m]).mean() if m else y


def make(d_model: int, n_heads: int, dropout: float) -> ExtraWorkAttention:
    return ExtraWorkAttention(d_model, n_heads, dropout, kernel="sdpa")
