"""Toy tasks, seeded and deterministic, at any length.

Every task draws a Batch from an explicit torch.Generator, so the same seed gives the same data on
any machine, and a batch can be drawn at lengths the model never trained on. Token tasks use id 0
for padding and score only the positions in `target_mask`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PAD = 0
IGNORE = -100  # targets at unscored positions (cross_entropy's ignore_index)


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, n) token ids, or (B, n, c) features
    targets: torch.Tensor  # (B, n) class ids (IGNORE where unscored) or values
    padding_mask: torch.Tensor  # (B, n) bool, True at padding
    target_mask: torch.Tensor  # (B, n) bool, True where the prediction is scored

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.inputs, self.targets, self.padding_mask, self.target_mask)))


class Task:
    name: str
    regression = False
    causal = False  # a language model: each position sees only itself and earlier ones
    vocab_size: int | None = None  # token input
    input_size: int | None = None  # continuous input
    output_size: int
    min_length = 2

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets for `batch_size` examples of exactly `length` positions."""
        raise NotImplementedError

    def batch(self, batch_size: int, min_len: int, max_len: int, generator: torch.Generator) -> Batch:
        """Examples with lengths uniform in [min_len, max_len], right-padded to max_len."""
        if not self.min_length <= min_len <= max_len:
            raise ValueError(
                f"lengths must satisfy {self.min_length} <= min_len <= max_len for task {self.name!r}, "
                f"got min_len={min_len}, max_len={max_len}"
            )
        lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)
        inputs, targets, pad, scored = [], [], [], []
        for length in lengths.tolist():
            x, y = self.sample(1, length, generator)
            fill = max_len - length
            inputs.append(torch.nn.functional.pad(x[0], (0, 0) * (x.dim() - 2) + (0, fill), value=PAD))
            targets.append(torch.nn.functional.pad(y[0], (0, fill), value=IGNORE if not self.regression else 0.0))
            pad.append(torch.arange(max_len) >= length)
            scored.append(self.scored_positions(length, max_len))
        return Batch(torch.stack(inputs), torch.stack(targets), torch.stack(pad), torch.stack(scored))

    def scored_positions(self, length: int, max_len: int) -> torch.Tensor:
        return torch.arange(max_len) < length


class SequenceTask(Task):
    """Copy, reverse or sort a sequence of symbols 1..n_symbols: one prediction per position."""

    def __init__(self, name: str, n_symbols: int = 10) -> None:
        self.name, self.n_symbols = name, n_symbols
        self.vocab_size = self.output_size = n_symbols + 1

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(1, self.n_symbols + 1, (batch_size, length), generator=generator)
        if self.name == "copy":
            return x, x.clone()
        if self.name == "reverse":
            return x, x.flip(-1)
        return x, x.sort(dim=-1).values


class AssociativeRecallTask(Task):
    """k1 v1 k2 v2 ... kk vk q: predict the value that followed key q. Keys are distinct symbols
    1..n_keys, values n_keys+1..n_keys+n_values; only the final position is scored."""

    name = "recall"
    min_length = 3

    def __init__(self, n_keys: int = 16, n_values: int = 16) -> None:
        self.n_keys, self.n_values = n_keys, n_values
        self.vocab_size = self.output_size = 1 + n_keys + n_values

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = (length - 1) // 2
        if pairs > self.n_keys:
            raise ValueError(
                f"recall with {self.n_keys} keys holds at most {2 * self.n_keys + 1} positions, got {length}"
            )
        x = torch.full((batch_size, length), PAD, dtype=torch.long)
        y = torch.full((batch_size, length), IGNORE, dtype=torch.long)
        for row in range(batch_size):
            keys = torch.randperm(self.n_keys, generator=generator)[:pairs] + 1
            values = torch.randint(self.n_keys + 1, self.n_keys + self.n_values + 1, (pairs,), generator=generator)
            x[row, 0 : 2 * pairs : 2], x[row, 1 : 2 * pairs : 2] = keys, values
            pick = torch.randint(0, pairs, (1,), generator=generator).item()
            x[row, length - 1], y[row, length - 1] = keys[pick], values[pick]
        return x, y

    def scored_positions(self, length: int, max_len: int) -> torch.Tensor:
        return torch.arange(max_len) == length - 1


class SineForecastTask(Task):
    """A noisy sum of three sines of random frequency and phase; the last quarter of the window is
    hidden (value 0, flag 1) and the model regresses its true values (MSE)."""

    name = "sine"
    regression = True
    input_size = 2  # (value, hidden flag)
    output_size = 1
    min_length = 4

    def __init__(self, noise: float = 0.05) -> None:
        self.noise = noise

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(length, dtype=torch.float32)
        freq = torch.rand(batch_size, 3, 1, generator=generator) * 0.3 + 0.05  # radians per step
        phase = torch.rand(batch_size, 3, 1, generator=generator) * 2 * math.pi
        clean = torch.sin(freq * t + phase).sum(dim=1) / 3  # (B, n)
        series = clean + self.noise * torch.randn(clean.shape, generator=generator)
        hidden = torch.arange(length) >= length - self.horizon(length)
        inputs = torch.stack((series.masked_fill(hidden, 0.0), hidden.float().expand_as(series)), dim=-1)
        return inputs, clean

    @staticmethod
    def horizon(length: int) -> int:
        return max(1, length // 4)

    def scored_positions(self, length: int, max_len: int) -> torch.Tensor:
        pos = torch.arange(max_len)
        return (pos < length) & (pos >= length - self.horizon(length))


class TextTask(Task):
    """Next-character prediction on the bundled toy text (experiments/corpus.py): a window of the training
    text in, the same window shifted by one character out; every position is scored. Causal."""

    name = "text"
    causal = True

    def __init__(self) -> None:
        from experiments.corpus import default_corpus  # reads and checks the corpus only when asked for

        self.corpus = default_corpus()
        self.train_ids = torch.tensor(self.corpus.encode(self.corpus.train), dtype=torch.long)
        self.vocab_size = self.output_size = len(self.corpus.vocab) + 1  # id 0 is padding

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.train_ids) - length - 1, (batch_size,), generator=generator)
        windows = torch.stack([self.train_ids[s : s + length + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]


TASKS = {
    "copy": lambda: SequenceTask("copy"),
    "reverse": lambda: SequenceTask("reverse"),
    "sort": lambda: SequenceTask("sort"),
    "recall": AssociativeRecallTask,
    "sine": SineForecastTask,
    "text": TextTask,
}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]()
