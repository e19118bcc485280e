"""Command line: train one encoder on one toy task.

    python -m experiments.train --task reverse --pos-encoding rope

Prints a summary and writes `checkpoint.pt` (resumable) and `metrics.json` to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from experiments.corpus import CorpusError
from experiments.tasks import TASKS
from experiments.trainer import TrainConfig, Trainer, evaluate
from infra.files import atomic_write_text
from model.config import ATTENTION_KERNELS, POS_ENCODINGS


def _positive(kind: type, noun: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive {noun}, got {text!r}")
        return value

    return parse


positive_int = _positive(int, "integer")
positive_float = _positive(float, "number")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="reverse")
    p.add_argument("--pos-encoding", choices=POS_ENCODINGS, default="sinusoidal")
    p.add_argument("--attention", choices=ATTENTION_KERNELS, default="sdpa")
    p.add_argument("--seq-len", type=positive_int, default=16, help="longest training length L")
    p.add_argument("--min-len", type=positive_int, default=None, help="shortest training length (default: L)")
    p.add_argument("--steps", type=positive_int, default=1200)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--d-model", type=positive_int, default=64)
    p.add_argument("--n-heads", type=positive_int, default=4)
    p.add_argument("--n-layers", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--eval-lengths",
        type=positive_int,
        nargs="*",
        default=None,
        help="lengths to evaluate at (default: L); learned positions need --max-len >= each",
    )
    p.add_argument("--max-len", type=positive_int, default=None, help="learned position table size (default: L)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/TASK-POS-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out or Path("runs") / f"{args.task}-{args.pos_encoding}-s{args.seed}"
    checkpoint = out / "checkpoint.pt"
    try:
        config = TrainConfig(
            task=args.task,
            pos_encoding=args.pos_encoding,
            attention=args.attention,
            seq_len=args.seq_len,
            min_len=args.min_len,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            d_model=args.d_model,
            n_heads=args.n_heads,
            n_layers=args.n_layers,
            seed=args.seed,
            device=args.device,
            max_len=args.max_len,
        )
        lengths = args.eval_lengths or [config.seq_len]
        if config.pos_encoding == "learned" and max(lengths) > (config.max_len or config.seq_len):
            raise ValueError(
                f"--eval-lengths up to {max(lengths)} need --max-len >= {max(lengths)} for learned positions"
            )
        if args.resume:
            if not checkpoint.exists():
                raise ValueError(f"--resume: no checkpoint at {checkpoint}")
            trainer = Trainer.load(checkpoint, device=args.device)
            if asdict(trainer.config) != {**asdict(config), "steps": trainer.config.steps}:
                raise ValueError(f"--resume: the flags differ from the run in {checkpoint} (other than --steps)")
            trainer.config = config
        else:
            trainer = Trainer(config)
    except (ValueError, CorpusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trainer.run(checkpoint=checkpoint, progress=not args.no_progress)
    metrics = {
        "config": asdict(config),
        "steps": trainer.state.step,
        "final_loss": trainer.state.losses[-1],
        "train_seconds": trainer.state.train_seconds,
        "tokens_per_s": trainer.tokens_per_s,
        "eval": {
            str(n): evaluate(trainer.model, trainer.task, n, config.eval_examples, config.device) for n in lengths
        },
        "losses": trainer.state.losses,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    print(
        f"{config.task} / {config.pos_encoding}: {trainer.state.step} steps in {trainer.state.train_seconds:.1f} s "
        f"({trainer.tokens_per_s:,.0f} tokens/s), final loss {metrics['final_loss']:.4g}"
    )
    for n, m in metrics["eval"].items():
        score = (
            f"mse {m['mse']:.4g}"
            if config.task == "sine"
            else (f"token acc {m['token_accuracy']:.4f}, sequence acc {m['sequence_accuracy']:.4f}")
        )
        print(f"  eval at length {n}: {score}")
    print(f"wrote {checkpoint} and {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
