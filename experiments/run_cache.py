"""The experiments' runs in parallel, one process per core, each run's rows cached as soon as it finishes
(`runs/NAME.json`, with the config that made them), so an interrupted experiment picks up where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from experiments.trainer import TrainConfig
from infra.files import atomic_write_text


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
