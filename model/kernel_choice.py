"""The `auto` attention kernel: per (device, dtype, train or eval, dropout, length), the kernel that
ran fastest on this machine, as measured by the suite itself (`python -m bench.autotune`) and kept
in kernel_table.json together with the machine it was measured on.

Kernels: `naive` (explicit softmax, materialises the scores), `blocked` (the same, a block of queries at
a time), `sdpa` (let SDPA's dispatcher pick) and the SDPA backends forced one at a time: `flash`,
`efficient`, `cudnn`, `math`. A machine with no
entries in the table gets `sdpa`: SDPA's own dispatcher decides, and nothing is guessed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("kernel_table.json")
KERNELS = ("naive", "blocked", "sdpa", "flash", "efficient", "cudnn", "math")
FALLBACK = "sdpa"


@dataclass(frozen=True)
class Choice:
    device: str  # "cpu" or "cuda"
    dtype: str  # as torch prints it: float32, bfloat16, float16
    train: bool  # forward+backward (True) or inference forward (False)
    dropout: bool  # attention dropout > 0
    seq_len: int
    kernel: str


def read_table(path: Path = TABLE_FILE) -> dict:
    """{"machines": {slug: {"facts": {...}, "choices": [...]}}}; an empty table when there is no file."""
    if not path.is_file():
        return {"machines": {}}
    data = json.loads(path.read_text())
    for slug, entry in data.get("machines", {}).items():
        for choice in entry.get("choices", []):
            if choice.get("kernel") not in KERNELS:
                raise ValueError(f"{path}: machine {slug!r} has kernel {choice.get('kernel')!r}; one of {KERNELS}")
    return data


def _choice(row: dict) -> Choice:
    return Choice(**{k: row[k] for k in ("device", "dtype", "train", "dropout", "seq_len", "kernel")})


@cache
def choices_for(slugs: tuple[str, ...], path: Path = TABLE_FILE) -> tuple[Choice, ...]:
    """Every choice measured on these machines (a CPU slug and, where there is one, a GPU slug)."""
    machines = read_table(path)["machines"]
    return tuple(_choice(c) for slug in slugs for c in machines.get(slug, {}).get("choices", []))


def choose(
    choices: tuple[Choice, ...], device: str, dtype: str, seq_len: int, dropout: bool, train: bool
) -> str:
    """The kernel measured fastest for the nearest measured length (in log space) under the same
    device, dtype, pass and dropout; FALLBACK where nothing was measured for them."""
    candidates = [c for c in choices if (c.device, c.dtype, c.train, c.dropout) == (device, dtype, train, dropout)]
    if not candidates:
        return FALLBACK
    nearest = min(candidates, key=lambda c: (abs(math.log(c.seq_len / seq_len)), c.seq_len))
    return nearest.kernel
