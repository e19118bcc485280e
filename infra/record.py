"""The declared record of one pass of one cell, as bench writes it into benchmarks.json's `extra_info` and
analysis reads it back. Writers fill these dataclasses; `analysis/load.py` reads by their fields; the
derived metrics are defined once, here, for a pass (bench) and for pooled passes (analysis).

A record is `{**cell params, **CellFacts (first pass), **PassTiming, **Derived}` plus a group's own extras
(calibration: matmul_size; ddp: world, ranks...). Keys keep the names every committed run has: the pass
index is stored as `repeat`, the number of passes as `repeats`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

HOST_BOUND = 1.5  # host latency over device time above which a cell is marked host-bound
# The record's version, in every run's machine_info.attnbench. 1: runs from before it was written (no
# schema_version; some lack the registry's marks); 2: every grid cell carries `baseline` and `user`.
# analysis.load.upgrade turns an older run into the current shape.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class PassTiming:
    """What one pass measured; the same cell's other passes differ in these."""

    repeat: int  # this pass's index (0 is the first)
    device_samples_s: list[float]
    host_samples_s: list[float]
    host_median_s: float
    device_median_s: float
    device_time_method: str
    device_time_note: str | None = None
    rounds: int | None = None
    first_call_s: float | None = None  # compiled cells: the first call (compile or cache load)
    compile_s: float | None = None
    graph_breaks: int | None = None
    graph_break_reasons: list[str] | None = None
    inductor_cache_hits: int | None = None
    common_mode_samples_s: list[float] | None = None  # the reference matmul after each round (bench ab, CPU)


@dataclass(frozen=True)
class Derived:
    """Metrics computed from a time: per pass in the record, over pooled passes in analysis."""

    host_over_device: float
    host_bound: bool
    host_bound_threshold: float
    flops_per_s: float
    mfu: float | None
    tokens_per_s: float | None


def derive(
    flops: float,
    device_s: float,
    host_s: float,
    peak_flops_per_s: float | None,
    tokens: int | None,
    threshold: float = HOST_BOUND,
) -> Derived:
    return Derived(
        host_over_device=host_s / device_s,
        host_bound=host_s > threshold * device_s,
        host_bound_threshold=threshold,
        flops_per_s=flops / device_s,
        mfu=flops / device_s / peak_flops_per_s if peak_flops_per_s else None,
        tokens_per_s=tokens / device_s if tokens is not None else None,
    )


# Keys that differ between passes of one cell: analysis pools them, everything else is the cell's.
PER_PASS = frozenset(f.name for f in fields(PassTiming)) | frozenset(f.name for f in fields(Derived))


def as_record(*parts: PassTiming | Derived | dict) -> dict:
    """The parts as one flat `extra_info` dict (dataclasses by their fields)."""
    out: dict = {}
    for part in parts:
        out.update(part if isinstance(part, dict) else asdict(part))
    return out
