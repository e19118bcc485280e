"""How fast this CPU does each kind of work a cell is made of, measured in a few seconds before a run.

A CPU without native bf16 (no avx512_bf16 or AMX) emulates bf16 matmuls, and the damage differs by
kernel: an explicit softmax in bf16 runs about 100x slower than with native support, SDPA's flash kernel
about 10x. A nominal FLOP rate per dtype cannot predict that; three small probes per dtype and pass can:
projections (a Linear), the explicit softmax (QK^T, softmax, PV) and SDPA's fused kernel.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import host_latency, rounds_for_budget, time_once

KINDS = ("linear", "explicit", "fused")
PROBE = {"b": 2, "n": 1024, "d": 256, "h": 4}
PROBE_BUDGET_S = 0.3  # per probe, after its warm-up call (up to PROBE_CALLS timed calls)
PROBE_CALLS = 5


@dataclass(frozen=True)
class Pace:
    """Seconds per forward FLOP, by (dtype, kind, train): a training step's time over its forward's FLOPs,
    so backward's extra work (and an emulated backward's extra slowness) is inside the number."""

    seconds_per_flop: dict[tuple[str, str, bool], float]

    def seconds(self, dtype: str, kind: str, train: bool, forward_flops: int) -> float:
        return forward_flops * self.seconds_per_flop[(dtype, kind, train)]


def _median_seconds(step: Callable[[], None], budget_s: float) -> float:
    """After a warm-up call (first-call allocations and kernel selection stay out), as many timed calls as
    fit the budget, one to PROBE_CALLS."""
    no_sync = lambda: None  # noqa: E731 - CPU ops return when done
    rounds = rounds_for_budget(time_once(step, no_sync), budget_s, 1, PROBE_CALLS)
    return statistics.median(host_latency(step, no_sync, rounds, warmup=0))


def _probes(dtype: torch.dtype, train: bool) -> dict[str, tuple[Callable[[], None], int]]:
    """Each kind's step and its forward FLOPs, on the probe shape."""
    b, n, d, h = PROBE["b"], PROBE["n"], PROBE["d"], PROBE["h"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, n, d, generator=g).to(dtype).requires_grad_(train)
    linear = nn.Linear(d, 4 * d).to(dtype)
    q, k, v = (torch.randn(b, h, n, d // h, generator=g).to(dtype).requires_grad_(train) for _ in range(3))

    def explicit() -> torch.Tensor:
        return ((q * (d // h) ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v

    def run(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.set_grad_enabled(train):
                out = forward()
                if train:
                    out.sum().backward()

        return step

    return {
        "linear": (run(lambda: linear(x)), 2 * b * n * d * 4 * d),
        "explicit": (run(explicit), 4 * b * n * n * d),
        "fused": (run(lambda: F.scaled_dot_product_attention(q, k, v)), 4 * b * n * n * d),
    }


def measure_pace(dtypes: list[str], budget_s: float = PROBE_BUDGET_S) -> Pace:
    """Every kind in every dtype, eval and train, on this CPU (a few seconds; more where bf16 is emulated)."""
    rates = {}
    for dtype in dtypes:
        for train in (False, True):
            for kind, (step, flops) in _probes(getattr(torch, dtype), train).items():
                rates[(dtype, kind, train)] = _median_seconds(step, budget_s) / flops
    return Pace(rates)
