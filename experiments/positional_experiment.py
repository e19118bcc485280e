"""The positional-encoding experiment: every encoding x seeds x tasks, trained on lengths up to L,
evaluated at L, 1.5L, 2L and 4L.

    python -m experiments.positional_experiment     # results/positional-<machine>/

Writes `runs.csv` (tidy: a row per task x encoding x seed x evaluation length), `baselines.csv`,
`machine.json`, and one inference checkpoint per encoding (reverse task, first seed) under
`checkpoints/`. Finished runs are cached under `runs/`, so an interrupted experiment picks up where it
stopped; a folder another machine wrote is refused. Then `python -m analysis positional OUT` writes the
words and tables (summary.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch

from experiments.run_cache import cached_rows, is_cached, other_machine, train_pending
from experiments.tasks import TASKS
from experiments.trainer import TrainConfig, Trainer, evaluate, save_model
from infra.files import atomic_write_csv, atomic_write_text
from infra.machine import machine_facts
from model.config import POS_ENCODINGS

LENGTH_RATIOS = (1.0, 1.5, 2.0, 4.0)


def run_one(config: TrainConfig, checkpoint: Path | None) -> list[dict[str, object]]:
    torch.set_num_threads(1)  # one run per core: these models are too small to share one well
    trainer = Trainer(config)
    trainer.run(progress=False)
    if checkpoint is not None:
        save_model(trainer, checkpoint)
    rows = []
    for ratio in LENGTH_RATIOS:
        length = round(config.seq_len * ratio)
        metrics = evaluate(trainer.model, trainer.task, length, config.eval_examples, config.device)
        rows.append(
            {
                "task": config.task,
                "pos_encoding": config.pos_encoding,
                "seed": config.seed,
                "train_length": config.seq_len,
                "eval_length": length,
                "length_ratio": ratio,
                # Learned positions past L sit in the table (max_len = 4L) but no gradient ever reached them.
                "untrained_positions": config.pos_encoding == "learned" and length > config.seq_len,
                **metrics,
                "final_loss": trainer.state.losses[-1],
                "train_seconds": trainer.state.train_seconds,
                "tokens_per_s": trainer.tokens_per_s,
                "steps": trainer.state.step,
            }
        )
    return rows


def bag_mode_accuracy(task_name: str, length: int, n_examples: int = 2048) -> float:
    """Token accuracy of always predicting the sequence's most frequent symbol: what a model that sees
    only the bag of tokens (no positions) can reach on copy-free tasks, the bar for 'chance'."""
    task = TASKS[task_name]()
    batch = task.batch(n_examples, length, length, torch.Generator().manual_seed(987_654 + length))
    mode = batch.inputs.mode(dim=-1).values[:, None]
    return (mode == batch.targets).float().mean().item()


def write_outputs(out: Path, rows: list[dict], baselines: dict[tuple[str, int], float], machine: dict) -> None:
    """The experiment's data, atomically: runs.csv, baselines.csv and machine.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["task"], r["pos_encoding"], r["seed"], r["eval_length"]))
    atomic_write_csv(out / "runs.csv", rows)
    atomic_write_text(
        out / "baselines.csv",
        "task,eval_length,bag_mode_accuracy\n" + "".join(f"{t},{n},{a}\n" for (t, n), a in sorted(baselines.items())),
    )
    atomic_write_text(out / "machine.json", json.dumps(machine, indent=1))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.positional_experiment", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="default: results/positional-MACHINE")
    p.add_argument(
        "--tasks", nargs="+", choices=["copy", "reverse", "sort", "recall"], default=["reverse", "sort", "copy"]
    )
    p.add_argument("--encodings", nargs="+", choices=POS_ENCODINGS, default=list(POS_ENCODINGS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seq-len", type=int, default=16, help="longest training length L")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    machine = machine_facts()  # at the start: the code that trains is the code checked out now
    if "reverse" not in args.tasks:
        print("error: --tasks must include reverse (the checkpoints and the notebook use it)", file=sys.stderr)
        return 2
    args.out = args.out or Path("results") / f"positional-{machine['machine_slug']}"
    try:
        if reason := other_machine(args.out, machine):
            raise ValueError(reason)
        if args.seeds <= 0 or args.workers <= 0:
            raise ValueError(f"--seeds={args.seeds} and --workers={args.workers} must be positive")
        base = TrainConfig(
            seq_len=args.seq_len,
            min_len=max(2, args.seq_len // 2),
            steps=args.steps,
            max_len=round(args.seq_len * max(LENGTH_RATIOS)),
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cache = args.out / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = {}
    for task in args.tasks:
        for pos in args.encodings:
            for seed in range(args.seeds):
                config = replace(base, task=task, pos_encoding=pos, seed=seed)
                path = cache / f"{task}-{pos}-s{seed}.json"
                if is_cached(path, config):
                    continue  # finished in an earlier, interrupted run
                keep = args.out / "checkpoints" / f"reverse-{pos}.pt" if task == "reverse" and seed == 0 else None
                jobs[path] = (config, keep)
    print(f"{len(jobs)} runs to train ({len(args.tasks) * len(args.encodings) * args.seeds - len(jobs)} cached)")
    train_pending(jobs, run_one, args.workers)
    rows = [
        row
        for row in cached_rows(cache)
        if row["task"] in args.tasks and row["pos_encoding"] in args.encodings and row["seed"] < args.seeds
    ]
    baselines = {(t, n): bag_mode_accuracy(t, n) for t in args.tasks for n in {r["eval_length"] for r in rows}}
    write_outputs(args.out, rows, baselines, {**machine, "experiment": vars(args) | {"out": str(args.out)}})
    print(f"wrote {args.out / 'runs.csv'}", flush=True)
    return subprocess.run([sys.executable, "-m", "analysis", "positional", str(args.out)]).returncode


if __name__ == "__main__":
    sys.exit(main())
