"""Measure which attention kernel is fastest here, and write the `auto` kernel's table.

    python -m bench.autotune --device cpu        # regenerates this machine's entry in results/kernel_table.json

For each dtype, length, pass (eval, train) and dropout, every kernel that can run (naive, and SDPA's
backends forced one at a time) is timed on the grid's small shape in interleaved passes; the fastest
median device time wins. The entry carries the machine's facts and every kernel's time, so the choice
can be checked. Other machines' entries in the table are kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.grid import load_grid
from bench.kernel_table import TABLE_FILE
from bench.observe import observe
from bench.timing import device_synchronizer, device_time, host_latency, rounds_for_budget, time_once
from infra.files import OutputError, atomic_write_text, writable_file
from infra.machine import machine_facts, machine_slug
from model.attention import MultiHeadAttention
from model.kernel_choice import Choice, entry_applies, read_table, tuning_facts
from model.kernels import CANDIDATES

LENGTHS = {"cpu": (128, 256, 512, 1024, 2048), "cuda": (512, 1024, 2048, 4096, 8192)}


def attention_step(kernel: str, n: int, dtype: torch.dtype, device: str, train: bool, dropout: float):
    shape = load_grid("quick").shapes["small"]
    torch.manual_seed(0)
    module = MultiHeadAttention(shape.d_model, 4, dropout, kernel).to(device, dtype).train(train)
    x = torch.randn(shape.batch, n, shape.d_model, device=device, dtype=dtype, requires_grad=train)
    grad = torch.randn_like(x)

    def step() -> None:
        if train:
            x.grad = None
            module(x).backward(grad)
        else:
            with torch.no_grad():
                module(x)

    return step


def runnable_steps(device: str, dtype: str, n: int, train: bool, dropout: float) -> dict:
    """Each kernel's step, where it runs as the kernel it is named for. A forced SDPA backend that rejects the
    inputs falls back to math (model/attention.py allows it, so that a model still runs): its timing would be
    math's under another name, so the op that really ran is read, as observe() reads it, and must match."""
    steps = {}
    for kernel in CANDIDATES[device]:
        try:
            step = attention_step(kernel, n, getattr(torch, dtype), device, train, dropout)
            step()
        except RuntimeError:  # "No available kernel": this backend cannot take these inputs
            continue
        if observe(step, device).attention_kernel == kernel:
            steps[kernel] = step
    return steps


def time_kernels(device: str, dtype: str, n: int, train: bool, dropout: float, passes: int, budget_s: float) -> dict:
    """Median device seconds per kernel, over interleaved passes; kernels that cannot run as named are left out."""
    sync = device_synchronizer(device)
    steps = runnable_steps(device, dtype, n, train, dropout)
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(passes):
        for kernel, step in steps.items():
            rounds = rounds_for_budget(time_once(step, sync), budget_s, 3, 20)
            host = host_latency(step, sync, rounds, 1)
            samples[kernel].append(statistics.median(device_time(step, device, rounds, 1, host).samples_s))
    return {kernel: statistics.median(times) for kernel, times in samples.items()}


def measure(device: str, dtypes: list[str], lengths: list[int], passes: int, budget_s: float) -> list[dict]:
    plan = [
        (dtype, n, train, dropout)
        for dtype in dtypes
        for n in lengths
        for train, dropout in ((False, 0.0), (True, 0.0), (True, 0.1))
    ]
    rows = []
    for dtype, n, train, dropout in tqdm(plan, desc="autotune"):
        times = time_kernels(device, dtype, n, train, dropout, passes, budget_s)
        best = min(times, key=times.get)
        choice = Choice(device, dtype, train, dropout > 0, n, best)
        rows.append({**asdict(choice), "seconds": {k: round(v, 9) for k, v in times.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.autotune", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16", "float16"], default=["float32", "bfloat16"])
    p.add_argument("--lengths", nargs="+", type=int, default=None, help="sequence lengths (default: the device's)")
    p.add_argument("--passes", type=int, default=3, help="interleaved passes per kernel")
    p.add_argument("--budget-s", type=float, default=0.1, help="timing budget per kernel and pass")
    p.add_argument("--table", type=Path, default=TABLE_FILE)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    bad = [f"--passes {args.passes} is not accepted; give a whole number, 1 or more"] if args.passes < 1 else []
    if not args.budget_s > 0:
        bad.append(f"--budget-s {args.budget_s:g} is not accepted; give a positive number of seconds")
    bad += [f"--lengths {n} is not accepted; give positive sequence lengths" for n in args.lengths or [] if n <= 0]
    try:
        writable_file(args.table, "--table")
        read_table(args.table)  # a damaged table is refused now, not after the tuning
    except OutputError as err:
        bad.append(str(err))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        bad.append(f"--table {args.table} is not a kernel table ({type(err).__name__}: {err}); give another path")
    if bad:
        print(f"error: {bad[0]}", file=sys.stderr)
        return 2
    facts = machine_facts()  # at the start: the commit checked out when the measurement began
    rows = measure(args.device, args.dtypes, args.lengths or list(LENGTHS[args.device]), args.passes, args.budget_s)
    table = read_table(args.table)
    here = tuning_facts(facts["cpu_flags"], facts["cpu_count"], facts["gpu_name"], facts["torch_version"])
    # an older entry of a machine like this one (under another slug, say) is superseded, not kept beside it
    table["machines"] = {
        slug: entry
        for slug, entry in table["machines"].items()
        if not entry_applies(entry.get("facts", {}), here, args.device)
    }
    table["machines"][machine_slug(args.device)] = {
        "facts": {
            k: facts[k]
            for k in (
                "cpu_vendor",
                "cpu_model",
                "cpu_family",
                "cpu_model_number",
                "cpu_flags",
                "cpu_count",
                "torch_threads",
                "gpu_name",
                "torch_version",
                "git_commit",
            )
        },
        "measured": "python -m bench.autotune " + " ".join(argv if argv is not None else sys.argv[1:]),
        "choices": rows,
    }
    atomic_write_text(args.table, json.dumps(table, indent=1) + "\n")
    print(f"wrote {len(rows)} choices for {machine_slug(args.device)} to {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
