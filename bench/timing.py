"""Two times for every cell.

- Host latency: one call followed by a synchronisation, per round: what a user's loop waits for.
- Device time: the device's own work. On CPU the ops run synchronously, so it is the host latency.
  On CUDA: replay of a CUDA graph of the step, timed by CUDA events, where the step can be captured
  (no launch gaps, so a host-bound step still shows the kernels' time); otherwise CUDA events around
  back-to-back calls. Either way the L2 cache is flushed before each call, outside the timed span.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.injected_slowdown import stretched

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MiB), as triton's do_bench


@dataclass
class DeviceTimes:
    samples_s: list[float]
    method: str  # cpu_clock, cuda_graph or cuda_events
    note: str | None = None  # why the graph path was not used, where it was tried


def device_synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None  # CPU ops return when done


def rounds_for_budget(one_call_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """How many timed rounds fit the cell's budget, at least min_rounds for a median worth the name."""
    if one_call_s <= 0:
        return max_rounds
    return max(min_rounds, min(max_rounds, int(budget_s / one_call_s)))


def time_once(call: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds of one call, synchronised before and after so queued work is neither counted nor missed."""
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start


def host_latency(step: Callable[[], object], sync: Callable[[], None], rounds: int, warmup: int) -> list[float]:
    """Seconds of `rounds` synchronised calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        time_once(step, sync)
    return [time_once(step, sync) for _ in range(rounds)]


def paired_host_latency(
    step: Callable[[], object], partner: Callable[[], object], sync: Callable[[], None], blocks: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Two steps timed in ABBA blocks (step, partner, partner, step), after `warmup` untimed calls of each:
    (step's samples, partner's), two per block each, in order. A drift that is linear over a block cancels in
    the block's ratio (infra.stats.block_log_ratios)."""
    for _ in range(warmup):
        time_once(step, sync)
        time_once(partner, sync)
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(blocks):
        a1 = time_once(step, sync)
        b1 = time_once(partner, sync)
        b2 = time_once(partner, sync)
        a2 = time_once(step, sync)
        mine += [a1, a2]
        theirs += [b1, b2]
    return mine, theirs


# A pair's ratio is estimated in each pass (the trimmed mean of that pass's blocks) and its interval is over the
# passes (analysis.stats.pass_pairs_interval): blocks only need to cancel the drift inside a pass, so a cell
# whose call is long needs few of them; its precision comes from the passes (schema 7; issue 39).
MIN_BLOCKS = 2


def blocks_for_budget(one_pair_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """ABBA blocks that fit the cell's budget (both sides share it): at least MIN_BLOCKS (and min_rounds
    samples a side), at most max_rounds samples a side."""
    most = max(1, max_rounds // 2)
    return rounds_for_budget(2 * one_pair_s, budget_s, min(most, max(MIN_BLOCKS, -(-min_rounds // 2))), most)


REFERENCE_SIZE = 384  # a float32 matmul of about a millisecond on a laptop core


def reference_workload() -> Callable[[], object]:
    """A fixed workload no code under test runs: a float32 matmul of fixed size and data. Timed beside each
    round of a cell, it moves with the machine (another tenant, clocks), not with the code."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(REFERENCE_SIZE, REFERENCE_SIZE, generator=generator) for _ in range(2))
    return lambda: torch.mm(a, b)


def host_latency_with_reference(
    step: Callable[[], object], sync: Callable[[], None], rounds: int, warmup: int, reference: Callable[[], object]
) -> tuple[list[float], list[float]]:
    """host_latency, each round followed by one timed call of `reference`: (step samples, reference samples)."""
    step = stretched(step)  # itself, unless the gate's validation injected a slowdown (bench.injected_slowdown)
    for _ in range(warmup):
        time_once(step, sync)
        time_once(reference, sync)
    samples, references = [], []
    for _ in range(rounds):
        samples.append(time_once(step, sync))
        references.append(time_once(reference, sync))
    return samples, references


def capture_cuda_graph(step: Callable[[], object], device: torch.device, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """The step as a CUDA graph: warmed up on a side stream (as torch.cuda.graphs requires), then captured."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    torch.cuda.synchronize(device)
    return graph


def first_line(err: BaseException) -> str:
    """The error's first line, or its type where the message is empty."""
    return (str(err).splitlines() or [type(err).__name__])[0][:160]


def l2_flush_buffer(device: torch.device) -> torch.Tensor:
    return torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)


def cuda_event_times(
    fn: Callable[[], object], device: torch.device, rounds: int, warmup: int, flush: torch.Tensor
) -> list[float]:
    """CUDA-event seconds of `rounds` back-to-back calls, each after an L2 flush outside its events."""
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    torch.cuda.synchronize(device)
    for start, end in zip(starts, ends):
        flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) / 1e3 for start, end in zip(starts, ends)]


def device_time(
    step: Callable[[], object], device: str, rounds: int, warmup: int, host_samples: list[float], try_graph: bool = True
) -> DeviceTimes:
    """The device's time per step (see the module docstring); on CPU the host samples themselves."""
    if not device.startswith("cuda"):
        return DeviceTimes(list(host_samples), "cpu_clock")
    dev = torch.device(device)
    # allocated before any capture and outside the try: running out of memory here is the cell's outcome,
    # not a reason to call the step "not capturable"
    flush = l2_flush_buffer(dev)
    note = None
    if try_graph:
        try:
            graph = capture_cuda_graph(step, dev)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to events, with its reason
            torch.cuda.synchronize(dev)
            note = f"not capturable as a CUDA graph: {first_line(err)}"
        else:  # only the capture is tried: an error while timing the replays is the cell's own
            return DeviceTimes(cuda_event_times(graph.replay, dev, rounds, warmup, flush), "cuda_graph")
    return DeviceTimes(cuda_event_times(step, dev, rounds, warmup, flush), "cuda_events", note)
