"""PAIRS.md: whether the in-run pairs decide, on a run of `--profile pairs` (scripts/pairs_validation.sh).

Two user modules are timed in ABBA blocks beside sdpa in every cell: `same`, which is sdpa (an A/A: the
right word is "equivalent"), and `nine_percent_slower`, which busy-waits SLOWDOWN of its own time (the right
word is "slower"). Each is judged by the rule the report uses: the 20% trimmed mean of the block log ratios
with its Tukey-McLaughlin t interval, simultaneous over the run's comparisons, in three words with the 5%
margin (analysis.stats.decide).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError
from analysis.load import load_run, machine_description
from analysis.stats import MARGIN, WORDS, decide, family_confidence, in_run_interval
from infra.files import atomic_write_text

SAME = "examples.slowed_attention:same"
SLOWED = "examples.slowed_attention:nine_percent_slower"
SLOWDOWN = 0.09  # examples/slowed_attention.py's SLOWDOWN (a test keeps the two equal)
AA_EQUIVALENT = 0.95  # the bars: the A/A equivalent in at least 95% of its cells,
SLOWED_CAUGHT = 0.80  # the slowdown slower in at least 80%,
LOADED_FALSE_CALLS = 0.05  # and under load the A/A faster or slower in at most 5%


def judged(cells: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Each user cell paired with its yardstick (estimate, interval, half-width, word), and the level,
    simultaneous over all of them, each interval was taken at."""
    paired = cells[cells["impl"].isin([SAME, SLOWED]) & cells["partner_id"].notna()]
    if paired.empty:
        raise AnalysisError(f"no cell of {SAME} or {SLOWED} was timed as a pair: is this a --profile pairs run?")
    level = family_confidence(len(paired))
    rows = []
    for r in paired.to_dict("records"):
        i = in_run_interval(r["pair_log_ratios"], level)
        rows.append(
            {
                "impl": r["impl"].rpartition(":")[2],
                "mode": r["mode"],
                "seq_len": int(r["seq_len"]),
                "heads": int(r["heads"]),
                "blocks": i.blocks,
                "ratio": i.estimate,
                "low": i.low,
                "high": i.high,
                "half_width": i.half_width,
                "word": decide(i),
            }
        )
    return pd.DataFrame(rows).sort_values(["impl", "mode", "seq_len", "heads"]), level


def counts(words: pd.Series) -> str:
    c = words.value_counts()
    return ", ".join(f"{w} {int(c[w])}" for w in WORDS if c.get(w))


def bar(share: float, need: float, at_least: bool = True) -> str:
    return "met" if (share >= need if at_least else share <= need) else "missed"


def summary(table: pd.DataFrame, under_load: bool) -> list[str]:
    same, slowed = table[table["impl"] == SAME.rpartition(":")[2]], table[table["impl"] == SLOWED.rpartition(":")[2]]
    lines = []
    if len(same):
        equivalent = (same["word"] == "equivalent").mean()
        false = same["word"].isin(["faster", "slower"]).mean()
        lines.append(
            f"- A/A (`same`, which is sdpa), {len(same)} cells: {counts(same['word'])}. Equivalent in "
            f"{equivalent:.0%} (bar {AA_EQUIVALENT:.0%}: {bar(equivalent, AA_EQUIVALENT)}); judged faster or "
            f"slower, falsely, in {false:.0%}"
            + (
                f" (bar under load {LOADED_FALSE_CALLS:.0%}: {bar(false, LOADED_FALSE_CALLS, False)})"
                if under_load
                else ""
            )
            + f". Median ratio {same['ratio'].median():.4f}, median half-width {same['half_width'].median():.2%}."
        )
    if len(slowed):
        caught = (slowed["word"] == "slower").mean()
        lines.append(
            f"- A/B (`nine_percent_slower`, sdpa busy-waiting {SLOWDOWN:.0%} of its own time), {len(slowed)} "
            f"cells: {counts(slowed['word'])}. Slower in {caught:.0%} (bar {SLOWED_CAUGHT:.0%}: "
            f"{bar(caught, SLOWED_CAUGHT)}). Its measured slowdown: median x{slowed['ratio'].median():.3f} "
            f"(from x{slowed['ratio'].min():.3f} to x{slowed['ratio'].max():.3f} over its cells), median "
            f"half-width {slowed['half_width'].median():.2%}."
        )
    return lines


