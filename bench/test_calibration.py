"""Benchmark group 'calibration': the achievable matmul FLOP/s of this device and dtype, measured in
the same session as the grid, so every cell's MFU has a denominator from the same machine state."""

import torch

from bench.calibration import matmul_operands, peak_matmul_flops
from bench.timing import device_synchronizer, synchronized

GROUP = "calibration"


def test_calibration(benchmark, cell):
    a, b = matmul_operands(cell.device, getattr(torch, cell.dtype))
    call = synchronized(lambda: a @ b, device_synchronizer(cell.device))
    benchmark.group = f"calibration {cell.device}"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
    flops = 2 * a.shape[0] ** 3
    benchmark.extra_info.update({
        **cell.params(), "flops_analytic": flops, "flops_per_s": flops / benchmark.stats.stats.median,
        "peak_flops_per_s": peak_matmul_flops(cell.device, cell.dtype), "matmul_size": a.shape[0],
    })  # fmt: skip
