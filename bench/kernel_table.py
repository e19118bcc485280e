"""The committed auto-kernel table (results/kernel_table.json, written by `python -m bench.autotune`) and
the chooser bench hands to every auto attention it builds: the model itself reads no table."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from model.attention import hand_chooser
from model.kernel_choice import KernelChooser, table_chooser

TABLE_FILE = Path(__file__).resolve().parents[1] / "results" / "kernel_table.json"


def bench_chooser() -> KernelChooser:
    return table_chooser(TABLE_FILE)


def with_table(module: nn.Module) -> nn.Module:
    """`module` with the committed table's choices handed to its auto attention, if it has one."""
    return hand_chooser(module, bench_chooser())
