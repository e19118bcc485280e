"""The positional-encoding experiment's results: its tidy CSV, its trained reverse models, and its
summary.md (tables and findings computed from the runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from analysis.errors import AnalysisError
from analysis.load import read_runs_csv
from experiments.tasks import make_task
from experiments.trainer import load_model
from infra.files import atomic_write_text

HOLDS, COLLAPSES = 0.10, 0.5  # accuracy lost from L to 2L: "holds" below the first, "collapses" above half
LEARNED = 0.9  # accuracy at L below which an encoding did not learn the task: holding past L is then no test


def positional_folder(results: Path, machine_slug: str | None = None) -> Path:
    """Where a report or notebook finds the experiment beside a run in `results`: this machine's own
    (positional-SLUG), else the only or last other positional-* folder, else the folder of before
    per-machine folders (positional/). Learning curves barely depend on the machine; its name says whose."""
    own = results / f"positional-{machine_slug}"
    others = sorted(p for p in results.glob("positional-*") if (p / "runs.csv").is_file())
    return own if (own / "runs.csv").is_file() else others[-1] if others else results / "positional"


def load_positional(folder: Path) -> pd.DataFrame:
    columns = {"task", "pos_encoding", "seed", "eval_length", "train_length", "token_accuracy"}
    return read_runs_csv(folder / "runs.csv", columns, "python -m experiments.positional_experiment")


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


def _fmt(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def accuracy_tables(runs: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    L = int(runs["train_length"].iloc[0])
    lengths = sorted(runs["eval_length"].unique())
    lines = []
    for task, data in runs.groupby("task", sort=False):
        header = " | ".join(f"n={n}" + (" (L)" if n == L else "") for n in lengths)
        lines += [
            f"### {task}: token accuracy, mean ± std over seeds",
            "",
            f"| encoding | {header} |",
            "|---" * (len(lengths) + 1) + "|",
        ]
        for pos, rows in data.groupby("pos_encoding", sort=False):
            mark = {n: "*" if pos == "learned" and n > L else "" for n in lengths}
            cells = [_fmt(rows[rows["eval_length"] == n]["token_accuracy"]) + mark[n] for n in lengths]
            lines.append(f"| {pos} | " + " | ".join(cells) + " |")
        base = baselines[baselines["task"] == task].set_index("eval_length")["bag_mode_accuracy"]
        lines += ["| bag-of-tokens baseline | " + " | ".join(f"{base[n]:.3f}" for n in lengths) + " |", ""]
    return lines


def extrapolation(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and encoding: accuracy at L and 2L, and the drop between them with a t interval over
    seeds (paired: each seed's own drop)."""
    L = int(runs["train_length"].iloc[0])
    rows = []
    for (task, pos), data in runs.groupby(["task", "pos_encoding"], sort=False):
        at = data.pivot_table(index="seed", columns="eval_length", values="token_accuracy")
        if L not in at or 2 * L not in at:
            continue
        drop = at[L] - at[2 * L]
        low, high = (
            (drop.mean(), drop.mean())
            if len(drop) < 2 or drop.std() == 0
            else stats.t.interval(0.95, len(drop) - 1, loc=drop.mean(), scale=drop.std(ddof=1) / np.sqrt(len(drop)))
        )
        rows.append(
            {
                "task": task,
                "pos_encoding": pos,
                "seeds": len(drop),
                "acc_L": at[L].mean(),
                "acc_2L": at[2 * L].mean(),
                "drop": drop.mean(),
                "drop_low": low,
                "drop_high": high,
            }
        )
    return pd.DataFrame(rows)


def holds_word(row: pd.Series) -> str:
    """holds / collapses / degrades, only where the seeds' interval says so; else 'unclear'; and no word
    at all for an encoding that did not learn the task at L."""
    if row["acc_L"] < LEARNED:
        return f"it did not learn the task at L ({row['acc_L']:.3f} < {LEARNED}), so this is no test of holding"
    if row["drop_high"] < HOLDS:
        return "holds"
    if row["drop_low"] > COLLAPSES * row["acc_L"]:
        return "collapses"
    if row["drop_low"] >= HOLDS:
        return "degrades"
    return "unclear"


