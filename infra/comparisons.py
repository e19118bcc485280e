"""The comparisons a run makes, each declared once: which axis varies, what its base is, whether bench times it
as an in-run pair, what the physics predicts for its ratio, the family its intervals are simultaneous over, and
its priority in the report. bench pairs cells from these declarations (bench/pairs.py); analysis builds each
comparison's table once per run from them (analysis/comparisons.py), and writes it to comparisons.csv.

A declaration's `base` maps a cell to the cell it is judged against, or None where the comparison does not
apply to it. Adding a comparison is one entry in COMPARISONS (and, at most, one renderer in analysis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from infra.cell import Cell
from infra.registry import HF_BERT_SDPA, OURS_AUTO_LAYER, OURS_BERT_LAYER, builtin, yardsticks

# What the physics predicts for a comparison's time ratio, computed by analysis from the two cells' facts:
PHYSICS = {
    "flops": "the ratio of the two cells' FLOPs (model/cost.py): time follows the work",
    "same work": "1: both sides do the same FLOPs, so a ratio away from 1 is the implementation's",
    "peak": "the ratio of the two dtypes' measured matmul peaks (the run's own): time follows the rate",
}


@dataclass(frozen=True)
class Comparison:
    name: str  # as comparisons.csv and the report name it: "new/base"
    axis: str  # the Cell field that differs between a cell and its base (CELL_AXES)
    question: str  # what it answers, in a few words
    base: Callable[[Cell], Cell | None]  # the cell this one is judged against; None: does not apply
    paired: bool  # timed in ABBA blocks beside its base inside each pass (CPU only; bench/pairs.py)
    physics: str  # a key of PHYSICS
    family: str  # the comparisons whose intervals are simultaneous together (Bonferroni over the family)
    priority: int  # the report's order, and what the budget keeps first: lower is more important
    # rendered by the report's generic section (analysis/report/comparison_sections.py); False: a section of its own
    section: bool = False


def _plain(cell: Cell) -> bool:
    """A cell on no variant axis: eager, no encoding, a built-in kernel, every sequence full, every key."""
    return (
        cell.compile == "eager"
        and cell.pos_encoding == "none"
        and not cell.entry.user
        and cell.varlen == "none"
        and not cell.window
        and not cell.kv_heads
    )


def _compiled_base(cell: Cell) -> Cell | None:
    return replace(cell, compile="eager") if cell.compile != "eager" and cell.pos_encoding == "none" else None


def _encoding_base(cell: Cell) -> Cell | None:
    return replace(cell, pos_encoding="none") if cell.compile == "eager" and cell.pos_encoding != "none" else None


def _user_base(cell: Cell) -> Cell | None:
    eager_plain = cell.compile == "eager" and cell.pos_encoding == "none"
    return replace(cell, impl=yardsticks(cell.group)[0]) if eager_plain and cell.entry.user else None


def _varlen_base(cell: Cell) -> Cell | None:
    plain_but_varlen = cell.compile == "eager" and cell.pos_encoding == "none" and not cell.entry.user
    return replace(cell, varlen="padded") if plain_but_varlen and cell.varlen not in ("none", "padded") else None


def _window_base(cell: Cell) -> Cell | None:
    """A window's physics is its growth: n against n/2 at the same window."""
    plain_but_window = replace(cell, window=0, kv_heads=0)  # grouped heads inside a window: still its growth
    return replace(cell, seq_len=cell.seq_len // 2) if cell.window and _plain(plain_but_window) else None


def _grouped_base(cell: Cell) -> Cell | None:
    return replace(cell, kv_heads=0) if cell.kv_heads and _plain(replace(cell, kv_heads=0)) else None


def _heads_base(cell: Cell) -> Cell | None:
    return replace(cell, heads=1) if cell.group == "attention" and cell.heads > 1 and _plain(cell) else None


def _length_base(cell: Cell) -> Cell | None:
    one_head = cell.group == "attention" and cell.heads == 1 and _plain(cell)
    return replace(cell, seq_len=cell.seq_len // 2) if one_head and cell.seq_len > 1 else None


def _layer_vs_torch(cell: Cell, auto: bool) -> Cell | None:
    entry = cell.entry
    if cell.group != "layer" or entry.baseline or not _plain(cell) or cell.impl == OURS_BERT_LAYER:
        return None
    if (cell.impl == OURS_AUTO_LAYER) != auto or entry.reference != "torch" or builtin("layer", "torch") is None:
        return None
    return replace(cell, impl="torch")


def _dtype_base(cell: Cell) -> Cell | None:
    """bfloat16 against float32, the same kernel and cell: what the narrower dtype buys on this device."""
    return replace(cell, dtype="float32") if cell.dtype == "bfloat16" and _plain(cell) else None


def _bert_base(cell: Cell) -> Cell | None:
    bert = cell.group == "layer" and cell.impl == OURS_BERT_LAYER and _plain(cell)
    return replace(cell, impl=HF_BERT_SDPA) if bert else None


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "n/(n/2)",
        "seq_len",
        "how attention's time grows with length",
        _length_base,
        True,
        "flops",
        "length",
        1,
    ),
    Comparison("h/1", "heads", "what head count does at a fixed width", _heads_base, True, "flops", "heads", 2),
    Comparison(
        "ours/torch",
        "impl",
        "our layer against nn.TransformerEncoderLayer",
        lambda c: _layer_vs_torch(c, auto=False),
        True,
        "same work",
        "ours-vs-torch",
        3,
    ),
    Comparison(
        "auto/torch",
        "impl",
        "our layer with the auto kernel against nn.TransformerEncoderLayer",
        lambda c: _layer_vs_torch(c, auto=True),
        True,
        "same work",
        "ours-vs-torch",
        3,
    ),
    Comparison(
        "bert/hf",
        "impl",
        "ours configured as BERT against Hugging Face's BertLayer (SDPA)",
        _bert_base,
        True,
        "same work",
        "bert",
        4,
    ),
    Comparison(
        "encoding/none",
        "pos_encoding",
        "what a positional encoding costs inside a layer",
        _encoding_base,
        True,
        "flops",
        "encodings",
        5,
    ),
    Comparison(
        "compiled/eager", "compile", "what compilation buys", _compiled_base, True, "same work", "compilation", 6
    ),
    Comparison(
        "gqa/dense",
        "kv_heads",
        "shared key/value heads against every head's own",
        _grouped_base,
        True,
        "flops",
        "variants",
        7,
    ),
    Comparison(
        "window n/(n/2)",
        "seq_len",
        "how a sliding window's time grows with length",
        _window_base,
        True,
        "flops",
        "variants",
        7,
    ),
    Comparison(
        "varlen/padded",
        "varlen",
        "a variable-length batch without its padding against it padded",
        _varlen_base,
        True,
        "flops",
        "variants",
        7,
    ),
    Comparison(
        "user/yardstick",
        "impl",
        "a user's module against its group's first yardstick",
        _user_base,
        True,
        "same work",
        "user",
        8,
    ),
    Comparison(
        "bf16/f32",
        "dtype",
        "what bfloat16 buys over float32, kernel by kernel",
        _dtype_base,
        False,
        "peak",
        "dtype",
        9,
        section=True,
    ),
)
BY_NAME = {c.name: c for c in COMPARISONS}


def comparisons_of(cell: Cell) -> list[tuple[Comparison, Cell]]:
    """Every declared comparison that applies to this cell, with its base, by priority."""
    out = []
    for comparison in sorted(COMPARISONS, key=lambda c: c.priority):
        base = comparison.base(cell)
        if base is not None:
            out.append((comparison, base))
    return out
