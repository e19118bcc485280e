"""The comparisons a run declares (infra/comparisons.py), timed as pairs inside each pass.

A cell with a partner times its rounds in ABBA blocks with the partner's step (this cell, the partner, the
partner, this cell): the machine's drift over a block hits both sides alike, so the ratio of a block is
nearly free of it. A pair is made only where both cells are in the run, and only on a CPU (on CUDA the
device time comes from graph replays, which a host-side alternation would not pair).
"""

from __future__ import annotations

from dataclasses import replace

from bench.cell import Cell
from infra.comparisons import comparisons_of

PAIRED_DEVICES = ("cpu",)


def partner(cell: Cell) -> Cell | None:
    """The base of the cell's paired comparison (its declarations' paired ones apply to disjoint cells), or None:
    judged alone."""
    if cell.device not in PAIRED_DEVICES:
        return None
    paired = [base for comparison, base in comparisons_of(cell) if comparison.paired]
    return paired[0] if paired else None


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
