"""A grid cell and a model shape: the two values bench passes around and analysis reads back. The cell's axes
(`CELL_AXES`) are its fields: every list of axes is derived from them, never written by hand."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from infra.registry import Entry, lookup

# The pass_index of a cell's untimed pass: its check, FLOPs, observed kernels, memory, compilation and trace,
# before its timed passes 0 .. passes-1, so that every timed pass does the same work.
FACTS_PASS = -1


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    d_model: int
    d_ff: int
    model_layers: int
    model_vocab: int


@dataclass(frozen=True)
class Cell:
    group: str
    device: str
    dtype: str
    shape: str = "small"
    seq_len: int = 0
    heads: int = 0
    impl: str = ""
    mode: str = ""
    dropout: float = 0.0
    pos_encoding: str = "none"
    compile: str = "eager"
    kv_heads: int = 0  # key/value heads, each shared by heads / kv_heads query heads (0: as many as heads)
    window: int = 0  # each query sees the keys within this distance (0: every key)
    # a variable-length batch (bench/varlen.py) in one layout: padded, nested or packed (none: every sequence n)
    varlen: str = "none"

    @property
    def id(self) -> str:
        """Unique in a grid, the same in every run of it: compare matches cells by it."""
        parts = [self.device, self.dtype, self.shape, f"n{self.seq_len}", f"h{self.heads}", self.impl, self.mode]
        if self.mode == "train" and self.group != "attention":
            parts.append(f"p{self.dropout:g}")
        if self.pos_encoding != "none":
            parts.append(self.pos_encoding)
        if self.compile != "eager":
            parts.append(self.compile)
        if self.kv_heads:
            parts.append(f"kv{self.kv_heads}")
        if self.window:
            parts.append(f"w{self.window}")
        if self.varlen != "none":
            parts.append(self.varlen)
        return "-".join(parts)

    @property
    def variant(self) -> dict[str, int]:
        """The attention variant as MultiHeadAttention takes it: {} for every key and as many key/value heads
        as query heads, the cells every run before the variants had."""
        return {k: v for k, v in (("kv_heads", self.kv_heads), ("window", self.window)) if v}

    @property
    def entry(self) -> Entry:
        """Who this cell's implementation is (the shared registry's entry; a user's from its name)."""
        return lookup(self.group, self.impl)

    @property
    def trace_name(self) -> str:
        """Folder of this cell's profiler trace: unique across groups, safe as a file name."""
        return f"{self.group}.{self.id}".replace(":", "_")

    def params(self) -> dict[str, Any]:
        """Plain parameters, as the results JSON and pytest-benchmark's --group-by=param:NAME see them."""
        return asdict(self)


# Every axis a cell varies along, in declaration order: the columns a run's table keys its cells by.
CELL_AXES: tuple[str, ...] = tuple(f.name for f in fields(Cell))
