"""Benchmark group 'calibration': the achievable matmul FLOP/s of this device and dtype, measured in
the same session as the grid, so every cell's MFU has a denominator from the same machine state."""

import statistics

from bench.benchmark_adapter import record_samples
from bench.calibration import calibration_size, matmul_seconds, peak_matmul_flops
from infra.record import PassTiming, as_record

GROUP = "calibration"


def test_calibration(benchmark, cell, grid, pass_index):
    benchmark.group = f"calibration {cell.device}"
    benchmark.params = {**cell.params(), "repeat": pass_index}
    host, dev, method = matmul_seconds(cell.device, cell.dtype, rounds=5)
    record_samples(benchmark, dev, method)
    size = calibration_size(cell.device, cell.dtype)
    timing = PassTiming(
        repeat=pass_index,
        device_samples_s=dev,
        host_samples_s=host,
        device_time_method=method,
        device_median_s=statistics.median(dev),
        host_median_s=statistics.median(host),
    )
    benchmark.extra_info.update(
        as_record(
            {
                **cell.params(),
                "repeats": grid.passes,
                "id": cell.id,
                "flops_analytic": 2 * size**3,
                "matmul_size": size,
                "peak_flops_per_s": peak_matmul_flops(cell.device, cell.dtype),
            },
            timing,
            {"flops_per_s": 2 * size**3 / timing.device_median_s},
        )
    )
