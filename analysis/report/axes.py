"""Report sections for the grid's extra axes: what each positional encoding costs (joined with what it
learns), what compilation buys, and the user implementations benchmarked beside the built-ins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.markdown import md
from analysis.stats import cell_ratio
from infra.registry import yardsticks

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

SAME = ["group", "device", "dtype", "shape", "seq_len", "heads", "impl", "mode", "dropout"]


def _against(cells: pd.DataFrame, axis: str, baseline: str, keys: list[str]) -> pd.DataFrame:
    """Every cell whose `axis` is not `baseline`, beside the cell that differs only there."""
    base = cells[cells[axis] == baseline]
    other = cells[cells[axis] != baseline]
    merged = other.merge(base, on=[k for k in keys if k != axis], suffixes=("", "_base"))
    rows = []
    for r in merged.to_dict("records"):
        interval = cell_ratio(r)
        rows.append(
            {
                **{k: r[k] for k in keys},
                "time_vs_base": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "memory_vs_base": r["peak_mem_bytes"] / r["peak_mem_bytes_base"],
                "kernel": r["attention_kernel"],
                "kernel_base": r["attention_kernel_base"],
            }
        )
    return pd.DataFrame(rows)


def positional_cost_section(ctx: ReportContext) -> list[str]:
    cells, experiment = ctx.cells, ctx.experiment
    grid = cells
    grid = grid[(grid["compile"] == "eager") & grid["group"].isin(["layer", "train_step"])]
    if (grid["pos_encoding"] == "none").all():
        return []  # no encoding measured
    table = _against(grid, "pos_encoding", "none", [*SAME, "pos_encoding"])
    if table.empty:  # e.g. the cells without an encoding left out for time
        return [
            "## What each positional encoding costs",
            "",
            "_No cell with an encoding has the same cell without one in this run: nothing to compare._",
            "",
        ]
    lines = [
        "## What each positional encoding costs",
        "",
        "Device time and peak memory of the same cell with each encoding, over the cell without one (95% interval: "
        "from its in-run pairs where the run timed it beside the cell without one, pooling their blocks, else over "
        "passes), and the attention kernel each let run:",
        "",
        md(table.sort_values(["pos_encoding", "seq_len"]), ".3f"),
        "",
    ]
    if experiment is not None:
        L = int(experiment["train_length"].iloc[0])
        acc = experiment[experiment["task"].isin(["reverse", "sort"])].pivot_table(
            index="pos_encoding", columns=["task", "eval_length"], values="token_accuracy"
        )
        keep = [c for c in acc.columns if c[1] in (L, 2 * L)]
        acc = acc[keep]
        acc.columns = [f"{task} acc n={n}" for task, n in keep]
        longest = (
            table[table["seq_len"] == table["seq_len"].max()]
            .groupby("pos_encoding")[["time_vs_base", "memory_vs_base"]]
            .median()
        )
        joined = acc.join(longest, how="left").reset_index()
        lines += [
            f"Cost at the longest length measured (n={table['seq_len'].max()}, median over the cells) beside "
            "what "
            f"each encoding learned in the positional experiment (trained at L={L}; mean over seeds):",
            "",
            md(joined, ".3f"),
            "",
        ]
    return lines


def compile_section(ctx: ReportContext) -> list[str]:
    cells = ctx.cells
    grid = cells
    if grid["compile"].nunique() < 2 and (grid["compile"] == "eager").all():
        return []
    table = _against(grid, "compile", "eager", [*SAME, "pos_encoding", "compile"])
    if table.empty:
        return [
            "## What compilation buys",
            "",
            "_No compiled cell has the same cell run eagerly in this run: nothing to compare._",
            "",
        ]
    compiled = grid[grid["compile"] != "eager"]
    extra = compiled[["id", "first_call_s", "compile_s", "graph_breaks", "graph_break_reasons", "inductor_cache_hits"]]
    cached = int((compiled["inductor_cache_hits"].fillna(0) > 0).sum())
    cache_note = (
        f" In {cached} of {len(compiled)} compiled cells inductor served the graph from its on-disk cache "
        "(compiled earlier in this run or a previous one), so their first call measures loading it."
        if cached
        else ""
    )
    return [
        "## What compilation buys",
        "",
        "Warm device time of each compiled cell over the same cell run eagerly (95% interval: "
        "from its in-run pairs where the "
        "run timed it beside its eager self, else over passes). "
        "Compiled "
        "cells run after every eager cell's own passes, so compilation cannot disturb those timings; the eager "
        "side of an in-run pair is timed beside its compiled partner, after compilation. first_call_s is the first "
        "call's latency (compilation included), compile_s what it added over a warm call (for cudagraph: the "
        f"capture time).{cache_note}",
        "",
        md(table, ".3f"),
        "",
        md(extra, ".3g"),
        "",
    ]


KEYS = ["device", "dtype", "shape", "seq_len", "heads", "mode", "dropout", "pos_encoding", "compile"]


def user_section(ctx: ReportContext) -> list[str]:
    cells = ctx.cells
    grid = cells
    users = grid[grid["user"].astype(bool)]  # the registry's mark (analysis.load.upgrade marks older runs)
    if users.empty:
        return []
    lines = [
        "## User implementations",
        "",
        "Named on the command line as module:factory, checked against the float32 reference before any "
        "timing, and timed like the built-ins. Device time and peak memory against each built-in of the "
        "run (95% interval: from the in-run pairs against the first built-in, else over passes):",
        "",
    ]
    for group, data in users.groupby("group"):
        rows = {}
        for builtin in yardsticks(group):  # the built-ins the registry holds a user's against
            base = grid[(grid["group"] == group) & (grid["impl"] == builtin)]
            for r in data.merge(base, on=KEYS, suffixes=("", "_base")).to_dict("records"):
                row = rows.setdefault(
                    (r["impl"], r["mode"], r["dtype"], r["seq_len"]),
                    {
                        "impl": r["impl"],
                        "mode": r["mode"],
                        "dtype": r["dtype"],
                        "seq_len": r["seq_len"],
                        "check_error": r["check_relative_error"],
                        "kernel": r["attention_kernel"],
                        "flops_analytic": r["flops_analytic"],
                        "flops_counted": r["flops_counted"],
                    },
                )
                interval = cell_ratio(r)
                row[f"time_vs_{builtin}"] = f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]"
                row[f"memory_vs_{builtin}"] = r["peak_mem_bytes"] / r["peak_mem_bytes_base"]
        lines += [f"{group}:", "", md(pd.DataFrame(rows.values()), ".3g"), ""]
    return lines
