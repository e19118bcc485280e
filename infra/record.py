"""The declared record of one pass of one cell, as bench writes it into benchmarks.json's `extra_info` and
analysis reads it back, and the run's own measured facts. Writers fill these dataclasses through `record()`;
`analysis/load.py` reads by their fields; each derived figure is defined once, here: a cell's typical time
(`typical_time`), its FLOPs (`step_flops`), and the metrics of a time (`derive`). docs/RECORD.md is generated
from these dataclasses (python -m infra.record_doc).

A record is `{**cell params, **CellFacts, **PassTiming}` plus a group's own extras (ddp: world, ranks...); the
`Derived` metrics are computed once, by analysis, from the passes pooled (before schema 6 bench also wrote them
per pass, and analysis ignored those). The run's matmul peak per device and dtype (`MatmulPeak`) is a fact of the
run, in machine_info.attnbench.matmul_peak, and so is its memory bandwidth by working-set size (`BandwidthPoint`,
machine_info.attnbench.bandwidth). Words: a cell's `mode` is forward, eval or train; a `pass` is one of the
interleaved repetitions of the grid (`pass_index`, and `passes` of them).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

HOST_BOUND = 1.5  # host latency over device time above which a cell is marked host-bound
# The record's version, in every run's machine_info.attnbench. 1: runs from before it was written (no
# schema_version; some lack the registry's marks); 2: every grid cell carries `baseline` and `user`;
# 3: the matmul peak is a fact of the run (machine_info.attnbench.matmul_peak), not a group of cells, and
# every cell carries the auto kernel's fields (empty where it ran none); 4: a cell of a declared comparison
# is timed in ABBA blocks beside its partner (partner_id, partner_samples_s; bench/pairs.py); 5: the facts
# (check, FLOPs, kernels, memory, compilation, traces) are measured in an untimed pass of their own before the
# timed passes, so every timed pass is alike (the compilation fields, the same keys as before, are facts now);
# 6: a cell records the real tokens of one step (`tokens_per_step`: a variable-length batch without its padding)
# and no Derived metrics, which analysis derives once from the pooled passes; each pass records how busy other
# processes kept the machine while it was timed (`others_cpu_share`); 7: the record is unchanged, but the pass is
# the unit of every interval: a paired ratio's interval is over its passes' paired estimates, not over its blocks
# pooled across passes (blocks of one pass share its state: analysis.stats.pass_pairs_interval), and the grid
# times enough passes for it. analysis reads a run before 7 as it was planned, and says its intervals pooled blocks.
# analysis.load.upgrade turns an older run into the current shape.
SCHEMA_VERSION = 7
SCHEMA_WITH_PASS_UNIT = 7  # the first schema whose paired intervals are over passes
SCHEMA_WITH_FACTS_PASS = 5  # the first schema whose timed passes follow an untimed pass of facts

# How a device time was taken: the only words a record's device_time_method may hold.
DEVICE_TIME_METHODS = {
    "cpu_clock": "host clock around each call (on a CPU the device time is the host latency)",
    "cuda_graph": "CUDA events around a replay of a CUDA graph of the rounds, per round",
    "cuda_events": "CUDA events around each call",
    "cuda_sync": "host clock around each call and torch.cuda.synchronize (data-parallel ranks)",
}


def pass_median(samples: Sequence[float]) -> float:
    """One pass's time: the median of its rounds."""
    return float(statistics.median(samples))


def typical_time(passes: Sequence[Sequence[float]]) -> float:
    """A cell's time over its passes: the geometric mean of the pass medians (one pass: its median). The
    centre of its interval (analysis.stats.median_interval) and the figure every table reports."""
    return math.exp(statistics.fmean(math.log(pass_median(p)) for p in passes))


def pass_trace_name(trace_name: str, pass_index: int) -> str:
    """The trace folder of one pass, where every pass is traced (the data-parallel launches); the grid traces
    its first pass only, into `trace_name` itself."""
    return f"{trace_name}-r{pass_index}"


def step_flops(flops_analytic: float | None, flops_counted: float | None) -> float | None:
    """The FLOPs of one step: the cost model's, where it has a formula for the kernel that ran, else what
    torch's FlopCounterMode counted."""
    return flops_analytic if flops_analytic is not None else flops_counted


@dataclass(frozen=True)
class CellFacts:
    """What a cell is, whichever pass: measured in an untimed pass before the timed ones (before schema 5: in the
    first timed pass, before its timing), and kept in every pass's record."""

    check_relative_error: float  # against the float32 reference
    check_tolerance: float  # the relative error allowed in this dtype
    check_passed: bool  # always true in a record: a cell that fails its check is not timed
    flops_counted: int | None  # torch.utils.flop_counter on the eager step
    flops_counted_with_added_formulas: bool  # whether attnbench's own FLOP formulas were needed
    flops_analytic: int | None  # model/cost.py's formula for the kernel observed (None: no formula)
    attention_kernel: str  # observed by the profiler (model/kernels.py's labels)
    attention_ops: list[str]  # the aten ops the profiler saw the attention run
    attention_device_kernels: list[str]  # GPU kernels the attention ops launched
    attention_family: str  # the memory family of the kernel observed
    peak_mem_bytes: int  # one step's peak above what was allocated when it began (bench/memory.py)
    predicted_mem_bytes: int | None  # model/cost.py's peak for the family observed (None: a user's module)
    auto_kernel: str | None = None  # the auto kernel's choice in this cell (None: no auto kernel)
    auto_source: str | None = None  # where that choice came from: table, cache or fallback
    first_call_s: float | None = None  # compiled cells: the first call (compile or cache load)
    compile_s: float | None = None  # what compilation added over a warm call (cudagraph: the capture time)
    graph_breaks: int | None = None  # dynamo's graph breaks
    graph_break_reasons: list[str] | None = None  # the first three
    inductor_cache_hits: int | None = None  # graphs served from inductor's on-disk cache
    # a kernel the model compiles itself (flex): its compilations during the facts pass's first call, whose
    # latency is first_call_s (0: a cell of the same shape and mask compiled it before); None for other kernels
    kernel_compilations: int | None = None
    sequence_lengths: list[int] | None = None  # a variable-length batch's lengths (None: every sequence seq_len)
    tokens_per_step: int | None = None  # the real tokens of one step: batch x seq_len, or sum(sequence_lengths)

    @property
    def flops(self) -> float | None:
        return step_flops(self.flops_analytic, self.flops_counted)


