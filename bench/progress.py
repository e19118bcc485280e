"""A progress line for long runs: done and total, time spent, and the time left at the measured pace (the
cost model's prediction for what is left, scaled by how far the finished part was off)."""

from __future__ import annotations

import time

import pytest
from tqdm import tqdm

INTERVAL_S = 30.0


class Progress:
    def __init__(self, config: pytest.Config, predicted_s: dict[str, float], interval_s: float = INTERVAL_S) -> None:
        self.config = config
        self.predicted_s = predicted_s  # nodeid -> predicted seconds of that item
        self.total_s = sum(predicted_s.values())
        self.interval_s = interval_s
        self.done_s = 0.0
        self.done = 0
        self.start = self.last = time.perf_counter()

    def line(self, now: float) -> str:
        elapsed = now - self.start
        pace = elapsed / self.done_s if self.done_s > 0 else 1.0  # actual over predicted, so far
        left = (self.total_s - self.done_s) * pace
        return (
            f"attnbench: {self.done}/{len(self.predicted_s)} items, {tqdm.format_interval(elapsed)} elapsed, "
            f"about {tqdm.format_interval(left)} left ({pace:.2f}x the cost model's pace)"
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