# When the rule above (and the 16-block floor) was fixed: it was chosen on the runs made before, so only a run
# made after it validates it, and each page says which its run is.
RULE_FIXED = datetime(2026, 12, 4, 16, 30, tzinfo=timezone.utc)


def provenance(after_rule: bool) -> str:
    if not after_rule:
        return (
            f"This run was made before the rule was fixed ({RULE_FIXED:%Y-%m-%d %H:%M} UTC) and was among the data "
            "it was chosen on (it was made with the median block log ratio, 8 blocks a pass): it does not validate "
            "the rule, it shows what the rule was chosen from."
        )
    return (
        f"This run was made after the rule was fixed ({RULE_FIXED:%Y-%m-%d %H:%M} UTC): nothing here was tuned on "
        "its data."
    )


UNDER_LOAD = "-under-load"  # how scripts/pairs_validation.sh --under-load names its run folder


def made_after_rule(facts: dict) -> bool:
    """Whether a run (its facts as analysis.load.load_run gives them) was made after the rule was fixed."""
    return datetime.fromisoformat(facts["recorded_at"]) >= RULE_FIXED


def sibling_tables(run_dir: Path, slug: str | None, under_load: bool) -> dict[str, pd.DataFrame]:
    """The judged tables of the validation runs beside this one (itself left out) on the same machine kind and
    under the same load, made after the rule was fixed: every one of them, so that none is left out of the
    pooled rates. Each run's JSON is read once."""
    out = {}
    for folder in sorted(run_dir.parent.glob("pairs-*")):
        if folder.name == run_dir.name or folder.name.endswith(UNDER_LOAD) != under_load:
            continue
        if not (folder / "benchmarks.json").is_file():
            continue
        cells, _, facts = load_run(folder / "benchmarks.json")
        if facts.get("machine_slug") == slug and made_after_rule(facts):
            out[folder.name] = judged(cells)[0]
    return out


def pooled(run_dir: Path, facts: dict, table: pd.DataFrame, under_load: bool) -> list[str]:
    """The bars over every run made after the rule was fixed on this machine kind, under this load (`table`:
    this run's, already judged): one run's 24 cells put a 95% rate within one cell of missing."""
    tables = sibling_tables(run_dir, facts.get("machine_slug"), under_load)
    if made_after_rule(facts):
        tables[run_dir.name] = table
    if len(tables) < 2:
        return []
    names = sorted(tables)
    return [
        f"## Pooled: the {len(names)} runs made after the rule was fixed on this machine kind, "
        + ("under load" if under_load else "idle"),
        "",
        f"Runs: {', '.join(names)} (every such run in {run_dir.parent.name}/, none left out).",
        "",
        *summary(pd.concat([tables[n] for n in names], ignore_index=True), under_load),
        "",
    ]


def pairs_page(run_dir: Path) -> str:
    """PAIRS.md's text for a --profile pairs run (one scripts/pairs_validation.sh made: its folder's name says
    whether another process kept a core busy)."""
    under_load = run_dir.name.endswith(UNDER_LOAD)
    cells, _, facts = load_run(run_dir / "benchmarks.json")
    table, level = judged(cells)
    load = (
        "with another process keeping one core busy the whole run (scripts/pairs_validation.sh --under-load), "
        "as on a laptop"
        if under_load
        else "on an otherwise idle machine"
    )
    lines = [
        f"# In-run pairs: A/A and a known slowdown ({run_dir.name})",
        "",
        f"Machine: {machine_description(facts)}; torch {facts.get('torch_version')}; commit "
        f"{str(facts.get('git_commit'))[:12]}. Run {load}.",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        provenance(made_after_rule(facts)),
        "",
        f"The {len(table)} intervals are simultaneous at 95% (each at {level:.3%}); margin {MARGIN:.0%}; "
        f"median {int(table['blocks'].median())} ABBA blocks a cell over {int(cells['passes'].max())} passes.",
        "",
        *summary(table, under_load),
        "",
        *pooled(run_dir, facts, table, under_load),
        "Every cell:",
        "",
        table.to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    return "\n".join(lines)


def write_pairs_validation(run_dir: Path) -> Path:
    out = run_dir / "PAIRS.md"
    atomic_write_text(out, pairs_page(run_dir))
    return out
