"""The data-parallel run's report: scaling efficiency with intervals, communication's share of the step
(from each rank's trace), and the all-reduce volume against the bandwidth it achieved."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.errors import MissingDependency
from analysis.markdown import md
from analysis.stats import ratio_interval
from analysis.traces import LayerShape, find_traces, trace_breakdown
from infra.record import pass_trace_name

KEYS = ["impl", "scaling", "seq_len"]


def communication_shares(trace_dir: Path, cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell and pass: communication time per step and its share of the step, averaged over ranks,
    from tb-profiler's split of each rank's trace."""
    rows = []
    for cell in cells.to_dict("records"):
        for pass_index in range(int(cell["passes"])):
            folder = trace_dir / pass_trace_name(cell["trace_name"], pass_index)
            if not folder.is_dir():
                continue
            ranks = [
                trace_breakdown(path, LayerShape(int(cell["d_model"]), int(cell["d_ff"])))[1]
                for path in find_traces(folder)
            ]
            rows.append(
                {
                    "id": cell["id"],
                    "pass_index": pass_index,
                    "communication_s": np.mean([r["communication_s"] for r in ranks]),
                    "share": np.mean([r["communication_s"] / r["step_s"] for r in ranks]),
                }
            )
    return pd.DataFrame(rows, columns=["id", "pass_index", "communication_s", "share"])


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2 or np.std(values) == 0:
        return mean, mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def scaling_table(cells: pd.DataFrame, comm: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, scaling, world size): step time, efficiency against world size 1 with its interval
    (strong: T1 / (W T_W); weak: T1 / T_W, the throughput kept per rank), communication share, and the
    ring all-reduce volume 2 (W-1)/W x gradient bytes over the measured communication time."""
    rows = []
    for key, group in cells.groupby(KEYS):
        one = group[group["world"] == 1]
        for cell in group.sort_values("world").to_dict("records"):
            w = int(cell["world"])
            row = {**dict(zip(KEYS, key)), "world": w, "step_s": cell["median_s"]}
            if w == 1:
                row.update(efficiency=1.0, efficiency_low=1.0, efficiency_high=1.0)  # the reference itself
            elif len(one):
                r = ratio_interval(cell["device_passes_s"], one.iloc[0]["device_passes_s"])  # T_W / T_1
                scale = w if key[1] == "strong" else 1
                row.update(
                    efficiency=1 / (scale * r.estimate),
                    efficiency_low=1 / (scale * r.high),
                    efficiency_high=1 / (scale * r.low),
                )
            shares = comm[comm["id"] == cell["id"]]
            if len(shares):
                share = _t_interval(shares["share"].to_numpy())
                row["comm_share"], row["comm_share_low"], row["comm_share_high"] = share
                seconds = shares["communication_s"].mean()
                row["allreduce_mb"] = cell["allreduce_bytes_analytic"] / 1e6
                row["bandwidth_gb_s"] = cell["allreduce_bytes_analytic"] / seconds / 1e9 if seconds > 0 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def ddp_section(cells: pd.DataFrame, trace_dir: Path) -> tuple[list[str], pd.DataFrame]:
    ddp = cells[cells["group"] == "ddp"]
    comm = pd.DataFrame(columns=["id", "share"])
    if trace_dir.is_dir():
        try:
            comm = communication_shares(trace_dir, ddp)
        except MissingDependency as err:
            print(f"analysis: {err}", file=sys.stderr)
    table = scaling_table(ddp, comm)
    lines = [
        "## Data-parallel scaling",
        "",
        "Our encoder's full training step (model, loss, AdamW) under torch.distributed, launched by torchrun, "
        "one launch per world size and pass, passes interleaved. A step lasts as long as its slowest rank. "
        "Intervals are 95%: efficiency through the ratio of step times over passes, communication share over "
        "the passes' traces (tb-profiler's communication time per step over the step, averaged over ranks).",
        "",
    ]
    for r in table[table["world"] > 1].to_dict("records"):
        strong = r["scaling"] == "strong"
        what = "strong-scaling efficiency T1/(W·T_W)" if strong else "weak-scaling throughput kept T1/T_W"
        eff = (
            f"{what} {r['efficiency']:.2f} [{r['efficiency_low']:.2f}, {r['efficiency_high']:.2f}]"
            if not pd.isna(r.get("efficiency", np.nan))
            else f"{what}: no world-size-1 launch"
        )
        comm_text = (
            f"; communication {100 * r['comm_share']:.0f}% [{100 * r['comm_share_low']:.0f}, "
            f"{100 * r['comm_share_high']:.0f}]% of the step, {r['allreduce_mb']:.1f} MB all-reduced "
            f"({r['bandwidth_gb_s']:.2f} GB/s)"
            if not pd.isna(r.get("comm_share", np.nan))
            else ""
        )
        lines.append(f"- {r['impl']}, {r['scaling']}, W={r['world']}: {eff}{comm_text}.")
    return lines + ["", md(table, ".3g"), ""], table
