"""A user attention with BERT's parameter layout (separate query, key, value), measured as it is: its
`load_reference` copies the float32 reference's weights (model.attention.MultiHeadAttention: a fused
in_proj and an out_proj) into its own layout, so attnbench can check it before it times it.

    python -m bench --profile quick --set attention.impl=sdpa,examples.qkv_attention:make
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QKVAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.query, self.key, self.value = (nn.Linear(d_model, d_model) for _ in range(3))
        self.output = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            proj(x).view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.output(y.transpose(1, 2).reshape(b, n, d))

    def load_reference(self, reference: nn.Module) -> None:
        """The reference's in_proj holds query, key and value stacked along its output rows."""
        with torch.no_grad():
            weights, biases = reference.in_proj.weight.chunk(3), reference.in_proj.bias.chunk(3)
            for proj, weight, bias in zip((self.query, self.key, self.value), weights, biases):
                proj.weight.copy_(weight)
                proj.bias.copy_(bias)
            self.output.load_state_dict(reference.out_proj.state_dict())


def make(d_model: int, n_heads: int, dropout: float) -> QKVAttention:
    return QKVAttention(d_model, n_heads, dropout)


class WithoutHook(QKVAttention):
    load_reference = None  # the same layout with no hook: refused with a line that names the hook


def make_without_hook(d_model: int, n_heads: int, dropout: float) -> WithoutHook:
    return WithoutHook(d_model, n_heads, dropout)
