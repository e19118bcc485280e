"""Profiler traces of selected cells, readable by TensorBoard's PyTorch profiler plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

WARMUP_STEPS, ACTIVE_STEPS = 1, 2  # few steps keep each trace to a few MB


def capture_trace(step: Callable[[], object], sync: Callable[[], None], out: Path, name: str, device: str) -> None:
    """Record ACTIVE_STEPS steps of one cell with memory and shapes (GEMMs are told apart by their weight's
    shape) into out/<name>/ as a gzipped *.pt.trace.json that `tensorboard --logdir out` shows."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=WARMUP_STEPS, active=ACTIVE_STEPS, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out / name), worker_name=name, use_gzip=True),
        profile_memory=True,
        record_shapes=True,
    ) as prof:
        for _ in range(WARMUP_STEPS + ACTIVE_STEPS):
            step()
            sync()
            prof.step()
