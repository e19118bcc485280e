"""The encoder: input embedding, positional encoding, N layers, final norm, optional head."""

from __future__ import annotations

import torch
from torch import nn

from model.config import EncoderConfig
from model.layers import EncoderLayer
from model.positional import build_positional_encoding


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        if config.vocab_size is not None:
            self.embed: nn.Module = nn.Embedding(config.vocab_size, config.d_model)
        else:
            self.embed = nn.Linear(config.input_size, config.d_model)
        self.positional = build_positional_encoding(config)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                config.d_model,
                config.n_heads,
                config.d_ff,
                config.dropout,
                config.activation,
                config.norm_first,
                config.attention,
                config.layer_norm_eps,
                causal=config.causal,
                kv_heads=config.kv_heads,
                window=config.window,
            )
            for _ in range(config.n_layers)
        )
        # Pre-norm leaves the residual stream unnormalised; post-norm already ends in a LayerNorm.
        self.final_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()
        )
        self.head = nn.Linear(config.d_model, config.output_size) if config.output_size else None

    def _check_input(self, inputs: torch.Tensor) -> None:
        c = self.config
        if c.vocab_size is not None:
            if inputs.dim() != 2 or inputs.is_floating_point() or inputs.is_complex() or inputs.dtype == torch.bool:
                raise ValueError(
                    "token input must be an integer tensor of shape (batch, seq), "
                    f"got {inputs.dtype} {tuple(inputs.shape)}"
                )
        elif inputs.dim() != 3 or inputs.shape[-1] != c.input_size or not inputs.is_floating_point():
            raise ValueError(
                f"continuous input must be a floating tensor of shape (batch, seq, {c.input_size}), "
                f"got {inputs.dtype} {tuple(inputs.shape)}"
            )

    def forward(self, inputs: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(inputs)
        x = self.dropout(self.positional.embed(self.embed(inputs)))  # (B, n, d)
        for layer in self.layers:
            x = layer(x, key_padding_mask, self.positional)
        x = self.final_norm(x)
        return self.head(x) if self.head is not None else x

    @torch.no_grad()
    def attention_maps(self, inputs: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention probabilities of every layer, each (B, nh, n, n), computed in eval mode."""
        was_training = self.training
        self.eval()
        attns = [layer.self_attn for layer in self.layers]
        for attn in attns:
            attn.keep_weights = True
        try:
            self(inputs, key_padding_mask)
            return [attn.last_weights for attn in attns]
        finally:
            for attn in attns:
                attn.keep_weights = False
                attn.last_weights = None
            self.train(was_training)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
