"""Our SDPA attention made a known fraction slower, in time: the in-run pairs' injected slowdown
(`--profile pairs`, docs/PAIRS.md). `same` is the A/A: the same attention under a user's name.

The forward busy-waits SLOWDOWN times its own duration. In training, two identity functions bracket the
module: the output's runs first in the backward and the input's last, so the time between them is the
module's backward, and the input's busy-waits SLOWDOWN times that too. So the cell's step is SLOWDOWN
slower whatever the length, the head count or how the work splits between forward and backward (work-based
injections are not: an extra matmul is a different fraction of the time at each length).
"""

from __future__ import annotations

import time

import torch

from model.attention import MultiHeadAttention

SLOWDOWN = 0.09


def spin(seconds: float) -> None:
    """Busy-wait (a sleep would free the core, which real work does not)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _Mark(torch.autograd.Function):
    """Identity; its backward records when it ran, and the input's waits SLOWDOWN times the span since the
    output's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clock: dict, is_output: bool) -> torch.Tensor:
        ctx.clock, ctx.is_output = clock, is_output
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        now = time.perf_counter()
        if ctx.is_output:
            ctx.clock["backward_from"] = now
        else:
            spin(SLOWDOWN * (now - ctx.clock.get("backward_from", now)))
        return grad, None, None


class SlowedAttention(MultiHeadAttention):
    slowdown = True

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not self.slowdown:
            return super().forward(x, *args, **kwargs)
        track = torch.is_grad_enabled() and x.requires_grad
        clock: dict = {}
        if track:
            x = _Mark.apply(x, clock, False)
        start = time.perf_counter()
        y = super().forward(x, *args, **kwargs)
        spin(SLOWDOWN * (time.perf_counter() - start))
        return _Mark.apply(y, clock, True) if track else y


def nine_percent_slower(d_model: int, n_heads: int, dropout: float) -> SlowedAttention:
    return SlowedAttention(d_model, n_heads, dropout, kernel="sdpa")


def same(d_model: int, n_heads: int, dropout: float) -> SlowedAttention:
    """The A/A: SDPA attention under a user's name, through the same subclass with the slowdown off."""
    module = SlowedAttention(d_model, n_heads, dropout, kernel="sdpa")
    module.slowdown = False
    return module
