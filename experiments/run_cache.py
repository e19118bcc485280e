"""The experiments' runs in parallel, one process per core, each run's rows cached as soon as it finishes
(`runs/NAME.json`, with the config that made them), so an interrupted experiment picks up where it stopped.
A folder another machine wrote (its machine.json) is never resumed or added to."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from experiments.trainer import TrainConfig
from infra.files import atomic_write_text
from infra.machine import foreign_machine


def other_machine(out: Path, machine: dict) -> str | None:
    """Why this machine must not write into `out`, in one line, or None: its machine.json names another
    machine, whose cached runs and summary must never mix with this one's."""
    recorded = out / "machine.json"
    facts = [(recorded.name, json.loads(recorded.read_text()))] if recorded.is_file() else []
    return foreign_machine(out, facts, machine, "give --out")


def is_cached(path: Path, config: TrainConfig) -> bool:
    """Finished in an earlier run, with this very config."""
    return path.exists() and json.loads(path.read_text())["config"] == asdict(config)


def train_pending(jobs: dict[Path, tuple], run_one: Callable[..., list[dict]], workers: int) -> None:
    """run_one(*args) for each job (args[0] is its TrainConfig), its rows written to the job's path."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_one, *args): path for path, args in jobs.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
            path = futures[future]
            atomic_write_text(path, json.dumps({"config": asdict(jobs[path][0]), "rows": future.result()}))


def cached_rows(cache: Path) -> list[dict]:
    return [row for path in sorted(cache.glob("*.json")) for row in json.loads(path.read_text())["rows"]]
