"""The data-parallel training-step benchmark, launched by torchrun: gloo on CPU (one thread per rank),
NCCL on CUDA (one GPU per rank).

    python -m bench.distributed --nproc-per-node 1,2        # what `tox -e ddp` runs
    python -m bench.distributed --device cuda --nproc-per-node 1,2,4,8 --strategy ddp,fsdp

Every (world size, scaling, strategy) is launched once per pass, passes interleaved (A B A B), so the
intervals see process-to-process noise. Weak scaling keeps the batch per rank, strong scaling the
global batch. A rank that fails, hangs or cannot start ends the run within --timeout-s with one line
saying why; the run folder is written only when every launch succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.run_folder import refused
from infra.cli import add_renamed
from infra.files import atomic_write_text
from infra.machine import machine_facts, machine_slug
from infra.record import SCHEMA_VERSION, PassTiming, pass_median, pass_trace_name, record
from model import cost

SHAPE = {"d_model": 256, "heads": 4, "d_ff": 1024, "layers": 2, "vocab": 256}  # the grid's small shape


class LaunchError(Exception):
    """A launch that did not produce a result: the one-line reason."""


def world_sizes(text: str) -> list[int]:
    try:
        sizes = [int(w) for w in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(w < 1 for w in sizes):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of world sizes; write e.g. 1,2,4")
    return sizes


def choices(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        values = text.split(",")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad[0]!r} is not accepted; choose from {', '.join(allowed)}")
        return values

    return parse


def stop(proc: subprocess.Popen, out: Path, grace_s: float = 10.0) -> None:
    """End torchrun and its ranks: SIGTERM first (torchrun passes it on to the ranks it started), then
    SIGKILL to whatever is left. Ranks run in sessions of their own, so each is also killed by the pid
    it wrote at start."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid_file in out.glob("pid-rank*.txt"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass  # already gone


