"""The language-model extrapolation experiment's summary.md and figure: perplexity per character against
evaluation length for each positional encoding (intervals over seeds), and ALiBi's claim ("train short,
test long": perplexity holds past the training length) judged met, missed or inconclusive on our data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis import figures
from analysis.load import read_runs_csv
from analysis.markdown import md
from analysis.stats import CONFIDENCE, Interval, verdict
from infra.files import atomic_write_text

HOLDS = 1.05  # perplexity at 4L within 5% of perplexity at L: the encoding "holds" past its training length
JUDGED_AT = 4  # the length factor the claim is judged at (the paper's figure runs to many times L)
COLUMNS = {"pos_encoding", "seed", "train_length", "eval_length", "length_factor", "applicable", "bits_per_char"}


def load_extrapolation(folder: Path) -> tuple[pd.DataFrame, dict]:
    runs = read_runs_csv(folder / "runs.csv", COLUMNS, f"python -m experiments.extrapolation --out {folder}")
    machine = folder / "machine.json"
    return runs, json.loads(machine.read_text()) if machine.is_file() else {}


def mean_interval(logs: np.ndarray) -> Interval:
    """exp of the mean of `logs` over seeds, with its t interval (a point where there is one seed)."""
    logs = np.asarray(logs, float)
    mean = float(logs.mean())
    if len(logs) < 2 or np.ptp(logs) == 0:
        return Interval(math.exp(mean), math.exp(mean), math.exp(mean), "seeds-t")
    ci = stats.ttest_1samp(logs, mean).confidence_interval(CONFIDENCE)
    return Interval(math.exp(mean), math.exp(ci.low), math.exp(ci.high), "seeds-t")


def perplexity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per encoding and evaluation length: perplexity per character (2**bits), mean over seeds, interval."""
    rows = []
    for (pos, length), group in runs.groupby(["pos_encoding", "eval_length"]):
        if not group["applicable"].all():
            rows.append({"pos_encoding": pos, "eval_length": length, "perplexity": None, "low": None, "high": None})
            continue
        t = mean_interval(group["bits_per_char"].to_numpy() * math.log(2))
        rows.append(
            {"pos_encoding": pos, "eval_length": length, "perplexity": t.estimate, "low": t.low, "high": t.high}
        )
    return pd.DataFrame(rows)


def growth(runs: pd.DataFrame, pos: str, factor: int) -> Interval | None:
    """Perplexity at factor x L over perplexity at L, per seed, as a ratio with its interval over seeds."""
    mine = runs[(runs["pos_encoding"] == pos) & runs["applicable"]]
    at_l = mine[mine["length_factor"] == 1].set_index("seed")["bits_per_char"]
    longer = mine[mine["length_factor"] == factor].set_index("seed")["bits_per_char"]
    seeds = at_l.index.intersection(longer.index)
    if seeds.empty:
        return None
    return mean_interval(((longer[seeds] - at_l[seeds]) * math.log(2)).to_numpy())


def cell(table: pd.DataFrame, pos: str, length: int) -> str:
    row = table[(table["pos_encoding"] == pos) & (table["eval_length"] == length)]
    if row.empty or pd.isna(row["perplexity"].iloc[0]):
        return "n/a (past its table)"
    r = row.iloc[0]
    return f"{r['perplexity']:.3g} [{r['low']:.3g}, {r['high']:.3g}]"


def judgement(runs: pd.DataFrame, pos: str) -> tuple[str, str]:
    """(verdict, sentence) for 'perplexity at JUDGED_AT x L stays within HOLDS of perplexity at L'."""
    g = growth(runs, pos, JUDGED_AT)
    if g is None:
        return "inconclusive", f"{pos}: not evaluated at {JUDGED_AT}L"
    word = verdict(g, HOLDS)
    return word, (
        f"{pos}: perplexity at {JUDGED_AT}L is {g.estimate:.3g}x its perplexity at L "
        f"[{g.low:.3g}, {g.high:.3g}] -> holds within {HOLDS - 1:.0%}: **{word}**"
    )


def write_summary(folder: Path) -> Path:
    runs, machine = load_extrapolation(folder)
    runs["applicable"] = runs["applicable"].astype(str).str.lower() == "true"
    table = perplexity_table(runs)
    train_length = int(runs["train_length"].iloc[0])
    lengths = sorted(runs["eval_length"].unique())
    encodings = sorted(runs["pos_encoding"].unique())
    seeds = runs.groupby("pos_encoding")["seed"].nunique()
    wide = pd.DataFrame([{"encoding": pos, **{f"n={n}": cell(table, pos, n) for n in lengths}} for pos in encodings])
    params = runs.groupby("pos_encoding")["parameters"].first()
    fig = figures.perplexity_vs_length(table, train_length, folder / "figures")
    alibi, alibi_line = judgement(runs, "alibi") if "alibi" in encodings else ("inconclusive", "alibi: not run")
    nope, nope_line = judgement(runs, "none") if "none" in encodings else ("inconclusive", "none: not run")
    others = [judgement(runs, pos)[1] for pos in encodings if pos not in ("alibi", "none", "learned")]
    best_at_l = table[table["eval_length"] == train_length].nsmallest(1, "perplexity").iloc[0]
    lines = [
        "# Train short, test long: positional encodings in a causal character language model",
        "",
        f"Causal language models trained at L={train_length} characters on the bundled toy text "
        f"({machine.get('corpus', 'corpus')}, {machine.get('corpus_bytes', '?')} bytes, SHA-256 "
        f"{str(machine.get('corpus_sha256', '?'))[:16]}...), "
        f"{seeds.min() if seeds.min() == seeds.max() else f'{seeds.min()}-{seeds.max()}'} seeds per encoding, "
        f"the same model, data and steps for each ({runs['steps'].iloc[0]} steps); parameters: "
        + ", ".join(f"{p} {n:,}" for p, n in params.items())
        + " (learned positions add their L x d table). Perplexity per character on held-out modules, the same "
        f"{machine.get('experiment', {}).get('eval_chars', '?')} characters at every length, "
        "mean over seeds with its 95% t interval. Baselines counted on the training text: a unigram model's "
        f"perplexity is {2 ** machine.get('unigram_bits', math.nan):.3g}, a bigram model's "
        f"{2 ** machine.get('bigram_bits', math.nan):.3g}.",
        "",
        md(wide),
        "",
        f"![perplexity against evaluation length]({fig.relative_to(folder)})",
        "",
        "## The claims, judged",
        "",
        f"Judged at {JUDGED_AT}L: an encoding holds if its perplexity there stays within {HOLDS - 1:.0%} of its "
        "perplexity at L (met: the whole interval over seeds below that; missed: the whole interval above).",
        "",
        f"- ALiBi's claim (Press et al.: perplexity holds past L). {alibi_line}.",
        f"- No positional encoding (Kazemnejad et al.: causal NoPE extrapolates). {nope_line}.",
        *[f"- {line}." for line in others],
        "- learned: not applicable past L (its table has L rows).",
        "",
        f"At L itself the lowest perplexity is {best_at_l['pos_encoding']}'s ({best_at_l['perplexity']:.3g}).",
        f"Machine: {machine.get('machine_slug', 'unknown')}, git {str(machine.get('git_commit', '?'))[:12]}.",
        "",
    ]
    path = folder / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path
