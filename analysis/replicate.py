"""Replicate agreement: two runs of the same grid, each from a fresh process, set comparison by comparison.

The rule, fixed before any run it judges: two ratios of the same comparison agree at 95% when
|z| <= 1.96, z = (ln r_A - ln r_B) / sqrt(se_A^2 + se_B^2), with each se the standard error of that run's log
ratio (its interval's). Honest intervals make about 95% of the shared ratios agree, and no comparison can be
"faster" in one run and "slower" in the other. The runs pass where at least AGREEMENT_BAR of their shared ratios
agree and no words contradict; `python -m analysis replicate` exits 1 otherwise.

Because each se is estimated from a few passes, z under honest intervals has tails a little heavier than a
normal's: the page also gives the count at the Welch t quantile of the two standard errors' degrees of freedom.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.comparisons import comparison_table
from analysis.load import load_run
from analysis.markdown import md
from infra.files import atomic_write_text

Z_95 = 1.96
AGREEMENT_BAR = 0.90  # the share of shared ratios that must agree at 95% (issue 39)
PAGE = "REPLICATE.md"
CSV = "replicate.csv"
OPPOSITE = {("faster", "slower"), ("slower", "faster")}


def _welch_quantile(se_a: float, se_b: float, df_a: float, df_b: float) -> float:
    total = se_a**2 + se_b**2
    parts = [(se**2) ** 2 / df for se, df in ((se_a, df_a), (se_b, df_b)) if df and df > 0]
    df = total**2 / sum(parts) if parts and all(df and df > 0 for df in (df_a, df_b)) else math.inf
    return float(stats.t.ppf(0.975, df)) if math.isfinite(df) else Z_95


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The comparisons both tables hold, side by side: both ratios, z, and whether they agree."""
    keys = ["id", "comparison"]
    cols = [*keys, "family", "ratio", "low", "high", "word", "log_se", "df", "units", "unit"]
    both = a[cols].merge(b[[c for c in cols if c != "family"]], on=keys, suffixes=("_a", "_b"))
    if both.empty:
        return both.assign(z=[], agree=[], agree_t=[], contradicts=[])
    diff = np.log(both["ratio_a"]) - np.log(both["ratio_b"])
    se = np.sqrt(both["log_se_a"] ** 2 + both["log_se_b"] ** 2)
    both["z"] = np.where(se > 0, diff / se.where(se > 0, 1.0), np.where(diff == 0, 0.0, np.inf))
    both["agree"] = both["z"].abs() <= Z_95
    quantiles = [
        _welch_quantile(r.log_se_a, r.log_se_b, r.df_a, r.df_b)
        for r in both[["log_se_a", "log_se_b", "df_a", "df_b"]].itertuples()
    ]
    both["agree_t"] = both["z"].abs() <= np.asarray(quantiles)
    both["contradicts"] = [(x, y) in OPPOSITE for x, y in zip(both["word_a"], both["word_b"], strict=True)]
    return both


def passes(both: pd.DataFrame) -> bool:
    return bool(len(both)) and both["agree"].mean() >= AGREEMENT_BAR and not both["contradicts"].any()


def page(both: pd.DataFrame, run_a: Path, run_b: Path, facts_a: dict, facts_b: dict) -> str:
    n = len(both)
    agree, agree_t, contra = int(both["agree"].sum()), int(both["agree_t"].sum()), int(both["contradicts"].sum())
    words_differ = int((both["word_a"] != both["word_b"]).sum())
    verdict = "met" if passes(both) else "missed"
    units = sorted(set(both["unit_a"]) | set(both["unit_b"])) if n else []
    by_family = (
        both.groupby("family")
        .agg(
            ratios=("z", "size"),
            agree=("agree", "sum"),
            median_abs_z=("z", lambda z: float(np.median(np.abs(z)))),
            words_differ=("word_a", lambda w: int((w != both.loc[w.index, "word_b"]).sum())),
        )
        .reset_index()
        if n
        else pd.DataFrame()
    )
    worst = both.reindex(both["z"].abs().sort_values(ascending=False).index).head(15)
    shown = worst[
        ["comparison", "id", "ratio_a", "low_a", "high_a", "ratio_b", "low_b", "high_b", "z", "word_a", "word_b"]
    ]
    lines = [
        f"# Replicate agreement: {run_a.name} against {run_b.name}",
        "",
        f"- A: `{run_a}`, commit {str(facts_a.get('git_commit'))[:10]}; B: `{run_b}`, commit "
        f"{str(facts_b.get('git_commit'))[:10]}.",
        "- **The rule, fixed before the runs:** two ratios of one comparison agree at 95% where |z| <= 1.96, "
        "z = (ln r_A - ln r_B) / sqrt(se_A² + se_B²), each se that run's own (its interval's). The runs replicate "
        f"where at least {AGREEMENT_BAR:.0%} of their shared ratios agree and no comparison is faster in one run "
        "and slower in the other.",
        f"- The intervals' unit: {', '.join(units) or 'none'} (passes: each pass's paired estimate, Student's t "
        "over the passes; blocks: blocks pooled across passes, the rule before schema 7).",
        "",
        f"**{verdict}**: {agree} of {n} shared ratios agree at 95% ({agree / n:.0%})"
        if n
        else "**missed**: the runs share no comparison",
    ]
    if n:
        lines[-1] += (
            f"; {agree_t} ({agree_t / n:.0%}) at the Welch t quantile of the two standard errors' degrees of "
            f"freedom; |z| > 3.29 in {int((both['z'].abs() > 3.29).sum())}. The words differ in {words_differ}, "
            f"and {contra} contradict (faster against slower)."
        )
        lines += ["", "## By family", "", md(by_family, ".2f"), "", "## The largest |z|", "", md(shown, ".4g")]
    return "\n".join(lines) + "\n"


def replicate(run_a: Path, run_b: Path, out: Path) -> tuple[pd.DataFrame, bool]:
    """Writes out/REPLICATE.md and out/replicate.csv; (the table, whether the runs replicate)."""
    loaded = []
    for run in (run_a, run_b):
        cells, _, facts = load_run(run / "benchmarks.json" if run.is_dir() else run)
        loaded.append((comparison_table(cells, facts), facts))
    (a, facts_a), (b, facts_b) = loaded
    both = agreement(a, b)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CSV, both.to_csv(index=False))
    atomic_write_text(out / PAGE, page(both, run_a, run_b, facts_a, facts_b))
    return both, passes(both)
