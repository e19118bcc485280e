"""Positional encodings behind one interface.

Each encoding may act in three places; the defaults do nothing:
- ``embed(x)``: absolute encodings add a (n, d) table to the token embeddings;
- ``rotate(q, k)``: RoPE rotates queries and keys by position;
- ``attention_bias(n, ...)``: ALiBi (symmetric or directional) adds a (h, n, n) distance penalty to the scores;
  ``score_mod()`` is the same penalty as a FlexAttention score_mod, computed inside the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from model.config import POS_ENCODINGS, EncoderConfig


class PositionalEncoding(nn.Module):
    def embed(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, n, d)
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attention_bias(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        return None

    def score_mod(self) -> Callable | None:
        """The bias as a FlexAttention score_mod(score, b, h, q, kv), computed inside the kernel: no (h, n, n)
        tensor. None where the encoding adds no bias."""
        return None


class NoPositionalEncoding(PositionalEncoding):
    """Attention alone is permutation-equivariant: the model sees a bag of tokens."""


def sinusoidal_table(n: int, d: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Vaswani et al. 2017, 3.5)."""
    position = torch.arange(n, dtype=torch.float64).unsqueeze(1)  # (n, 1)
    inv_freq = torch.pow(10000.0, -torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    table = torch.zeros(n, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d // 2])
    return table.float()


class SinusoidalPositionalEncoding(PositionalEncoding):
    """Fixed table, defined for any length, so it can be evaluated past max_len."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.table.shape[0]:
            self.table = sinusoidal_table(n, self.d_model).to(self.table.device)
        return x + self.table[:n].to(x.dtype)


class LearnedPositionalEncoding(PositionalEncoding):
    """A trained (max_len, d) table: positions it never saw in training stay at their init."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=1.0)  # the scale of the token embeddings

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        n, max_len = x.shape[1], self.table.num_embeddings
        if n > max_len:
            raise ValueError(
                f"sequence length {n} exceeds max_len={max_len} of the learned positional table; "
                f"use inputs of at most {max_len} positions or a larger max_len"
            )
        return x + self.table.weight[:n].to(x.dtype)


class RotaryPositionalEncoding(PositionalEncoding):
    """RoPE (Su et al. 2021), rotate-half layout: q_m . k_n depends on m - n only."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim, self.base = head_dim, base

    def _cos_sin(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Frequencies in float32 whatever the model's dtype: rounded to bfloat16 (8 bits), the angle at
        # position 2048 would be off by radians.
        exponents = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32) / self.head_dim
        inv_freq = 1.0 / self.base**exponents
        t = torch.arange(n, device=device, dtype=torch.float32)
        angles = torch.outer(t, inv_freq)  # (n, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (n, hs)
        return angles.cos(), angles.sin()

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self._cos_sin(q.shape[-2], q.device)  # q: (B, nh, n, hs)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        return q * cos + self._rotate_half(q) * sin, k * cos + self._rotate_half(k) * sin


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes of Press et al. 2022: a geometric sequence starting at 2^(-8/n); for a head count
    that is not a power of two, the slopes of the next lower power of two, then every other slope of
    twice that power (the paper's reference implementation)."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest != n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBiPositionalEncoding(PositionalEncoding):
    """Symmetric ALiBi for a bidirectional encoder: score(i, j) -= slope_h * |i - j|."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def attention_bias(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pos = torch.arange(n, device=device)
        distance = (pos[None, :] - pos[:, None]).abs().float()  # (n, n)
        return (-self.slopes.to(device)[:, None, None] * distance).to(dtype)  # (nh, n, n)

    def score_mod(self) -> Callable:
        slopes = self.slopes

        def alibi(score, b, h, q, kv):
            return score - slopes[h] * (q - kv).abs()

        return alibi


class DirectionalALiBiPositionalEncoding(PositionalEncoding):
    """ALiBi with separate slopes for keys before and after the query, so a bidirectional encoder can
    tell left from right: score(i, j) -= before_h * (i - j) for j < i, and after_h * (j - i) for j > i.
    Head h pairs the paper's slope h with slope H-1-h on the other side: the first heads decay fast to
    the left and slowly to the right, the last heads the reverse, and the middle ones nearly evenly."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        slopes = alibi_slopes(n_heads)
        self.register_buffer("before", slopes, persistent=False)
        self.register_buffer("after", slopes.flip(0), persistent=False)

    def attention_bias(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pos = torch.arange(n, device=device)
        offset = (pos[None, :] - pos[:, None]).float()  # (n, n): key minus query
        left, right = (-offset).clamp_min(0), offset.clamp_min(0)
        before, after = self.before.to(device)[:, None, None], self.after.to(device)[:, None, None]
        return (-(before * left + after * right)).to(dtype)  # (nh, n, n)

    def score_mod(self) -> Callable:
        before, after = self.before, self.after

        def directional_alibi(score, b, h, q, kv):
            offset = kv - q  # key minus query
            return score - torch.where(offset < 0, before[h] * -offset, after[h] * offset)

        return directional_alibi


def positional_encoding(name: str, d_model: int, n_heads: int, max_len: int) -> PositionalEncoding:
    """The encoding called `name` (one of config.POS_ENCODINGS) for this width, head count and length."""
    if name == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if name == "learned":
        return LearnedPositionalEncoding(d_model, max_len)
    if name == "rope":
        return RotaryPositionalEncoding(d_model // n_heads)
    if name == "alibi":
        return ALiBiPositionalEncoding(n_heads)
    if name == "alibi_directional":
        return DirectionalALiBiPositionalEncoding(n_heads)
    if name == "none":
        return NoPositionalEncoding()
    raise ValueError(f"pos_encoding={name!r} is not supported; choose one of {', '.join(POS_ENCODINGS)}")


def build_positional_encoding(config: EncoderConfig) -> PositionalEncoding:
    return positional_encoding(config.pos_encoding, config.d_model, config.n_heads, config.max_len)
