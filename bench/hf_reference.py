"""Hugging Face Transformers' BertLayer as a reference layer implementation, built from a BertConfig of the
cell's shape (no download, no pretrained weights), in either attention mode: `eager` (explicit softmax) or
`sdpa`. transformers is an optional extra (`pip install -e '.[hf]'`), imported only when an HF cell is built.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from bench.cell import Shape

INSTALL = "pip install -e '.[hf]'"
BERT_PARAMETER_NAMES = {  # our EncoderLayer (BERT-configured) -> BertLayer, besides in_proj (split in three)
    "self_attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ff.linear1": "intermediate.dense",
    "ff.linear2": "output.dense",
    "norm2": "output.LayerNorm",
}


class HFUnavailable(Exception):
    """transformers is missing or its BertLayer is not the one this wrapper was written for: one line."""


def _bert_classes() -> tuple[type, type[nn.Module]]:
    """(BertConfig, BertLayer), or HFUnavailable saying why not."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # building from a config never needs the network: make sure
    try:
        import transformers
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertLayer
    except ImportError as err:
        raise HFUnavailable(f"transformers is not installed ({err}); install it with {INSTALL}") from None
    wanted = ("hidden_states", "attention_mask")
    got = list(inspect.signature(BertLayer.forward).parameters)[1:3]
    if got != list(wanted):
        raise HFUnavailable(
            f"transformers {transformers.__version__}: BertLayer.forward takes {got}, "
            f"not {list(wanted)}; this attnbench supports the 4.x/5.x signature"
        )
    return BertConfig, BertLayer


class HFBertLayer(nn.Module):
    """BertLayer on (batch, seq, d_model), with an optional additive attention bias (ALiBi) as its mask."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_implementation: str) -> None:
        super().__init__()
        bert_config, bert_layer = _bert_classes()
        config = bert_config(
            hidden_size=d_model,
            num_attention_heads=n_heads,
            intermediate_size=d_ff,
            hidden_act="gelu",
            layer_norm_eps=1e-12,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            attn_implementation=attn_implementation,
        )
        self.layer = bert_layer(config)
        self.attn_implementation = attn_implementation

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.layer(x, attention_mask)
        return out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple, 5.x the tensor

    def load_reference(self, reference: nn.Module) -> None:
        """Our BERT-configured EncoderLayer's weights in BERT's layout: in_proj split into query, key, value."""
        ours = reference.state_dict()
        theirs = dict(self.layer.named_parameters())
        d = ours["self_attn.in_proj.weight"].shape[1]
        with torch.no_grad():
            for i, name in enumerate(("query", "key", "value")):
                theirs[f"attention.self.{name}.weight"].copy_(ours["self_attn.in_proj.weight"][i * d : (i + 1) * d])
                theirs[f"attention.self.{name}.bias"].copy_(ours["self_attn.in_proj.bias"][i * d : (i + 1) * d])
            for ours_prefix, their_prefix in BERT_PARAMETER_NAMES.items():
                for leaf in ("weight", "bias"):
                    theirs[f"{their_prefix}.{leaf}"].copy_(ours[f"{ours_prefix}.{leaf}"])


def hf_bert(attn_implementation: str, error: type[Exception]) -> Callable[[Shape, int, float], nn.Module]:
    """A builder of HFBertLayer in this mode; what keeps it from being built is raised as `error`, one line."""

    def build(shape: Shape, heads: int, dropout: float) -> nn.Module:
        try:
            return HFBertLayer(shape.d_model, heads, shape.d_ff, dropout, attn_implementation)
        except HFUnavailable as err:
            raise error(str(err)) from None

    return build