def launch(config: dict, world: int, out: Path, timeout_s: float) -> dict:
    """One torchrun of `world` ranks; the result rank 0 wrote, or LaunchError with the first reason."""
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={world}",
        "-m",
        "bench.ddp_worker",
        "--config",
        str(out / "config.json"),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads_per_rank"])}
    with open(out / "torchrun.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(proc, out)
            raise LaunchError(
                f"world size {world}: no result within {timeout_s:g} s (a rank hung); all ranks were stopped"
            ) from None
    reasons = [p.read_text().strip() for p in sorted(out.glob("error-rank*.txt"))]
    if code != 0 or not (out / "result.json").is_file():
        why = "; ".join(reasons) or f"torchrun exited {code} (see its log)"
        raise LaunchError(f"world size {world}: {why}")
    result = json.loads((out / "result.json").read_text())
    worst = max(r["check_error"] for r in result["ranks"])
    if worst > config["tolerance"]:
        raise LaunchError(
            f"world size {world}: {config['strategy']} gradients differ from one process's on the "
            f"whole batch by {worst:.3g} (allowed {config['tolerance']:g})"
        )
    return result


def cell_id(config: dict, world: int) -> str:
    return (
        f"{config['device']}-float32-small-n{config['seq_len']}-h{SHAPE['heads']}-{config['strategy']}"
        f"-w{world}-{config['scaling']}"
    )


def benchmark_entry(result: dict, pass_index: int, passes: int) -> dict:
    """One launch as a pytest-benchmark entry; every rank's numbers kept, the step as long as its slowest rank."""
    config, world, ranks = result["config"], result["world"], result["ranks"]
    steps = [max(rounds) for rounds in zip(*(r["step_samples_s"] for r in ranks))]
    local, n = ranks[0]["local_batch"], config["seq_len"]
    d, f, layers, vocab = SHAPE["d_model"], SHAPE["d_ff"], SHAPE["layers"], SHAPE["vocab"]
    flops = (
        cost.model_forward_flops(local, n, d, f, layers, None, vocab).total
        + cost.model_backward_flops(local, n, d, f, layers, None, vocab, recompute_scores=True).total
    )
    identifier = cell_id(config, world)
    params = {
        "group": "ddp",
        "device": config["device"],
        "dtype": "float32",
        "shape": "small",
        "seq_len": n,
        "heads": SHAPE["heads"],
        "impl": config["strategy"],
        "mode": "train",
        "dropout": 0.0,
        "pos_encoding": "none",
        "compile": "eager",
        "world": world,
        "scaling": config["scaling"],
        "passes": passes,
        "id": identifier,
        "trace_name": f"ddp.{identifier}",  # each pass's ranks trace into pass_trace_name(trace_name, pass)
        "batch": local,
        "d_model": d,
        "d_ff": f,
        "global_batch": local * world,
        "threads_per_rank": config["threads_per_rank"],
    }
    facts = {  # a launch's own facts: every rank's samples and check, the gradients' volume
        "rank_samples_s": [r["step_samples_s"] for r in ranks],
        "check_relative_error": max(r["check_error"] for r in ranks),
        "grad_bytes": ranks[0]["grad_bytes"],
        "allreduce_bytes_analytic": 2 * (world - 1) / world * ranks[0]["grad_bytes"],  # a ring all-reduce
        "flops_analytic": flops * world,
        "flops_counted": None,
        "tokens_per_step": local * world * n,
    }
    median = pass_median(steps)
    timing = PassTiming(
        pass_index=pass_index,
        device_samples_s=steps,
        host_samples_s=steps,
        host_median_s=median,
        device_median_s=median,
        device_time_method="cpu_clock" if config["device"] == "cpu" else "cuda_sync",
        rounds=len(steps),
    )
    extra = record(params, facts, timing)
    stats = {"median": statistics.median(steps), "min": min(steps), "max": max(steps), "rounds": len(steps)}
    return {
        "group": f"ddp {config['scaling']}",
        "name": f"ddp[{identifier}-r{pass_index}]",
        "fullname": identifier,
        "params": {**{k: extra[k] for k in ("world", "scaling", "impl", "seq_len")}, "pass_index": pass_index},
        "stats": stats,
        "extra_info": extra,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--nproc-per-node",
        type=world_sizes,
        default=None,
        help="world sizes, e.g. 1,2,4 (default: 1,2 on CPU; on CUDA 1 and every GPU present)",
    )
    p.add_argument("--scaling", type=choices(("strong", "weak")), default=["strong", "weak"])
    p.add_argument("--strategy", type=choices(("ddp", "fsdp")), default=["ddp"], help="ddp, fsdp (FSDP2) or both")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--global-batch", type=int, default=4, help="strong scaling: examples per step over all ranks")
    p.add_argument("--batch-per-rank", type=int, default=2, help="weak scaling: examples per step on each rank")
    p.add_argument("--rounds", type=int, default=10, help="timed steps per launch")
    add_renamed(
        p.add_argument, "--passes", "--repeats", type=int, default=3, help="interleaved passes (separate launches)"
    )
    p.add_argument("--threads-per-rank", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=180.0, help="per launch: a rank that hangs ends the run")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--name", default=None, help="run folder (default: ddp-DEVICE-MACHINE)")
    p.add_argument("--no-report", action="store_true")
    return p


def default_world_sizes(device: str, gpus: int) -> list[int]:
    """On CPU one and two ranks; on CUDA one rank, and one per GPU where there are more."""
    if device == "cuda":
        return sorted({1, max(gpus, 1)})
    return [1, 2]


def check_args(args: argparse.Namespace) -> None:
    if args.nproc_per_node is None:
        args.nproc_per_node = default_world_sizes(args.device, torch.cuda.device_count())
    if args.device == "cuda" and torch.cuda.device_count() < max(args.nproc_per_node):
        raise LaunchError(
            f"--nproc-per-node {max(args.nproc_per_node)} needs as many GPUs; torch sees {torch.cuda.device_count()}"
        )
    for w in args.nproc_per_node:
        if "strong" in args.scaling and args.global_batch % w:
            raise LaunchError(f"--global-batch {args.global_batch} does not split evenly over {w} ranks")
    for option in ("seq_len", "global_batch", "rounds", "passes", "batch_per_rank", "threads_per_rank"):
        if getattr(args, option) < 1:
            raise LaunchError(
                f"--{option.replace('_', '-')} {getattr(args, option)} is not accepted; give a whole number, 1 or more"
            )
    if not args.timeout_s > 0:
        raise LaunchError(f"--timeout-s {args.timeout_s:g} is not accepted; give a positive number of seconds")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_args(args)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = args.results / (args.name or f"ddp-{machine_slug(args.device)}")
    facts = machine_facts()  # at the start: the code that runs is the code checked out now
    if refused(run_dir, facts):
        return 2
    staging = Path(tempfile.mkdtemp(prefix="attnbench-ddp-"))
    base = {
        **SHAPE,
        "device": args.device,
        "seq_len": args.seq_len,
        "global_batch": args.global_batch,
        "batch_per_rank": args.batch_per_rank,
        "warmup": 2,
        "rounds": args.rounds,
        "tolerance": 1e-4,
        "threads_per_rank": args.threads_per_rank,
        "collective_timeout_s": args.timeout_s,
    }
    plan = [
        (r, w, s, k)
        for r in range(args.passes)
        for w in args.nproc_per_node
        for s in args.scaling
        for k in args.strategy
    ]
    entries = []
    try:
        for i, (pass_index, world, scaling, strategy) in enumerate(plan, 1):
            config = {**base, "scaling": scaling, "strategy": strategy}
            print(
                f"[{i}/{len(plan)}] pass {pass_index + 1}: {strategy}, {scaling} scaling, world size {world}",
                flush=True,
            )
            out = staging / f"{cell_id(config, world)}-r{pass_index}"
            entries.append(benchmark_entry(launch(config, world, out, args.timeout_s), pass_index, args.passes))
            shutil.copytree(
                out / "traces",
                staging / "traces" / pass_trace_name(entries[-1]["extra_info"]["trace_name"], pass_index),
            )
    except LaunchError as err:
        print(f"error: {err}; nothing was written to {run_dir}", file=sys.stderr)
        shutil.rmtree(staging, ignore_errors=True)
        return 1
    plan_facts = vars(args) | {"results": str(args.results)}
    grid = {"shapes": {"small": {"batch": args.batch_per_rank, **SHAPE}}, "passes": args.passes, "plan": plan_facts}
    facts.update(
        grid_profile="ddp",
        grid=grid,
        passes=args.passes,
        flop_formulas_added=[],
        shard=None,
        schema_version=SCHEMA_VERSION,
    )
    payload = {"machine_info": {"attnbench": facts}, "benchmarks": entries, "attnbench_not_run": []}
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / "traces", ignore_errors=True)
    os.replace(staging / "traces", run_dir / "traces")
    atomic_write_text(run_dir / "benchmarks.json", json.dumps(payload, default=str))
    shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {run_dir / 'benchmarks.json'}")
    if args.no_report:
        return 0
    return subprocess.run([sys.executable, "-m", "analysis", "report", str(run_dir)]).returncode


if __name__ == "__main__":
    sys.exit(main())
