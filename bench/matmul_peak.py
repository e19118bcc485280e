"""The device's achievable matmul FLOP/s in a dtype, a fact of the run: the denominator of every cell's MFU.
Measured once per device and dtype, when the first cell needs it, and written into the run's machine facts."""

from __future__ import annotations

from functools import cache

import torch

from bench.timing import device_synchronizer, device_time, time_once
from infra.record import MatmulPeak, pass_median
from infra.stats import median_bounds

# Large enough that launch and synchronisation overheads vanish against the matmul itself.
CALIBRATION_SIZE = {"cpu": 2048, "cuda": 8192}
CPU_SIZES = (2048, 1024, 512)
MATMUL_ROUNDS = 9  # matmuls timed per device and dtype: enough for a 96% interval on their median
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


_measured: dict[tuple[str, str], MatmulPeak] = {}


def _remember(peak: MatmulPeak) -> MatmulPeak:
    _measured[(peak.device, peak.dtype)] = peak
    return peak


@cache
def matmul_peak(device: str, dtype_name: str, rounds: int = MATMUL_ROUNDS) -> MatmulPeak:
    """The run's matmul peak on this device and dtype, measured once per run (the first cell that needs it)
    and recorded in the run's machine facts."""
    size = calibration_size(device, dtype_name)
    host, dev, method = matmul_seconds(device, dtype_name, rounds)
    flops = 2 * size**3
    slow, fast = median_bounds(dev)
    return _remember(
        MatmulPeak(
            device=device,
            dtype=dtype_name,
            matmul_size=size,
            flops=flops,
            device_samples_s=dev,
            host_samples_s=host,
            device_time_method=method,
            peak_flops_per_s=flops / min(dev),
            median_flops_per_s=flops / pass_median(dev),
            low_flops_per_s=flops / fast,
            high_flops_per_s=flops / slow,
        )
    )


def peak_matmul_flops(device: str, dtype_name: str) -> float:
    """Best device time of the run's square matmuls in this dtype: every cell's MFU denominator."""
    return matmul_peak(device, dtype_name).peak_flops_per_s


def measured_peaks() -> list[MatmulPeak]:
    """Every matmul peak this run measured, for its machine facts."""
    return list(_measured.values())
