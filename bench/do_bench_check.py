"""Cross-check a CUDA run's device times against triton.testing.do_bench on a sample of its cells.

    python -m bench.do_bench_check results/cuda-h100-80gb-hbm3      # writes do_bench.json beside it

Each sampled cell is rebuilt and timed by triton's do_bench: CUDA events around back-to-back calls, L2
flushed before each, the median. Where the run replayed a CUDA graph, do_bench times the replay of the same
graph attnbench captures (not do_bench_cudagraph, which unrolls several steps into one graph, never flushes
L2 and returns a mean): like is compared with like. The report puts both medians side by side. Device-bound
cells come first: on host-bound ones events over eager calls include launch gaps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

from bench.grid import Cell, load_grid
from bench.timing import capture_cuda_graph
from bench.workloads import WORKLOADS
from infra.files import atomic_write_text


def sample(entries: list[dict], size: int) -> list[dict]:
    """Eager, device-bound cells of the larger shape first, then the rest; one entry per cell."""
    first = {}
    for extra in entries:
        if extra["group"] in ("attention", "layer", "train_step") and extra["compile"] == "eager":
            first.setdefault(extra["id"], extra)

    def rank(e: dict) -> tuple:
        return (e["shape"] != "bert_large", bool(e.get("host_bound")), -e["seq_len"])

    return sorted(first.values(), key=rank)[:size]


def timed_call(step, method: str):
    """What attnbench timed for the cell: its captured graph's replay, or the eager step."""
    if method == "cuda_graph":
        return capture_cuda_graph(step, torch.device("cuda")).replay
    return step


def do_bench_seconds(step, method: str) -> float:
    from triton.testing import do_bench

    return do_bench(timed_call(step, method), warmup=25, rep=100, return_mode="median") / 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.do_bench_check", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sample", type=int, default=10)
    args = p.parse_args(argv)
    path = args.run_dir / "benchmarks.json"
    if not torch.cuda.is_available() or not path.is_file():
        print(f"error: needs a CUDA device and {path}", file=sys.stderr)
        return 2
    data = json.loads(path.read_text())
    facts = data["machine_info"]["attnbench"]
    grid = load_grid(facts["grid_profile"], facts.get("grid_overrides", []))
    by_id: dict[str, list[float]] = {}
    for bench in data["benchmarks"]:
        by_id.setdefault(bench["extra_info"]["id"], []).extend(bench["extra_info"]["device_samples_s"])
    rows = []
    for extra in sample([b["extra_info"] for b in data["benchmarks"]], args.sample):
        cell = Cell(**{f.name: extra[f.name] for f in dataclasses.fields(Cell)})  # the axes are Cell's fields
        workload = WORKLOADS[cell.group](cell, grid.shapes[cell.shape], cell.device, getattr(torch, cell.dtype))
        theirs = do_bench_seconds(workload.step, extra["device_time_method"])
        ours = statistics.median(by_id[cell.id])
        rows.append(
            {
                "id": cell.id,
                "method": extra["device_time_method"],
                "attnbench_s": ours,
                "do_bench_s": theirs,
                "ratio": ours / theirs,
            }
        )
        print(f"{cell.id}: attnbench {ours * 1e3:.4f} ms, do_bench {theirs * 1e3:.4f} ms, ratio {ours / theirs:.3f}")
    atomic_write_text(args.run_dir / "do_bench.json", json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
