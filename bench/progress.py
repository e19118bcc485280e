"""A progress line for long runs: done and total, time spent, and the time left at the measured pace (the
cost model's prediction for what is left, scaled by how far the finished part was off)."""

from __future__ import annotations

import time

import pytest
from tqdm import tqdm

from bench.replan import Replanner

INTERVAL_S = 30.0


class Progress:
    def __init__(
        self,
        config: pytest.Config,
        predicted_s: dict[str, float],
        replanner: Replanner | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.config = config
        self.replanner = replanner  # where the budget is kept mid-run: its recent pace and what is still to come
        self.predicted_s = predicted_s  # nodeid -> predicted seconds of that item
        self.total_s = sum(predicted_s.values())
        self.interval_s = interval_s
        self.done_s = 0.0
        self.done = 0
        self.start = self.last = time.perf_counter()

    def line(self, now: float) -> str:
        elapsed = now - self.start
        if self.replanner is not None:  # the recent pace, over what is still to come (not what was left out)
            pace = self.replanner.pace(now)
            left = sum(i.predicted_s for i in self.replanner.still_to_come()) * pace
            dropped = len(self.replanner.left_out)
        else:
            pace = elapsed / self.done_s if self.done_s > 0 else 1.0  # actual over predicted, so far
            left, dropped = (self.total_s - self.done_s) * pace, 0
        note = f"; {dropped} items left out to keep the promise" if dropped else ""
        return (
            f"attnbench: {self.done}/{len(self.predicted_s)} items, {tqdm.format_interval(elapsed)} elapsed, "
            f"about {tqdm.format_interval(left)} left ({pace:.2f}x the cost model's pace){note}"
        )

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if nodeid not in self.predicted_s:
            return
        self.done += 1
        self.done_s += self.predicted_s[nodeid]
        now = time.perf_counter()
        if now - self.last >= self.interval_s and self.done < len(self.predicted_s):
            self.last = now
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line("")
                reporter.write_line(self.line(now))
