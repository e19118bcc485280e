"""The comparisons a run declares, timed as pairs inside each pass.

A cell with a partner times its rounds in ABBA blocks with the partner's step (this cell, the partner, the
partner, this cell): the machine's drift over a block hits both sides alike, so the ratio of a block is
nearly free of it. A pair is declared only where both cells are in the run, and only on a CPU (on CUDA the
device time comes from graph replays, which a host-side alternation would not pair).
"""

from __future__ import annotations

from dataclasses import replace

from bench.cell import Cell
from infra.registry import HF_BERT_SDPA, OURS_BERT_LAYER, builtin, yardsticks

PAIRED_DEVICES = ("cpu",)


def partner(cell: Cell) -> Cell | None:
    """The cell this one is judged against, by the report's declared comparisons (None: judged alone):
    a user implementation against its group's first yardstick (attention: sdpa; layer: ours); our layer
    against the group's baseline (torch), ours as BERT against Hugging Face's SDPA layer; a positional
    encoding against none, and a compiled cell against its eager self. A built-in attention kernel's plain
    cell is paired along the axes the report reads it on: h heads against one head of the same length, and
    one head at n against one head at n/2 (the scaling's local exponent, on the grid's doubling lengths).
    The attention variants: a window at n against the same window at n/2 (its growth), grouped key/value heads
    against the cell with every head's own, a variable-length batch nested or packed against the same tokens
    padded."""
    if cell.device not in PAIRED_DEVICES:
        return None
    entry = cell.entry
    if cell.compile != "eager":
        return replace(cell, compile="eager") if cell.pos_encoding == "none" else None
    if cell.pos_encoding != "none":
        return replace(cell, pos_encoding="none")
    if entry.user:
        return replace(cell, impl=yardsticks(cell.group)[0])
    if cell.varlen != "none":  # the same tokens without the padding's work, against them padded
        return replace(cell, varlen="padded") if cell.varlen != "padded" else None
    if cell.window:  # a window's physics is its growth: n against n/2 at the same window
        return replace(cell, seq_len=cell.seq_len // 2) if cell.seq_len > 1 else None
    if cell.kv_heads:  # grouped key/value heads against every head's own
        return replace(cell, kv_heads=0)
    if cell.group == "attention":
        if cell.heads > 1:
            return replace(cell, heads=1)
        return replace(cell, seq_len=cell.seq_len // 2) if cell.seq_len > 1 else None
    if cell.group != "layer" or entry.baseline:
        return None
    if cell.impl == OURS_BERT_LAYER:
        return replace(cell, impl=HF_BERT_SDPA)
    if entry.reference == "torch" and builtin("layer", "torch") is not None:
        return replace(cell, impl="torch")
    return None


def declared_partners(cells: list[Cell]) -> dict[str, Cell]:
    """Cell id -> its partner, for the cells whose partner also runs here (the same list: runnable cells)."""
    present = {c.id for c in cells}
    out = {}
    for cell in cells:
        other = partner(cell)
        if other is not None and other.id not in present and cell.window:
            other = replace(cell, window=0)  # the window's shortest length: against the same cell without it
        if other is not None and other.id in present:
            out[cell.id] = other
    return out
