"""Benchmark group 'calibration': the achievable matmul FLOP/s of this device and dtype, measured in
the same session as the grid, so every cell's MFU has a denominator from the same machine state."""

import statistics

from bench.benchmark_adapter import record_samples
from bench.calibration import calibration_size, matmul_seconds, peak_matmul_flops

GROUP = "calibration"


def test_calibration(benchmark, cell, grid, repeat):
    benchmark.group = f"calibration {cell.device}"
    benchmark.params = {**cell.params(), "repeat": repeat}
    host, dev, method = matmul_seconds(cell.device, cell.dtype, rounds=5)
    record_samples(benchmark, dev, method)
    flops = 2 * calibration_size(cell.device, cell.dtype) ** 3
    benchmark.extra_info.update({
        **cell.params(), "repeat": repeat, "repeats": grid.repeats, "id": cell.id,
        "flops_analytic": flops, "host_samples_s": host, "device_samples_s": dev, "device_time_method": method,
        "host_median_s": statistics.median(host), "device_median_s": statistics.median(dev),
        "flops_per_s": flops / statistics.median(dev), "peak_flops_per_s": peak_matmul_flops(cell.device, cell.dtype),
        "matmul_size": calibration_size(cell.device, cell.dtype),
    })  # fmt: skip
