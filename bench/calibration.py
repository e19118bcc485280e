"""The device's achievable matmul FLOP/s in a dtype: the denominator of every cell's MFU."""

from __future__ import annotations

from functools import cache

import torch

from bench.timing import device_synchronizer, time_once

# Large enough that launch and synchronisation overheads vanish against the matmul itself.
CALIBRATION_SIZE = {"cpu": 2048, "cuda": 8192}


def calibration_size(device: str) -> int:
    return CALIBRATION_SIZE["cuda" if device.startswith("cuda") else "cpu"]


def matmul_operands(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    size = calibration_size(device)
    g = torch.Generator().manual_seed(0)
    return torch.randn(size, size, generator=g).to(device, dtype), torch.randn(size, size, generator=g).to(
        device, dtype
    )


@cache
def peak_matmul_flops(device: str, dtype_name: str, repeats: int = 5) -> float:
    """Best of a few square matmuls after a warm-up, measured once per session and reused."""
    a, b = matmul_operands(device, getattr(torch, dtype_name))
    sync = device_synchronizer(device)
    time_once(lambda: a @ b, sync)
    best = min(time_once(lambda: a @ b, sync) for _ in range(repeats))
    return 2 * a.shape[0] ** 3 / best
