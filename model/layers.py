"""Feed-forward block and the encoder layer (pre- or post-LayerNorm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import NO_POSITIONS, MultiHeadAttention
from model.positional import PositionalEncoding

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
# Our EncoderLayer's parameter names -> nn.TransformerEncoderLayer's: the same weights, other names.
TORCH_PARAMETER_NAMES = {
    "self_attn.in_proj.weight": "self_attn.in_proj_weight",
    "self_attn.in_proj.bias": "self_attn.in_proj_bias",
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn.out_proj.bias": "self_attn.out_proj.bias",
    "ff.linear1.weight": "linear1.weight",
    "ff.linear1.bias": "linear1.bias",
    "ff.linear2.weight": "linear2.weight",
    "ff.linear2.bias": "linear2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}


# Our layer configured as BERT's (Hugging Face BertLayer): post-LayerNorm, exact GELU, LayerNorm eps 1e-12,
# and no dropout inside the feed-forward (BERT drops out after each sub-layer's output projection only).
BERT_STYLE = {"activation": "gelu", "norm_first": False, "layer_norm_eps": 1e-12, "ff_dropout": False}


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str, inner_dropout: bool = True) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not supported; choose one of {', '.join(_ACTIVATIONS)}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout) if inner_dropout else nn.Identity()  # torch's layer has it, BERT not
        self.activation = _ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Same computation, in the same order, as nn.TransformerEncoderLayer(batch_first=True); with
    `**BERT_STYLE`, as Hugging Face's BertLayer."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = True,
        attention: str = "sdpa",
        layer_norm_eps: float = 1e-5,
        ff_dropout: bool = True,
        causal: bool = False,
        kv_heads: int | None = None,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, dropout, attention, causal=causal, kv_heads=kv_heads, window=window
        )
        self.ff = FeedForward(d_model, d_ff, dropout, activation, inner_dropout=ff_dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        positional: PositionalEncoding = NO_POSITIONS,
    ) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model or not x.is_floating_point():
            raise ValueError(
                f"EncoderLayer expects a floating tensor of shape (batch, seq, {self.d_model}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), key_padding_mask, positional))
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, key_padding_mask, positional)))
        return self.norm2(x + self.dropout2(self.ff(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer, attention: str = "sdpa") -> EncoderLayer:
        """Build ours from a batch_first nn.TransformerEncoderLayer, with copies of its weights."""
        if not layer.self_attn.batch_first:
            raise ValueError("from_torch needs a TransformerEncoderLayer built with batch_first=True")
        activation = layer.activation
        name = {F.relu: "relu", F.gelu: "gelu"}.get(activation) or type(activation).__name__.lower()
        ours = cls(
            d_model=layer.linear1.in_features,
            n_heads=layer.self_attn.num_heads,
            d_ff=layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=name,
            norm_first=layer.norm_first,
            attention=attention,
            layer_norm_eps=layer.norm1.eps,
        )
        theirs = dict(layer.named_parameters())
        with torch.no_grad():
            for name, param in ours.named_parameters():
                param.copy_(theirs[TORCH_PARAMETER_NAMES[name]])
        ref = layer.linear1.weight
        return ours.to(device=ref.device, dtype=ref.dtype)
