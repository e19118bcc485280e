"""Whether the machine was busy while the run measured, above the findings: other processes' share of the cores
during each timed pass (infra/machine_load.py), the cells measured then, and what the run left out as it went
to keep its promise (bench/replan.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.markdown import md
from infra.machine_load import BUSY_SHARE

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

MID_RUN = "left out mid-run"  # the start of the reason bench/replan.py gives


def load_section(ctx: ReportContext) -> list[str]:
    cells = ctx.every_cell
    if "others_cpu_share_max" not in cells or cells["others_cpu_share_max"].isna().all():
        return []  # a run from before the load was recorded (schema 6)
    share = cells["others_cpu_share_max"].dropna()  # a pass under 0.05 s is too short to read the load of
    unread = len(cells) - len(share)
    unread_note = f" ({unread} cells' passes were too short to read it)" if unread else ""
    busy = cells[cells["others_cpu_share_max"] > BUSY_SHARE]
    dropped = ctx.not_run[ctx.not_run["reason"].str.startswith(MID_RUN)] if len(ctx.not_run) else ctx.not_run
    fewer = cells[cells["passes"] < int(ctx.facts.get("passes") or 1)]
    lines = ["## How busy the machine was", ""]
    if busy.empty:
        lines.append(
            f"Other processes used at most {share.max():.0%} of the machine's cores while any cell was timed "
            f"(read for every pass of {len(share)} cells{unread_note}): the machine was quiet."
        )
    else:
        lines.append(
            f"**The machine was busy.** Other processes used more than {BUSY_SHARE:.0%} of its cores (up to "
            f"{busy['others_cpu_share_max'].max():.0%}, median {busy['others_cpu_share_max'].median():.0%}) while "
            f"{len(busy)} of the {len(share)} cells whose load was read were timed{unread_note}: their times, and "
            "every ratio and verdict that rests on them, carry that load."
        )
    if len(dropped) or len(fewer):
        lines.append(
            f"To keep the run's first-line promise, {len(dropped)} cells were left out as it went and "
            f"{len(fewer)} kept fewer than {ctx.facts.get('passes')} passes (each reason in benchmarks.json)."
        )
    if len(busy):
        table = busy[["id", "others_cpu_share_max", "passes"]].sort_values("others_cpu_share_max", ascending=False)
        lines += [
            "",
            "<details><summary>The cells timed while the machine was busy</summary>",
            "",
            md(table.rename(columns={"others_cpu_share_max": "others' share of the cores, most in a pass"})),
            "",
            "</details>",
        ]
    return [*lines, ""]
