"""The positional-encoding experiment's results: its tidy CSV and its trained reverse models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import AnalysisError
from model.tasks import make_task
from model.training import load_model


def load_positional(folder: Path) -> pd.DataFrame:
    path = folder / "runs.csv"
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file (run python -m model.positional_experiment)")
    try:
        runs = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise AnalysisError(f"{path}: not a readable CSV ({err})") from None
    missing = {"task", "pos_encoding", "seed", "eval_length", "token_accuracy"} - set(runs.columns)
    if missing:
        raise AnalysisError(f"{path}: lacks columns {', '.join(sorted(missing))}")
    return runs


def reverse_attention_maps(folder: Path, length: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Last-layer attention, averaged over heads, of each kept reverse checkpoint on one fixed sequence
    of the training length. A model that learned reverse shows the anti-diagonal."""
    maps = {}
    for path in sorted((folder / "checkpoints").glob("reverse-*.pt")):
        model, config = load_model(path)
        n = length or config.seq_len
        batch = make_task("reverse").batch(1, n, n, torch.Generator().manual_seed(seed))
        maps[config.pos_encoding] = model.attention_maps(batch.inputs)[-1][0].mean(0).numpy()
    return maps
