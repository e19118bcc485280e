"""The toy-text corpus of the language-model task: CPython 3.11 standard-library docstrings, bundled
(experiments/data/stdlib_docstrings.txt, built once by scripts/build_corpus.py), pinned by SHA-256 so every
machine trains on the same text. Characters are the vocabulary. Validation text is whole modules held out
from training (every tenth module), never a slice of a training document.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CORPUS_FILE = Path(__file__).with_name("data") / "stdlib_docstrings.txt"
CORPUS_SHA256 = "ca438e1b02a59b3a819627e22a4c36c99077cafd8298a4ebfba22c8d56482f88"
HELD_OUT_EVERY = 10  # every tenth module goes to validation
MODULE_HEADER = re.compile(r"^# (\S+)\n", re.MULTILINE)


class CorpusError(Exception):
    """The corpus is missing or is not the pinned text: one line, and nothing trains."""


@dataclass(frozen=True)
class Corpus:
    train: str
    validation: str
    vocab: tuple[str, ...]  # every character of the corpus, sorted; token id = index + 1 (0 is padding)
    sha256: str
    size_bytes: int

    def encode(self, text: str) -> list[int]:
        index = {c: i + 1 for i, c in enumerate(self.vocab)}
        return [index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i - 1] if 0 < i <= len(self.vocab) else "" for i in ids)

    def facts(self) -> dict[str, object]:
        """What every result records of the text it was trained on."""
        return {
            "corpus": CORPUS_FILE.name,
            "corpus_sha256": self.sha256,
            "corpus_bytes": self.size_bytes,
            "train_chars": len(self.train),
            "validation_chars": len(self.validation),
            "vocab": len(self.vocab),
        }


def load_corpus(path: Path = CORPUS_FILE, sha256: str = CORPUS_SHA256) -> Corpus:
    if not path.is_file():
        raise CorpusError(
            f"{path}: the corpus is missing (it ships with attnbench; scripts/build_corpus.py "
            "rebuilds it with CPython 3.11)"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"{path}: the corpus cannot be read ({err.strerror or type(err).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CorpusError(
            f"{path}: SHA-256 {digest[:16]}... differs from the pinned {sha256[:16]}...; refusing to "
            "train on different text"
        )
    text = data.decode("ascii")
    starts = [m.start() for m in MODULE_HEADER.finditer(text)] + [len(text)]
    modules = [text[a:b] for a, b in zip(starts, starts[1:])]
    train = "".join(m for i, m in enumerate(modules) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)
    validation = "".join(m for i, m in enumerate(modules) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)
    return Corpus(train, validation, tuple(sorted(set(text))), digest, len(data))


@cache
def default_corpus() -> Corpus:
    return load_corpus()


def unigram_bits(corpus: Corpus) -> float:
    """Bits per character on the validation text of character frequencies counted on the training text
    (add-one smoothed, so a character unseen in training still has a probability)."""
    counts = Counter(corpus.train)
    total, v = len(corpus.train), len(corpus.vocab)
    return -sum(math.log2((counts[c] + 1) / (total + v)) for c in corpus.validation) / len(corpus.validation)


def bigram_bits(corpus: Corpus) -> float:
    """Bits per character on the validation text of P(next | previous character) counted on the training
    text (add-one smoothed); the first character is scored by its unigram probability."""
    pairs = Counter(zip(corpus.train, corpus.train[1:]))
    firsts = Counter(corpus.train[:-1])
    v = len(corpus.vocab)
    text = corpus.validation
    bits = -math.log2((Counter(corpus.train)[text[0]] + 1) / (len(corpus.train) + v))
    bits -= sum(math.log2((pairs[(a, b)] + 1) / (firsts[a] + v)) for a, b in zip(text, text[1:]))
    return bits / len(text)
