"""Runs one grid cell in one pass. Its untimed pass (FACTS_PASS) checks it, counts its FLOPs, observes its
kernels and memory, compiles it and traces it; each timed pass only times it, so the timed passes are alike
(before schema 5, the first timed pass did all of that before its timing and ran slower).

Nothing is timed before the float32 check passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
import torch

from bench.bandwidth import bandwidth_probe
from bench.benchmark_adapter import mark_untimed, record_samples
from bench.cell import FACTS_PASS
from bench.flops import count_flops
from bench.grid import Cell, Grid
from bench.implementations import ImplementationError, auto_lookup
from bench.isolation import (
    LIMIT_FACTOR,
    LIMIT_FLOOR_S,
    CellTimeLimit,
    background,
    clear_instrumentation,
    leftovers,
    restore,
    snapshot,
    stop_is_users,
    time_limit,
)
from bench.matmul_peak import peak_matmul_flops
from bench.memory import cuda_peak_bytes
from bench.observe import NONE_OBSERVED, observe
from bench.profiling import capture_trace
from bench.timing import (
    blocks_for_budget,
    capture_cuda_graph,
    device_synchronizer,
    device_time,
    host_latency,
    host_latency_with_reference,
    paired_host_latency,
    reference_workload,
    rounds_for_budget,
    time_once,
)
from bench.workloads import TOLERANCE, WORKLOADS, Workload, uses_auto, uses_flex
from infra import signals
from infra.machine_load import others_share, read_clock
from infra.record import CellFacts, PassTiming, pass_median, record
from model import flex
from model.kernels import FLEX_UNFUSED, attention_family

T = TypeVar("T")


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"


def _facts(cell: Cell, workload: Workload, sync, known: dict) -> CellFacts:
    """The deterministic part of a cell: numerical check, FLOPs, kernels that ran, peak memory (and `known`: the
    auto kernel's choice, the compilation)."""
    error = workload.check()
    if not error <= TOLERANCE[cell.dtype]:  # also catches NaN
        raise ImplementationError(
            f"numerical check failed at {cell.id}: {cell.impl} is off from the float32 "
            f"reference by relative error {error:.3g} (allowed {TOLERANCE[cell.dtype]:g})"
        )
    counted, added = count_flops(workload.eager_step) if workload.countable else (None, [])
    with signals.deferred():  # the profiler's parse: an interrupt inside it could not be reported
        seen = observe(workload.step, cell.device)
    if seen.device_kernel_count == 0:  # seen after CUDA-graph captures on some CUDA/CUPTI versions
        raise ImplementationError(
            f"the profiler saw no GPU kernel in a step of {cell.id}: its observed kernels "
            "and traces would be wrong, so it is not measured"
        )
    memory = seen.cpu_peak_bytes
    if memory is None:  # on CUDA the caching allocator counts exactly
        memory = cuda_peak_bytes(workload.step, torch.device(cell.device))
    sync()
    if seen.attention_kernel == FLEX_UNFUSED:  # never timed as the kernel it names
        raise ImplementationError(
            f"flex ran its unfused eager path at {cell.id} (no compiled graph around it: dynamo's recompile "
            "limit, or a graph break), so it is not measured"
        )
    if cell.entry.user and counted == 0 and seen.attention_kernel == NONE_OBSERVED:
        raise ImplementationError(
            f"no attention ran in a step of {cell.impl} at {cell.id}: the FLOP counter counted 0 and the profiler "
            "saw no attention op, so there is nothing to measure (a module that returns stored outputs)"
        )
    family = attention_family(seen.attention_kernel)
    return CellFacts(
        check_relative_error=error,
        check_tolerance=TOLERANCE[cell.dtype],
        check_passed=True,
        flops_counted=counted,
        flops_counted_with_added_formulas=added,
        flops_analytic=workload.flops(seen.attention_kernel),
        attention_kernel=seen.attention_kernel,
        attention_ops=seen.attention_ops,
        attention_device_kernels=seen.device_kernels,
        attention_family=family,
        peak_mem_bytes=memory,
        predicted_mem_bytes=workload.predicted_bytes(family),
        sequence_lengths=workload.lengths,
        tokens_per_step=workload.tokens,
        **known,
    )


def _auto_choice(cell: Cell, workload: Workload, sync) -> dict:
    """For an auto cell: one eager step first, so that a machine with no measured choice tunes here, outside
    every measurement (a compile, the FLOP counter, the profiler), then where the choice came from."""
    if not uses_auto(cell):
        return {}
    workload.eager_step()
    sync()
    kernel, source = auto_lookup(cell)
    return {"auto_kernel": kernel, "auto_source": source}


WARM_CALLS = 3  # after a compile, the warm calls whose fastest is what the first call is compared with


def _first_call(cell: Cell, workload: Workload, sync, what: str) -> float:
    """The step's first call, which compiles `what` (inductor, flex): its latency; a compile failure is this
    cell's outcome, in one line, and the grid goes on."""
    try:
        return time_once(workload.step, sync)
    except Exception as err:  # noqa: BLE001 - see the docstring
        raise ImplementationError(f"compile failed ({what}) at {cell.id}: {_one_line(err)}") from None


def _first_and_warm(cell: Cell, workload: Workload, sync, what: str) -> dict:
    """The first call's latency and what compiling `what` added to it over the fastest of WARM_CALLS warm calls."""
    first_call_s = _first_call(cell, workload, sync, what)
    warm = min(time_once(workload.step, sync) for _ in range(WARM_CALLS))
    return {"first_call_s": first_call_s, "compile_s": first_call_s - warm}


def _compile(cell: Cell, workload: Workload, sync) -> dict:
    """Compile the step by calling it once: its latency, what it added over a warm call, and the graph breaks
    dynamo recorded."""
    from torch._dynamo.utils import counters

    counters.clear()
    timed = _first_and_warm(cell, workload, sync, cell.compile)
    breaks = counters["graph_break"]
    return {
        **timed,
        "graph_breaks": sum(breaks.values()),
        "graph_break_reasons": [str(reason)[:160] for reason in list(breaks)[:3]],
        # inductor serves a graph it compiled before (this run or an earlier one) from its on-disk
        # cache: then the first call measures loading it, not compiling it
        "inductor_cache_hits": counters["inductor"]["fxgraph_cache_hit"],
    }


def _capture(cell: Cell, workload: Workload, sync) -> tuple[Callable[[], object], dict]:
    """The step as a CUDA graph's replay, and what capturing it took."""
    start = time.perf_counter()
    replay = capture_cuda_graph(workload.step, torch.device(cell.device)).replay
    capture_s = time.perf_counter() - start
    first_call_s = time_once(replay, sync)
    return replay, {
        "first_call_s": first_call_s,
        "compile_s": capture_s,
        "graph_breaks": 0,
        "graph_break_reasons": [],
        "inductor_cache_hits": 0,
    }


def _kernel_compile(cell: Cell, workload: Workload, sync) -> dict:
    """A kernel the model compiles itself (flex): its first call's latency, what it added over a warm call, and
    how many compilations it took (the recompile limit is raised, so more than one is dynamo recompiling)."""
    before = flex.compilations()
    timed = _first_and_warm(cell, workload, sync, "flex")
    return {**timed, "kernel_compilations": flex.compilations() - before}


def measure_facts(cell: Cell, grid: Grid, trace_dir: Path | None) -> CellFacts:
    """The cell's untimed pass: the auto kernel's choice, its compilation, its facts, and its trace."""
    device, dtype = cell.device, getattr(torch, cell.dtype)
    sync = device_synchronizer(device)
    workload = WORKLOADS[cell.group](cell, grid.shapes[cell.shape], device, dtype)
    known = _auto_choice(cell, workload, sync)
    if uses_flex(cell):
        known |= _kernel_compile(cell, workload, sync)
    if cell.compile == "inductor":
        known |= _compile(cell, workload, sync)
    elif cell.compile == "cudagraph":
        known |= _capture(cell, workload, sync)[1]
    facts = _facts(cell, workload, sync, known)
    if trace_dir is not None:
        with signals.deferred():  # the profiler's parse: an interrupt inside it could not be reported
            capture_trace(workload.step, sync, trace_dir, cell.trace_name, device)
    return facts


def measure(cell: Cell, grid: Grid, pass_index: int, partner: Cell | None = None) -> PassTiming:
    """One timed pass of the cell (beside its `partner`'s, where it has one)."""
    device, dtype = cell.device, getattr(torch, cell.dtype)
    shape, t = grid.shapes[cell.shape], grid.timing_for(cell)
    sync = device_synchronizer(device)
    compilations = flex.compilations()
    workload = WORKLOADS[cell.group](cell, shape, device, dtype)
    step = workload.step
    if cell.compile == "cudagraph":
        step = _capture(cell, workload, sync)[0]
    elif cell.compile == "inductor":  # this pass's module compiles again (from inductor's cache): not timed
        _first_call(cell, workload, sync, cell.compile)
    references = partner_samples = None
    clock = read_clock()  # how busy other processes keep the machine while this pass is timed
    if partner is not None:  # the declared comparison, timed in ABBA blocks with its partner (bench/pairs.py)
        other = WORKLOADS[partner.group](partner, shape, device, dtype).step
        one_pair_s = time_once(step, sync) + time_once(other, sync)
        held = _held_bytes(device)
        blocks = blocks_for_budget(one_pair_s, t.budget_s, t.min_rounds, t.max_rounds)
        host, partner_samples = paired_host_latency(step, other, sync, blocks, t.warmup_rounds)
        rounds = len(host)
    else:
        one_call_s = time_once(step, sync)
        held = _held_bytes(device)
        rounds = rounds_for_budget(one_call_s, t.budget_s, t.min_rounds, t.max_rounds)
        if t.common_mode and device == "cpu":  # the machine's own drift, round by round, for bench ab
            host, references = host_latency_with_reference(step, sync, rounds, t.warmup_rounds, reference_workload())
        else:
            host = host_latency(step, sync, rounds, t.warmup_rounds)
    dev = device_time(step, device, rounds, t.warmup_rounds, host, try_graph=cell.compile == "eager")
    others = others_share(clock)
    if cell.entry.user:  # user code is checked again after its timed calls: it cannot fake a number
        _checked_after_timing(cell, workload, sync, pass_median(host), _held_bytes(device) - held)
    timing = PassTiming(
        pass_index=pass_index,
        device_samples_s=dev.samples_s,
        host_samples_s=host,
        host_median_s=pass_median(host),
        device_median_s=pass_median(dev.samples_s),
        device_time_method=dev.method,
        device_time_note=dev.note,
        rounds=rounds,
        kernel_recompilations=flex.compilations() - compilations if uses_flex(cell) else None,
        common_mode_samples_s=references,
        partner_id=partner.id if partner is not None else None,
        partner_samples_s=partner_samples,
        others_cpu_share=others,
    )
    return timing


# A user module whose calls on new data take this many times as long as its timed calls (and at least
# FAKE_FLOOR_S more) was timed returning stored outputs: an honest module runs about as fast on any input.
# The floor is the jitter of one short synchronised call, not a cell's cost: a memoiser answered in 18 us
# against 447 us on a fresh input (bf16, n=64, here), which a floor of 0.5 ms let through.
FAKE_FACTOR = 3.0
FAKE_FLOOR_S = 5e-5
# Memory a user cell still holds after its timed calls, beyond what it held after its first call: a leak.
LEAK_BYTES = 256 * 2**20


def _held_bytes(device: str) -> int:
    """Memory the process holds now: the caching allocator's on CUDA, the resident set on a CPU."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated(torch.device(device))
    return psutil.Process().memory_info().rss


def _checked_after_timing(cell: Cell, workload: Workload, sync, timed_s: float, grown: int) -> None:
    """A user cell after its timed calls: no memory kept call after call, its outputs still right on every input
    the calls cycled through and on a fresh one, and as fast on data it has not seen as it was timed."""
    if grown > LEAK_BYTES:
        raise ImplementationError(
            f"{cell.impl} holds {grown / 2**20:.0f} MiB more after its timed calls than after its first at "
            f"{cell.id} (more than {LEAK_BYTES // 2**20} MiB): memory kept call after call is a leak, so its "
            "times are not counted"
        )
    error = (workload.check_after or workload.check)()
    if not error <= TOLERANCE[cell.dtype]:
        raise ImplementationError(
            f"{cell.impl}'s output changed after its check at {cell.id}: after the timed "
            f"calls it is off from the float32 reference by relative error {error:.3g} "
            f"(allowed {TOLERANCE[cell.dtype]:g}), so its times are not counted"
        )
    if workload.fresh_step is not None:
        fresh_s = min(time_once(workload.fresh_step(), sync) for _ in range(3))
        if fresh_s > FAKE_FACTOR * timed_s and fresh_s - timed_s > FAKE_FLOOR_S:
            raise ImplementationError(
                f"{cell.impl} took {timed_s * 1e3:.3g} ms a call as timed but {fresh_s * 1e3:.3g} ms on an input "
                f"it had not seen (x{fresh_s / timed_s:.1f}) at {cell.id}: a module that returns stored outputs "
                "is not measured"
            )


@dataclass(frozen=True)
class Ended:
    """How a cell ended without measuring (in its facts pass, or a timed one): its later passes end the same way."""

    outcome: str  # "failed" or "skipped"
    reason: str

    def again(self) -> None:
        pytest.skip(self.reason) if self.outcome == "skipped" else pytest.fail(self.reason, pytrace=False)


def _guarded(cell: Cell, time_limit_s: float | None, work: Callable[[], T]) -> tuple[Ended | None, T | None]:
    """`work` (one pass of the cell), with how the cell ended where it did not measure: its own error, out of
    memory, a user cell past its time limit or trying to stop the process."""
    user = cell.entry.user
    try:
        with time_limit(time_limit_s if user else None):
            return None, work()
    except ImplementationError as err:
        return Ended("failed", str(err)), None
    except CellTimeLimit:
        return Ended(
            "failed",
            f"{cell.impl} ran past its time limit of {time_limit_s:g} s for one pass at "
            f"{cell.id} ({LIMIT_FACTOR:g}x the cost model's prediction, at least "
            f"{LIMIT_FLOOR_S:g} s, unless --cell-time-limit-s SECONDS sets it; 0: none)",
        ), None
    except Exception as err:
        if is_out_of_memory(err):
            if cell.device.startswith("cuda"):
                torch.cuda.empty_cache()
            return Ended("skipped", f"oom: {str(err).splitlines()[0][:200]}"), None
        if user:  # a user implementation's own error: one line naming it, the grid goes on
            return Ended("failed", f"{cell.impl} raised {_one_line(err)}"), None
        raise
    except (SystemExit, KeyboardInterrupt) as err:
        if user and stop_is_users(err):  # the module's own attempt to stop the process, not the user's Ctrl-C
            return Ended(
                "failed",
                f"{cell.impl} raised {type(err).__name__}({err}) at {cell.id}: user code may "
                "not stop the run, so its cell fails and the grid goes on",
            ), None
        raise


def _isolated(cell: Cell, time_limit_s: float | None, work: Callable[[], T]) -> T:
    """`work` guarded, with torch's process-wide settings restored after it and any instrumentation it left on
    stopped, and a user cell's child processes ended; how the cell ended, where it did not measure, is raised as
    its pytest outcome."""
    saved = snapshot()
    started = background() if cell.entry.user else None
    try:
        ended, measured = _guarded(cell, time_limit_s, work)
    finally:
        changed = restore(saved)  # before anything else runs, whatever happened
        left_running = clear_instrumentation()
        left_behind = leftovers(started) if started is not None else []
    if left_behind:  # busy children or threads would slow every later cell: named, ended where they can be
        ended = Ended(
            "failed",
            f"{cell.impl} left {', '.join(left_behind)} running at {cell.id}; processes were ended, and the cell is "
            "not counted",
        )
    if left_running and ended is None:  # measured, yet left a mode or the profiler on: its numbers are suspect
        ended = Ended(
            "failed",
            f"{cell.impl} left {', '.join(left_running)} running at {cell.id}; stopped, and the cell is not counted",
        )
    if changed:
        who = f"{cell.impl}" + (" (a user implementation)" if cell.entry.user else "")
        ended = Ended(
            "failed",
            f"{who} changed torch's process-wide settings at {cell.id} ({'; '.join(changed)}); "
            "they were restored, and the cell is not counted",
        )
    if ended is not None:
        raise _EndedError(ended)
    return measured


class _EndedError(Exception):
    def __init__(self, ended: Ended) -> None:
        super().__init__(ended.reason)
        self.ended = ended


def run_cell(
    benchmark,
    cell: Cell,
    grid: Grid,
    pass_index: int = 0,
    trace_dir: Path | None = None,
    first_pass: dict[str, CellFacts | Ended] | None = None,
    time_limit_s: float | None = None,
    partner: Cell | None = None,
) -> None:
    """One pass of one cell: its untimed pass of facts (pass_index FACTS_PASS) or a timed pass into the
    benchmark fixture. `first_pass` holds, by cell id, what its facts pass found: its facts, or how it Ended
    (failed or skipped, with the reason); a timed pass whose facts pass did not run (deselected) measures them
    first. A user cell's pass stops at `time_limit_s`. torch's process-wide settings are restored after each;
    a change fails the cell."""
    first_pass = {} if first_pass is None else first_pass
    benchmark.group = f"{cell.group} {cell.device} {cell.dtype} {cell.shape} n={cell.seq_len}"
    benchmark.params = {**cell.params(), "pass_index": pass_index}  # plain values: JSON and --group-by=param:NAME
    if pass_index == FACTS_PASS:
        mark_untimed(benchmark)  # no entry in the JSON: every record is a timed pass
    facts = first_pass.get(cell.id)
    try:
        if facts is None:
            facts = first_pass[cell.id] = _isolated(cell, time_limit_s, lambda: measure_facts(cell, grid, trace_dir))
        if isinstance(facts, Ended):
            facts.again()
        if pass_index == FACTS_PASS:
            return
        timing = _isolated(cell, time_limit_s, lambda: measure(cell, grid, pass_index, partner))
    except _EndedError as err:
        first_pass[cell.id] = err.ended
        err.ended.again()
    if benchmark.disabled:
        return
    record_samples(benchmark, timing.device_samples_s, timing.device_time_method)
    shape, entry = grid.shapes[cell.shape], cell.entry
    peak = peak_matmul_flops(cell.device, cell.dtype)
    bandwidth_probe(cell.device)  # the roofs' bandwidth, once per run and device (a fact of the run)
    params = {
        **cell.params(),
        "passes": grid.passes,
        "id": cell.id,
        "trace_name": cell.trace_name if trace_dir is not None else None,
        "batch": shape.batch,
        "d_model": shape.d_model,
        "d_ff": shape.d_ff,
        # from the registry, so analysis never parses names for them
        "user": entry.user,
        "baseline": entry.baseline,
        "reference": entry.reference,  # the layer it was checked against
        "peak_flops_per_s": peak,
    }
    benchmark.extra_info.update(record(params, facts, timing))
