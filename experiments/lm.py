"""Command line: train a small causal character language model on the bundled toy text.

    python -m experiments.lm --pos-encoding alibi --minutes 3

Prints bits per character on held-out text beside the unigram and bigram baselines (counted on the
training text), and a generated sample; --out DIR also writes metrics.json there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from experiments.corpus import CorpusError, bigram_bits, default_corpus, unigram_bits
from experiments.language_model import generate, validation_bits
from experiments.train import positive_float, positive_int
from experiments.trainer import TrainConfig, Trainer
from infra.files import atomic_write_text
from model.config import ATTENTION_KERNELS, POS_ENCODINGS

PROMPT = "Return the "


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.lm", description=__doc__.splitlines()[0])
    p.add_argument("--pos-encoding", choices=POS_ENCODINGS, default="alibi")
    p.add_argument("--attention", choices=ATTENTION_KERNELS, default="sdpa")
    p.add_argument("--seq-len", type=positive_int, default=128, help="training length L")
    p.add_argument("--steps", type=positive_int, default=2000, help="at most this many steps")
    p.add_argument("--minutes", type=positive_float, default=3.0, help="stop training after this long")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--d-model", type=positive_int, default=128)
    p.add_argument("--n-heads", type=positive_int, default=4)
    p.add_argument("--n-layers", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sample-chars", type=int, default=200)
    p.add_argument("--out", type=Path, default=None, help="folder for metrics.json")
    return p


def train_for(trainer: Trainer, seconds: float) -> None:
    """Train until the configured steps or `seconds`, whichever comes first (the schedule is the steps')."""
    start = time.perf_counter()
    while trainer.state.step < trainer.config.steps and time.perf_counter() - start < seconds:
        trainer.run(until=min(trainer.state.step + 50, trainer.config.steps), progress=False)
        print(
            f"\rstep {trainer.state.step}/{trainer.config.steps}  loss {trainer.state.losses[-1]:.3f} nats  "
            f"{time.perf_counter() - start:.0f}/{seconds:.0f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        corpus = default_corpus()
        config = TrainConfig(
            task="text",
            pos_encoding=args.pos_encoding,
            attention=args.attention,
            seq_len=args.seq_len,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=min(100, args.steps // 10),
            d_model=args.d_model,
            n_heads=args.n_heads,
            d_ff=4 * args.d_model,
            n_layers=args.n_layers,
            seed=args.seed,
            device=args.device,
        )
    except (CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trainer = Trainer(config)
    facts = corpus.facts()
    print(
        f"corpus: {facts['corpus']} ({facts['corpus_bytes']} bytes, sha256 {corpus.sha256[:12]}..., "
        f"{facts['vocab']} characters; {facts['train_chars']} train / {facts['validation_chars']} held out)"
    )
    train_for(trainer, args.minutes * 60)
    bits = validation_bits(trainer.model, corpus, args.seq_len, args.device)
    unigram, bigram = unigram_bits(corpus), bigram_bits(corpus)
    sample = generate(trainer.model, corpus, PROMPT, args.sample_chars, args.seq_len, seed=args.seed)
    print(
        f"held-out bits per character at L={args.seq_len}: {bits:.3f} (perplexity {2**bits:.2f}) after "
        f"{trainer.state.step} steps, {trainer.state.train_seconds:.0f} s"
    )
    print(
        f"baselines from the training text: unigram {unigram:.3f}, bigram {bigram:.3f} bits per character; "
        f"the model {'beats' if bits < bigram else 'does not beat'} the bigram by {bigram - bits:+.3f}"
    )
    print(f"sample: {PROMPT}{sample}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        metrics = {
            "config": asdict(config),
            **facts,
            "steps_done": trainer.state.step,
            "train_seconds": trainer.state.train_seconds,
            "bits_per_char": bits,
            "unigram_bits": unigram,
            "bigram_bits": bigram,
            "sample": PROMPT + sample,
        }
        atomic_write_text(args.out / "metrics.json", json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
