"""One rank of the data-parallel training-step benchmark. torchrun starts it (bench/distributed.py
launches torchrun); nothing here launches processes or moves tensors between them by hand.

Each rank: joins the process group (gloo on CPU, NCCL on CUDA), wraps our encoder's training step in
DistributedDataParallel (or FSDP2's fully_shard), checks that one step's gradients equal a single
process's on the whole batch, times its steps, profiles two of them for the communication share, and
hands its numbers to rank 0, which writes them. A failure writes a one-line reason for the launcher.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from bench.kernel_table import with_table
from infra.files import atomic_write_text
from model import Encoder, EncoderConfig

FAULT_ENV = "ATTNBENCH_DDP_FAULT"  # for the fault-handling tests: "raise:RANK", "hang:RANK" or "skew:RANK"


def fault(rank: int) -> str | None:
    kind, _, target = os.environ.get(FAULT_ENV, "").partition(":")
    return kind if target and int(target) == rank else None


def inject_fault(rank: int) -> None:
    if fault(rank) == "raise":
        raise RuntimeError(f"injected fault on rank {rank}")
    if fault(rank) == "hang":
        time.sleep(10**6)


def build(config: dict, device: torch.device) -> Encoder:
    torch.manual_seed(0)  # the same weights on every rank, and in the single-process reference
    encoder = EncoderConfig(
        d_model=config["d_model"],
        n_heads=config["heads"],
        d_ff=config["d_ff"],
        n_layers=config["layers"],
        max_len=config["seq_len"],
        vocab_size=config["vocab"],
        output_size=config["vocab"],
    )
    return with_table(Encoder(encoder)).to(device)


def global_batch(config: dict, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, config["vocab"], (size, config["seq_len"]), generator=g)
    targets = torch.randint(0, config["vocab"], (size, config["seq_len"]), generator=g)
    return tokens.to(device), targets.to(device)


def loss_of(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    return F.cross_entropy(model(tokens).view(-1, vocab).float(), targets.view(-1))


def wrap(model: torch.nn.Module, strategy: str, device: torch.device) -> torch.nn.Module:
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.layers:
            fully_shard(layer)
        return fully_shard(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def full_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameter gradients as full tensors (FSDP2 shards them as DTensors)."""
    out = {}
    for name, param in model.named_parameters():
        grad = param.grad
        out[name.removeprefix("module.")] = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
    return out


def check_gradients(config: dict, device: torch.device, rank: int, world: int, local: int) -> float:
    """Largest relative difference between this setup's gradients after one step and one process's on the
    concatenated batch (dropout off). DDP averages the ranks' gradients of their mean losses: with equal
    shares, that is the gradient of the mean loss over the whole batch."""
    tokens, targets = global_batch(config, local * world, device)
    reference = build(config, device)
    loss_of(reference, tokens, targets, config["vocab"]).backward()
    want = {n: p.grad for n, p in reference.named_parameters()}
    parallel = wrap(build(config, device), config["strategy"], device)
    mine = slice(rank * local, (rank + 1) * local)
    skew = 1.5 if fault(rank) == "skew" else 1.0  # a rank whose gradients are wrong, for the tests
    (skew * loss_of(parallel, tokens[mine], targets[mine], config["vocab"])).backward()
    got = full_gradients(parallel)
    return max(((got[n] - want[n]).norm() / want[n].norm().clamp_min(1e-30)).item() for n in want)


def time_steps(config: dict, device: torch.device, local: int, trace_dir: Path, rank: int) -> dict:
    model = wrap(build(config, device), config["strategy"], device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens, targets = global_batch(config, local, device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, tokens, targets, config["vocab"]).backward()
        optimizer.step()

    for _ in range(config["warmup"]):
        step()
    samples = []
    for _ in range(config["rounds"]):
        dist.barrier()  # every rank starts the step together: its time includes waiting for the slowest
        sync()
        start = time.perf_counter()
        step()
        sync()
        samples.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=1, active=2, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=f"rank{rank}", use_gzip=True),
        record_shapes=True,
    ) as prof:
        for _ in range(3):
            dist.barrier()
            step()
            sync()
            prof.step()
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"step_samples_s": samples, "grad_bytes": grad_bytes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ddp_worker")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for rank 0's result, traces and error files")
    args = p.parse_args(argv)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    config = json.loads(args.config.read_text())
    (args.out / f"pid-rank{rank}.txt").write_text(str(os.getpid()))  # so the launcher can stop a hung rank
    try:
        torch.set_num_threads(config["threads_per_rank"])
        cuda = config["device"] == "cuda"
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        inject_fault(rank)
        timeout = timedelta(seconds=config["collective_timeout_s"])
        if cuda:  # device_id binds the NCCL communicator to this rank's GPU at once (no guessing later)
            dist.init_process_group("nccl", timeout=timeout, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=timeout)
        local = config["global_batch"] // world if config["scaling"] == "strong" else config["batch_per_rank"]
        error = check_gradients(config, device, rank, world, local)
        timed = time_steps(config, device, local, args.out / "traces", rank) if error <= config["tolerance"] else {}
        results = [None] * world if rank == 0 else None
        dist.gather_object({"rank": rank, "check_error": error, "local_batch": local, **timed}, results, dst=0)
        if rank == 0:
            payload = {"config": config, "world": world, "ranks": results}
            atomic_write_text(args.out / "result.json", json.dumps(payload))
        dist.destroy_process_group()
        return 0
    except Exception as err:  # noqa: BLE001 - any failure ends this rank with a reason the launcher can print
        reason = f"rank {rank} failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
        atomic_write_text(args.out / f"error-rank{rank}.txt", reason + "\n")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
