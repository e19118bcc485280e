"""Whose results a folder holds, and which folder a run writes into: a run writes only into a folder of its own
machine, never over another run. A machine whose folder already holds a run (a committed one, on a fresh clone)
gets a numbered folder of its own inside it, as pytest-benchmark's autosave numbers its files."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from infra.files import RUNS
from infra.machine import fingerprint, foreign_machine


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


def holds_run(folder: Path) -> bool:
    return (folder / "benchmarks.json").exists()


def next_numbered(folder: Path) -> Path:
    """The next free folder for another run of the machine whose run `folder` holds: folder/runs/0002-DATE on,
    numbered after every run there (the machine folder's own run counts as 0001)."""
    numbers = [int(p.name[:4]) for p in (folder / RUNS).glob("[0-9][0-9][0-9][0-9]*") if p.is_dir()]
    return folder / RUNS / f"{max(numbers, default=1) + 1:04d}-{time.strftime('%Y-%m-%d')}"


def machine_tag(here: dict) -> str:
    """Six hex digits of this machine's fingerprint: the folder beside another machine's that shares its slug."""
    return hashlib.sha256(json.dumps(fingerprint(here), sort_keys=True).encode()).hexdigest()[:6]


def folder_of_its_own(default: Path, here: dict) -> tuple[Path, str | None]:
    """Where a run given no --name (and no --replace) writes: its machine's folder while that holds no run;
    else a numbered folder inside it; and where the folder holds another machine's run under the same slug, the
    same beside it, named by this machine's fingerprint. Returns the folder and a line saying why it is not
    `default` (None where it is)."""
    folder, why = default, None
    if other_machine(default, here):
        folder = default.with_name(f"{default.name}-{machine_tag(here)}")
        why = f"{default} holds another machine's run of the same name"
    if holds_run(folder) and not other_machine(folder, here):
        numbered = next_numbered(folder)
        return numbered, f"{folder} holds an earlier run ({describe_run(folder / 'benchmarks.json')}), kept as it is"
    return folder, why


def describe_run(path: Path) -> str:
    """The run a benchmarks.json holds, in a few words."""
    try:
        facts = json.loads(path.read_text())["machine_info"]["attnbench"]
        return f"profile {facts.get('grid_profile')!r} at commit {str(facts.get('git_commit'))[:10]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a benchmarks.json attnbench cannot read"
