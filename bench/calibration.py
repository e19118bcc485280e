"""The device's achievable matmul FLOP/s in a dtype: the denominator of every cell's MFU."""

from __future__ import annotations

from functools import cache

import torch

from bench.timing import device_synchronizer, device_time, time_once

# Large enough that launch and synchronisation overheads vanish against the matmul itself.
CALIBRATION_SIZE = {"cpu": 2048, "cuda": 8192}
CPU_SIZES = (2048, 1024, 512)
MAX_MATMUL_S = 0.5  # one calibration matmul on a CPU: an emulated dtype (bf16 without avx512_bf16) gets a smaller one


@cache
def calibration_size(device: str, dtype_name: str = "float32") -> int:
    """The square matmul's size: on CUDA fixed; on a CPU the largest that takes at most MAX_MATMUL_S here, from
    a 256-sized probe (2048 where the dtype runs in hardware; emulated bf16 runs about 1 GFLOP/s, where 2048
    would take 40 s a matmul)."""
    if device.startswith("cuda"):
        return CALIBRATION_SIZE["cuda"]
    a = torch.randn(256, 256).to(getattr(torch, dtype_name))
    a @ a
    rate = 2 * 256**3 / max(time_once(lambda: a @ a, lambda: None), 1e-9)
    return next((size for size in CPU_SIZES if 2 * size**3 / rate <= MAX_MATMUL_S), CPU_SIZES[-1])


def matmul_operands(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    size = calibration_size(device, str(dtype).removeprefix("torch."))
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
    size = calibration_size(device, dtype_name)
    return 2 * size**3 / min(matmul_seconds(device, dtype_name, rounds)[1])
