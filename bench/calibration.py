"""The device's achievable matmul FLOP/s in a dtype: the denominator of every cell's MFU."""

from __future__ import annotations

from functools import cache

import torch

from bench.timing import device_synchronizer, device_time, time_once

# Large enough that launch and synchronisation overheads vanish against the matmul itself.
CALIBRATION_SIZE = {"cpu": 2048, "cuda": 8192}


def calibration_size(device: str) -> int:
    return CALIBRATION_SIZE["cuda" if device.startswith("cuda") else "cpu"]


def matmul_operands(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    size = calibration_size(device)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    return a.to(device, dtype), b.to(device, dtype)


def matmul_seconds(device: str, dtype_name: str, rounds: int) -> tuple[list[float], list[float], str]:
    """Host and device seconds of `rounds` square matmuls after a warm-up, and how the device was timed."""
    a, b = matmul_operands(device, getattr(torch, dtype_name))
    sync = device_synchronizer(device)
    time_once(lambda: a @ b, sync)
    host = [time_once(lambda: a @ b, sync) for _ in range(rounds)]
    dev = device_time(lambda: a @ b, device, rounds, 1, host, try_graph=False)
    return host, dev.samples_s, dev.method


@cache
def peak_matmul_flops(device: str, dtype_name: str, rounds: int = 5) -> float:
    """Best device time of a few square matmuls, measured once per session and reused."""
    size = calibration_size(device)
    return 2 * size**3 / min(matmul_seconds(device, dtype_name, rounds)[1])