@dataclass(frozen=True)
class MatmulPeak:
    """The run's achievable matmul rate on one device and dtype: the denominator of every cell's MFU. Measured
    once per run (per shard), on square matmuls large enough that launch overheads vanish."""

    device: str
    dtype: str
    matmul_size: int  # the square matmul's side: the largest that takes at most 0.5 s here
    flops: int  # of one matmul
    device_samples_s: list[float]  # one per matmul
    host_samples_s: list[float]  # one per matmul
    device_time_method: str  # DEVICE_TIME_METHODS
    peak_flops_per_s: float  # over the fastest matmul: what every cell's mfu divides by
    median_flops_per_s: float  # over the median matmul
    low_flops_per_s: float  # the median's 95% interval (order statistics), in FLOP/s
    high_flops_per_s: float
    shard: str | None = None  # the shard that measured it, in a merged run


@dataclass(frozen=True)
class BandwidthPoint:
    """The run's memory bandwidth at one working-set size on one device: a STREAM triad (a = b + s·c) over three
    float32 arrays, timed like the matmul peak; the bandwidth roofs of the roofline are these. Bytes are STREAM's
    count (two arrays read, one written; the write's allocate read is not counted)."""

    device: str
    working_set_bytes: int  # the three arrays together
    level: str  # the smallest cache level (or memory) that holds them: infra.machine.memory_level
    bytes_per_triad: int
    triads_per_sample: int  # enough triads that one sample is far above the clock's resolution
    samples_s: list[float]  # seconds of one triad, one per sample
    median_bytes_per_s: float
    low_bytes_per_s: float  # the median's 95% interval (order statistics)
    high_bytes_per_s: float
    shard: str | None = None  # the shard that measured it, in a merged run


@dataclass(frozen=True)
class PassTiming:
    """What one pass measured; the same cell's other passes differ in these."""

    pass_index: int  # this timed pass's index (0 is the first)
    device_samples_s: list[float]  # one per timed round
    host_samples_s: list[float]  # one per timed round: the host latency around the call
    host_median_s: float  # the median of host_samples_s
    device_median_s: float  # the median of device_samples_s
    device_time_method: str  # how the device time was taken (DEVICE_TIME_METHODS)
    device_time_note: str | None = None  # why CUDA graphs were not used, where they were tried
    rounds: int | None = None  # timed rounds in this pass
    # a kernel the model compiles itself (flex): its compilations during this pass, where dynamo's guards failed
    # and it compiled again (0 expected); None for other kernels
    kernel_recompilations: int | None = None
    common_mode_samples_s: list[float] | None = None  # the reference matmul after each round (bench ab, CPU)
    partner_id: str | None = None  # the cell timed beside this one in ABBA blocks (bench/pairs.py), if any
    partner_samples_s: list[float] | None = None  # the partner's samples, aligned with host_samples_s
    # other processes' CPU time over the machine's cores' while this pass was timed (0: none; infra/machine_load.py)
    others_cpu_share: float | None = None


@dataclass(frozen=True)
class Derived:
    """Metrics computed from a cell's time over its pooled passes: by analysis alone (analysis.load)."""

    host_over_device: float  # host latency over device time
    host_bound: bool  # host_over_device above host_bound_threshold: launch overhead dominates
    host_bound_threshold: float  # HOST_BOUND when it was written
    flops_per_s: float  # step_flops over the device time
    mfu: float | None  # flops_per_s over the run's matmul peak (None: no peak measured)
    tokens_per_s: float | None  # the real tokens of one step (tokens_per_step) over the device time


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


# Keys that differ between passes of one cell: analysis pools them, everything else is the cell's (a run before
# schema 6 wrote Derived per pass: dropped on loading, derived again from the pooled passes).
PER_PASS = frozenset(f.name for f in fields(PassTiming)) | frozenset(f.name for f in fields(Derived))


def record(params: dict, facts: CellFacts | dict, timing: PassTiming) -> dict:
    """One pass of one cell as one flat `extra_info` dict: the one builder every writer uses (the grid's
    cells, the data-parallel launches). `facts` is a CellFacts, or a group's own facts as a dict."""
    if timing.device_time_method not in DEVICE_TIME_METHODS:
        raise ValueError(
            f"device_time_method {timing.device_time_method!r} is not one of {sorted(DEVICE_TIME_METHODS)}"
        )
    out = dict(params)
    for part in (facts, timing):
        out.update(part if isinstance(part, dict) else asdict(part))
    return out
