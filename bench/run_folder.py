"""Whose results a folder holds: a run writes only into a folder of its own machine, never over another's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from infra.machine import foreign_machine


def recorded_machines(folder: Path) -> list[tuple[Path, dict]]:
    """The machine facts of every run in the folder: its own benchmarks.json and those one level down
    (a noise-floor folder holds one run per subfolder)."""
    out = []
    for path in [folder / "benchmarks.json", *sorted(folder.glob("*/benchmarks.json"))]:
        try:
            out.append((path, json.loads(path.read_text())["machine_info"]["attnbench"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no run there, or not one of ours: nothing to protect
    return out


def other_machine(folder: Path, here: dict) -> str | None:
    """Why this machine must not write into `folder`, in one line, or None when it may."""
    recorded = [(path.name, facts) for path, facts in recorded_machines(folder)]
    way_out = "this machine's results go in a folder of their own: pass --name NAME, or --results DIR"
    return foreign_machine(folder, recorded, here, way_out)


def refused(folder: Path, here: dict) -> bool:
    """Print the one-line refusal to stderr where `folder` holds another machine's run; True: stop (exit 2)."""
    reason = other_machine(folder, here)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
    return reason is not None
