"""ALiBi's claim where it was made: causal character language models trained at length L with each
positional encoding (the same model, steps and data for all), perplexity on held-out text at L, 2L, 4L, 8L
(Press et al., "Train Short, Test Long", Figure 1, on our data).

    python -m experiments.extrapolation     # results/lm-extrapolation-<machine>/

Writes `runs.csv` (a row per encoding x seed x evaluation length; learned positions past L are rows
marked not applicable, with no number) and `machine.json` (the machine, the corpus's checksum, the
settings). Finished runs are cached under `runs/`, so an interrupted experiment picks up where it
stopped; a folder another machine wrote is refused. Then `python -m analysis extrapolation OUT` writes
summary.md and the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from experiments.corpus import CorpusError, bigram_bits, default_corpus, unigram_bits
from experiments.language_model import EVAL_CHARS, NotApplicable, validation_bits
from experiments.run_cache import cached_rows, is_cached, other_machine, train_pending
from experiments.trainer import TrainConfig, Trainer
from infra.files import atomic_write_csv, atomic_write_text
from infra.machine import machine_facts

ENCODINGS = ("sinusoidal", "learned", "rope", "alibi", "none")
FACTORS = (1, 2, 4, 8)
BASE = TrainConfig(
    task="text",
    seq_len=64,
    steps=2000,
    batch_size=32,
    lr=3e-3,
    warmup_steps=100,
    d_model=64,
    n_heads=4,
    d_ff=256,
    n_layers=2,
)


def run_one(config: TrainConfig) -> list[dict[str, object]]:
    torch.set_num_threads(1)  # one run per core: these models are too small to share one well
    trainer = Trainer(config)
    trainer.run(progress=False)
    corpus = trainer.task.corpus
    rows = []
    for factor in FACTORS:
        length = config.seq_len * factor
        try:
            bits, applicable = validation_bits(trainer.model, corpus, length), True
        except NotApplicable:
            bits, applicable = float("nan"), False
        rows.append(
            {
                "pos_encoding": config.pos_encoding,
                "seed": config.seed,
                "train_length": config.seq_len,
                "eval_length": length,
                "length_factor": factor,
                "applicable": applicable,
                "bits_per_char": bits,
                "parameters": trainer.model.num_parameters(),
                "steps": trainer.state.step,
                "final_loss": trainer.state.losses[-1],
                "train_seconds": trainer.state.train_seconds,
                "corpus_sha256": corpus.sha256,
            }
        )
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.extrapolation", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="default: results/lm-extrapolation-MACHINE")
    p.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seq-len", type=int, default=BASE.seq_len, help="training length L")
    p.add_argument("--steps", type=int, default=BASE.steps)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    machine = machine_facts()  # at the start: the code that trains is the code checked out now
    args.out = args.out or Path("results") / f"lm-extrapolation-{machine['machine_slug']}"
    try:
        corpus = default_corpus()
        if reason := other_machine(args.out, machine):
            raise ValueError(reason)
        if args.seeds <= 0 or args.workers <= 0:
            raise ValueError(f"--seeds={args.seeds} and --workers={args.workers} must be positive")
        base = replace(BASE, seq_len=args.seq_len, steps=args.steps, warmup_steps=min(BASE.warmup_steps, args.steps))
    except (CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cache = args.out / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = {}
    for pos in args.encodings:
        for seed in range(args.seeds):
            config = replace(base, pos_encoding=pos, seed=seed)
            path = cache / f"{pos}-s{seed}.json"
            if is_cached(path, config):
                continue  # finished in an earlier, interrupted run
            jobs[path] = (config,)
    print(f"{len(jobs)} runs to train ({len(args.encodings) * args.seeds - len(jobs)} cached)", flush=True)
    train_pending(jobs, run_one, args.workers)
    rows = [
        row
        for row in cached_rows(cache)
        if row["pos_encoding"] in args.encodings and row["seed"] < args.seeds and row["train_length"] == args.seq_len
    ]
    rows.sort(key=lambda r: (r["pos_encoding"], r["seed"], r["eval_length"]))
    atomic_write_csv(args.out / "runs.csv", rows)
    baselines = {"unigram_bits": unigram_bits(corpus), "bigram_bits": bigram_bits(corpus)}
    experiment = {**vars(args), "out": str(args.out), "config": asdict(base), "eval_chars": EVAL_CHARS}
    atomic_write_text(
        args.out / "machine.json",
        json.dumps({**machine, **corpus.facts(), **baselines, "experiment": experiment}, indent=1),
    )
    print(f"wrote {args.out / 'runs.csv'}", flush=True)
    return subprocess.run([sys.executable, "-m", "analysis", "extrapolation", str(args.out)]).returncode


if __name__ == "__main__":
    sys.exit(main())
