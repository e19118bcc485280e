"""Every committed REPORT.md is what the committed code writes from its run's files (figures off): a change to
the analysis shows its diff in the reports, section by section, and a report cannot drift from its code. After a
deliberate change, regenerate them: python -m analysis report results/RUN for each."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from analysis.report.writer import render_report

ROOT = Path(__file__).parents[1]
REPORTS = sorted(p.parent for p in (ROOT / "results").glob("*/REPORT.md") if (p.parent / "benchmarks.json").is_file())


def text(report: str) -> str:
    return report.split("\n## Figures")[0]  # the figures are drawn files, not text


@pytest.mark.parametrize("run", REPORTS, ids=lambda p: p.name)
def test_a_committed_report_is_what_the_code_writes(run, monkeypatch):
    monkeypatch.chdir(ROOT)  # the report names its folder as the command that wrote it did: results/RUN
    rendered = text(render_report(run.relative_to(ROOT), draw=False))
    committed = text((run / "REPORT.md").read_text())
    if rendered != committed:
        diff = difflib.unified_diff(committed.splitlines(), rendered.splitlines(), "committed", "code", lineterm="")
        pytest.fail("\n".join(list(diff)[:60]), pytrace=False)


def test_every_committed_run_with_a_report_is_checked():
    assert len(REPORTS) >= 5 and any(p.name.startswith("cpu-") for p in REPORTS)
