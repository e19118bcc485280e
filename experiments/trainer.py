"""Training harness: AdamW, warm-up then cosine decay, gradient clipping, exact resume.

Each step's batch comes from a generator seeded by (seed, step), and the checkpoint carries the
optimizer, schedule and torch RNG state, so a run resumed from step k replays steps k.. exactly.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from experiments.tasks import TASKS, Batch, Task, make_task
from model.config import EncoderConfig
from model.encoder import Encoder


@dataclass(frozen=True)
class TrainConfig:
    task: str = "reverse"
    pos_encoding: str = "sinusoidal"
    seq_len: int = 16  # longest training length L
    min_len: int | None = None  # shortest training length; None means L (fixed length)
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    attention: str = "sdpa"
    max_len: int | None = None  # size of the learned position table; None means seq_len
    seed: int = 0
    device: str = "cpu"
    eval_examples: int = 512

    def __post_init__(self) -> None:
        if self.task not in TASKS:  # the name only: building the task (reading the corpus) waits for the run
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        for name in ("seq_len", "steps", "batch_size", "eval_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.min_len is not None and not 0 < self.min_len <= self.seq_len:
            raise ValueError(f"min_len={self.min_len!r} must be between 1 and seq_len={self.seq_len}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device={self.device!r} is not supported; choose cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} was asked for but torch sees no CUDA device")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr={self.lr!r} must be positive and warmup_steps={self.warmup_steps!r} non-negative")

    def encoder_config(self, task: Task) -> EncoderConfig:
        return EncoderConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
            n_layers=self.n_layers,
            dropout=self.dropout,
            pos_encoding=self.pos_encoding,
            attention=self.attention,
            max_len=self.max_len or self.seq_len,
            vocab_size=task.vocab_size,
            input_size=task.input_size,
            output_size=task.output_size,
            causal=task.causal,
        )


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    tokens: int = 0


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def compute_loss(model: Encoder, task: Task, batch: Batch) -> torch.Tensor:
    out = model(batch.inputs, batch.padding_mask)
    if task.regression:
        return F.mse_loss(out.squeeze(-1)[batch.target_mask].float(), batch.targets[batch.target_mask])
    return F.cross_entropy(out[batch.target_mask].float(), batch.targets[batch.target_mask])


@torch.no_grad()
def evaluate(model: Encoder, task: Task, length: int, n_examples: int, device: str) -> dict[str, float]:
    """Token accuracy, whole-sequence accuracy (every scored position right) and, for regression, MSE,
    on a fixed evaluation set per (task, length): the same examples for every model and seed."""
    was_training = model.training
    model.eval()
    batch = task.batch(n_examples, length, length, torch.Generator().manual_seed(987_654 + length)).to(device)
    out = model(batch.inputs, batch.padding_mask)
    mask = batch.target_mask
    model.train(was_training)
    if task.regression:
        err = (out.squeeze(-1).float() - batch.targets) ** 2
        return {"mse": err[mask].mean().item(), "token_accuracy": float("nan"), "sequence_accuracy": float("nan")}
    right = (out.argmax(-1) == batch.targets) | ~mask
    return {
        "token_accuracy": right[mask].float().mean().item(),
        "sequence_accuracy": right.all(dim=-1).float().mean().item(),
        "mse": float("nan"),
    }


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.task = make_task(config.task)
        torch.manual_seed(config.seed)
        self.model = Encoder(config.encoder_config(self.task)).to(config.device)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, config.warmup_steps, config.steps)
        )
        self.state = TrainState()

    def train_step(self) -> float:
        c = self.config
        batch = self.task.batch(
            c.batch_size, c.min_len or c.seq_len, c.seq_len, step_generator(c.seed, self.state.step)
        )
        batch = batch.to(c.device)
        # Mixed precision where it pays: bfloat16 autocast on CUDA; CPU trains in float32.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=c.device.startswith("cuda")):
            loss = compute_loss(self.model, self.task, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        self.state.tokens += int((~batch.padding_mask).sum())
        value = loss.item()
        self.state.losses.append(value)
        return value

    def run(
        self, until: int | None = None, checkpoint: Path | None = None, every: int = 200, progress: bool = True
    ) -> None:
        """Train up to step `until` (default: the configured total), checkpointing every `every` steps."""
        until = min(until or self.config.steps, self.config.steps)
        bar = tqdm(
            total=until,
            initial=self.state.step,
            disable=not progress,
            desc=f"{self.config.task}/{self.config.pos_encoding}",
        )
        while self.state.step < until:
            start = time.perf_counter()
            loss = self.train_step()
            self.state.train_seconds += time.perf_counter() - start
            bar.update(1)
            if self.state.step % 10 == 0 or self.state.step == until:
                bar.set_postfix(loss=f"{loss:.4f}", tok_per_s=f"{self.tokens_per_s:,.0f}")
            if checkpoint is not None and (self.state.step % every == 0 or self.state.step == until):
                self.save(checkpoint)
        bar.close()

    @property
    def tokens_per_s(self) -> float:
        return self.state.tokens / self.state.train_seconds if self.state.train_seconds else 0.0

    def save(self, path: Path) -> None:
        payload = {
            "train_config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": asdict(self.state),
            "torch_rng": torch.get_rng_state(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # never leave a half-written checkpoint

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> Trainer:
        payload = read_checkpoint(path)
        config = TrainConfig(**{**payload["train_config"], **({"device": device} if device else {})})
        trainer = cls(config)
        trainer.model.load_state_dict(payload["model"])
        trainer.optimizer.load_state_dict(payload["optimizer"])
        trainer.scheduler.load_state_dict(payload["scheduler"])
        trainer.state = TrainState(**payload["state"])
        torch.set_rng_state(payload["torch_rng"])
        return trainer


def save_model(trainer: Trainer, path: Path) -> None:
    """A small, inference-only checkpoint: the training config and the weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"train_config": asdict(trainer.config), "model": trainer.model.state_dict()}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, loaded as data only (torch's weights_only): tensors, numbers, strings and the
    containers of them that save_model and Trainer.save write. A file that would need to run code to load (a
    pickled callable, someone else's object) is refused with ValueError in one line, and nothing of it runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = str(err).strip().splitlines()
        named = (line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line)
        detail = next(named, lines[0] if lines else "")
        raise ValueError(
            f"checkpoint {path} is refused: loading it would run code it carries ({detail[:160]}); only data "
            "(tensors, numbers, strings) is loaded"
        ) from None
    except (OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:160]})") from None


def load_model(path: Path) -> tuple[Encoder, TrainConfig]:
    """Rebuild a trained model (in eval mode, on CPU) from save_model's or Trainer.save's file."""
    payload = read_checkpoint(path)
    config = TrainConfig(**{**payload["train_config"], "device": "cpu"})
    model = Encoder(config.encoder_config(make_task(config.task)))
    model.load_state_dict(payload["model"])
    return model.eval(), config
