"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_csv(path: Path, rows: list[dict]) -> None:
    """Rows (dicts with the same keys) as a CSV with a header, written atomically."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())
