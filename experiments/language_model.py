"""The character language model's measures: bits per character on held-out text at any evaluation length,
and a generated sample. Bits per character = cross-entropy in bits; perplexity per character = 2**bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from experiments.corpus import Corpus
from model import Encoder

EVAL_CHARS = 32_768  # the validation prefix every length is scored on: the same characters at L, 2L, 4L, 8L


class NotApplicable(Exception):
    """An evaluation the model cannot make (learned positions past their table): reported, not a number."""


def supported_length(model: Encoder) -> int | None:
    """The longest input the model's positions are defined for (a learned table's size); None: no limit."""
    table = getattr(model.positional, "table", None)
    return table.num_embeddings if isinstance(table, torch.nn.Embedding) else None


@torch.no_grad()
def validation_bits(
    model: Encoder, corpus: Corpus, length: int, device: str = "cpu", chars: int = EVAL_CHARS, batch_size: int = 16
) -> float:
    """Mean bits per character over non-overlapping windows of `length` covering the first `chars`
    characters of the validation text (each window predicts its own next characters)."""
    limit = supported_length(model)
    if limit is not None and length > limit:
        raise NotApplicable(f"{model.config.pos_encoding} positions are defined up to {limit}, not {length}")
    ids = torch.tensor(corpus.encode(corpus.validation[: chars + 1]), dtype=torch.long)
    windows = (len(ids) - 1) // length
    if windows < 1:
        raise ValueError(f"length {length} is longer than the {len(ids) - 1} validation characters scored")
    inputs = ids[: windows * length].view(windows, length)
    targets = ids[1 : windows * length + 1].view(windows, length)
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, windows, batch_size):
        x, y = inputs[start : start + batch_size].to(device), targets[start : start + batch_size].to(device)
        logits = model(x).float()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
    model.train(was_training)
    return total / (windows * length) / math.log(2)


@torch.no_grad()
def generate(
    model: Encoder, corpus: Corpus, prompt: str, n_chars: int, context: int, temperature: float = 0.8, seed: int = 0
) -> str:
    """`n_chars` characters sampled after `prompt`, the model seeing at most the last `context` characters."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = corpus.encode(prompt)
    was_training = model.training
    model.eval()
    for _ in range(n_chars):
        x = torch.tensor([ids[-context:]], dtype=torch.long, device=device)
        logits = model(x)[0, -1].float().cpu() / temperature
        logits[0] = -math.inf  # never the padding id
        ids.append(int(torch.multinomial(logits.softmax(-1), 1, generator=generator)))
    model.train(was_training)
    return corpus.decode(ids[len(corpus.encode(prompt)) :])