def alibi_findings(runs: pd.DataFrame) -> list[str]:
    """Press et al.'s claim, tested with an encoding that can tell left from right."""
    table = extrapolation(runs)
    L = int(runs["train_length"].iloc[0])
    out = [
        f"**Does ALiBi hold past the training length?** Press et al. (2022) found ALiBi keeps its accuracy past "
        f"L while sinusoidal positions collapse. The symmetric form here (bias -m|i-j|) cannot tell left from "
        f"right, so reverse and sort cannot test it; `alibi_directional` uses separate slopes for keys before and "
        f"after the query. Accuracy lost from L={L} to 2L (mean over seeds, 95% t interval; 'holds' when the "
        f"whole interval is under {HOLDS:.2f}, 'collapses' when it is over half the accuracy at L; judged only "
        f"where the encoding learned the task at L, to at least {LEARNED}):"
    ]
    for task in ("reverse", "sort"):
        rows = table[(table["task"] == task) & table["pos_encoding"].isin(["alibi_directional", "alibi", "sinusoidal"])]
        for r in rows.itertuples(index=False):
            word = holds_word(pd.Series(r._asdict()))
            out.append(
                f"- {task}, {r.pos_encoding}: {r.acc_L:.3f} at L → {r.acc_2L:.3f} at 2L, drop {r.drop:+.3f} "
                f"[{r.drop_low:+.3f}, {r.drop_high:+.3f}] over {r.seeds} seeds: {word}."
            )
    return out


def findings(runs: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    L, longest = int(runs["train_length"].iloc[0]), int(runs["eval_length"].max())
    acc = runs.groupby(["task", "pos_encoding", "eval_length"])["token_accuracy"]
    mean = acc.mean()
    out = [
        "## Findings",
        "",
        "**Sinusoidal vs learned at the training length.** Vaswani et al. (2017), Table 3 "
        "row (E): "
        "learned positional embeddings instead of sinusoids gave 4.92 vs 4.92 dev perplexity and 25.7 vs 25.8 BLEU, "
        "no real difference. Here:",
    ]
    for task in runs["task"].unique():
        if (task, "sinusoidal", L) in mean and (task, "learned", L) in mean:
            sin, learned = acc.get_group((task, "sinusoidal", L)), acc.get_group((task, "learned", L))
            spread = max(sin.std(ddof=1), learned.std(ddof=1), 1e-3)
            diff = sin.mean() - learned.mean()
            word = "within" if abs(diff) <= 2 * spread else "larger than"
            out.append(
                f"- {task}: sinusoidal {_fmt(sin)}, learned {_fmt(learned)}; difference {diff:+.3f}, {word} "
                "twice the spread over seeds."
            )
    out += ["", f"**Extrapolation (trained on lengths {L // 2}..{L}).** Accuracy at L → 2L → {longest // L}L:"]
    for task in runs["task"].unique():
        parts = [
            f"{pos} {mean[(task, pos, L)]:.3f} → {mean[(task, pos, 2 * L)]:.3f} → {mean[(task, pos, longest)]:.3f}"
            for pos in runs["pos_encoding"].unique()
            if (task, pos, L) in mean
        ]
        out.append(f"- {task}: " + "; ".join(parts) + ".")
    out += [
        "",
        *alibi_findings(runs),
        "",
        "**No positional encoding.** Without positions the encoder is "
        "permutation-equivariant: the prediction at a position depends on that position's token and the bag of "
        "all tokens, never on where it stands. Reverse and sort need where; copy does not.",
    ]
    base = baselines.set_index(["task", "eval_length"])["bag_mode_accuracy"]
    for task in runs["task"].unique():
        if (task, "none", L) in mean:
            out.append(
                f"- {task}: none reaches {_fmt(acc.get_group((task, 'none', L)))} at L; the bag-of-tokens "
                f"baseline (always predict the sequence's most frequent symbol) is {base[(task, L)]:.3f}."
            )
    return out + [
        "",
        f"\\* Learned positions past L = {L}: the table has {longest} rows so the model can be run "
        "there, "
        "but rows past L never received a gradient (they keep their random initialisation).",
    ]


def write_summary(folder: Path) -> Path:
    """summary.md of an experiment folder (runs.csv, baselines.csv, machine.json)."""
    runs = load_positional(folder)
    for name in ("baselines.csv", "machine.json"):
        if not (folder / name).is_file():
            raise AnalysisError(f"{folder / name}: no such file (run python -m experiments.positional_experiment)")
    baselines = pd.read_csv(folder / "baselines.csv")
    machine = json.loads((folder / "machine.json").read_text())
    exp = machine["experiment"]
    seconds = runs[runs["length_ratio"] == 1.0]["train_seconds"].sum()
    head = [
        "# Positional-encoding experiment",
        "",
        f"Tasks {', '.join(exp['tasks'])}; encodings {', '.join(exp['encodings'])}; {exp['seeds']} seeds; trained "
        f"{exp['steps']} steps on lengths {exp['seq_len'] // 2}..{exp['seq_len']} (L = {exp['seq_len']}), "
        "evaluated "
        f"on 512 fixed examples per length. Machine: {machine['cpu_model']}, torch {machine['torch_version']}, "
        f"commit {machine['git_commit']}. Total training time {seconds / 60:.1f} min (one core per run). "
        "Written by "
        "`python -m analysis positional` from runs.csv.",
        "",
    ]
    out = folder / "summary.md"
    atomic_write_text(out, "\n".join(head + accuracy_tables(runs, baselines) + findings(runs, baselines)) + "\n")
    return out
