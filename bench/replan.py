"""The time budget kept as the run goes: the plan is made from probes at the start, and a machine that gets
busy mid-run (a build, a browser, another benchmark) would run far past it. After each item the run's recent
pace (actual seconds over the cost model's, over the last minute) projects when it will end; while that
passes the first line's promise and the machine is busy (other processes or other VMs took a share of its cores
over that minute) or the pace is far off (more than the cost model's own wobble on an idle machine), what is
still to come and matters least is left out, each with its reason:
first the last timed passes (every cell keeps its first, so every question is still answered, with fewer passes),
longest and costliest cells first, then whole cells not yet begun. A declared pair goes together."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import pytest

from bench.cell import Cell
from infra.machine_load import CpuClock, others_share, read_clock

TRIGGER = 1.10  # leave out what is to come once the projected end passes the promise by this factor ...
TARGET = 1.05  # ... until it is back within this one (the cost model is itself a few per cent off)
SLACK_S = 20.0  # and by at least this much: a run of seconds is never cut for being seconds late
WINDOW_S = 60.0  # the recent pace is measured over the items that ended in the last minute
MIN_WINDOW_PREDICTED_S = 20.0  # ... when they stand for at least this much predicted time; else the whole run's
SETTLE_S = 60.0  # no decision in the run's first minute: its first items (facts passes) are the cost model's least sure
CHECK_EVERY_S = 5.0
# On an idle machine the last minute's pace wobbles with which cells it holds, the cost model being a little off
# per kind of cell: 0.79x to 1.32x in a default run at 8e5f407, whose 1.32x left out 243 timed passes in a run
# that then ended 3 minutes inside its promise. So a slow pace alone is acted on only beyond that wobble; within
# it, only where the machine was busy over the same minute.
BUSY_SHARE = 0.10  # other processes' (and other VMs') share of the cores over the window: a busy machine
UNEXPLAINED_PACE = 1.5  # a pace this far off is acted on even where nothing else was seen running


@dataclass(frozen=True)
class Item:
    nodeid: str
    cell: Cell
    pass_index: int
    predicted_s: float


class Replanner:
    """A pytest plugin: watches the pace, leaves out what the promise cannot hold, and skips it when it comes."""

    def __init__(self, items: list[Item], promise_s: float, partners: dict[str, Cell]) -> None:
        self.items = {i.nodeid: i for i in items}
        self.order = [i.nodeid for i in items]
        self.promise_s = promise_s
        self.partners = partners
        self.finished: set[str] = set()
        self.left_out: dict[str, str] = {}  # nodeid -> reason
        self.recent: deque[tuple[float, float, float]] = deque()  # (end, seconds, predicted seconds) of items
        self.done_predicted_s = 0.0
        self.started = time.perf_counter()
        self.clocks: deque[tuple[float, CpuClock]] = deque([(self.started, read_clock())])  # one per check
        self.last_check = self.last_end = self.started

    # --- the pace --------------------------------------------------------------------------------------------
    def pace(self, now: float) -> float:
        """Actual over predicted seconds: over the last minute where it holds enough work, else the run's."""
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        predicted = sum(p for _, _, p in self.recent)
        if predicted >= MIN_WINDOW_PREDICTED_S:
            return sum(d for _, d, _ in self.recent) / predicted
        return (now - self.started) / self.done_predicted_s if self.done_predicted_s else 1.0

    def busy_share(self, now: float) -> float | None:
        """Other processes' share of the cores since the reading nearest a window ago (None: too short to tell)."""
        while len(self.clocks) > 1 and self.clocks[1][0] <= now - WINDOW_S:
            self.clocks.popleft()
        share = others_share(self.clocks[0][1])
        self.clocks.append((now, read_clock()))
        return share

    # --- pytest hooks ----------------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        reason = self.left_out.get(item.nodeid)
        if reason:
            pytest.skip(reason)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if nodeid not in self.items or nodeid in self.finished:
            return
        self.finished.add(nodeid)
        now = time.perf_counter()
        took, self.last_end = now - self.last_end, now
        if nodeid in self.left_out:
            return
        predicted = self.items[nodeid].predicted_s
        self.done_predicted_s += predicted
        self.recent.append((now, took, predicted))
        if now - self.last_check >= CHECK_EVERY_S:
            self.last_check = now
            self.replan(now)

    # --- what to leave out -----------------------------------------------------------------------------------
    def still_to_come(self) -> list[Item]:
        return [self.items[n] for n in self.order if n not in self.finished and n not in self.left_out]

    def replan(self, now: float) -> list[str]:
        """Leave out, lowest priority first, what the projected end cannot hold; the nodeids left out."""
        pace = self.pace(now)
        elapsed = now - self.started
        if elapsed < SETTLE_S:
            return []
        remaining = self.still_to_come()
        projected_s = sum(i.predicted_s for i in remaining) * pace
        share = self.busy_share(now)
        if elapsed + projected_s <= max(TRIGGER * self.promise_s, self.promise_s + SLACK_S):
            return []
        if pace < UNEXPLAINED_PACE and (share is None or share < BUSY_SHARE):
            return []  # the cost model's wobble on an idle machine, not a busy one
        allowed_s = TARGET * self.promise_s - elapsed
        busy = f"; other processes used {share:.0%} of its cores over it" if share is not None else ""
        reason = (
            f"left out mid-run to keep the run's promise of about {self.promise_s / 60:.1f} min: the machine ran "
            f"at {pace:.2f}x the cost model's pace over the last minute{busy}; --time-budget-min 0 runs everything"
        )
        dropped: list[str] = []
        for unit in self.units(remaining):
            if projected_s <= allowed_s:
                break
            fresh = [n for n in unit if n not in self.left_out]
            for nodeid in fresh:
                self.left_out[nodeid] = reason
            projected_s -= sum(self.items[n].predicted_s for n in fresh) * pace
            dropped += fresh
        return dropped

    def units(self, remaining: list[Item]) -> list[list[str]]:
        """What may be left out, lowest priority first, each with its partner's items: from the last pass down to
        the second, each cell's pass (longest, costliest cells first), so every cell keeps its first timed pass
        and every question the run asks is still answered, with fewer passes; only then whole cells none of whose
        items has run."""
        begun = {self.items[n].cell.id for n in self.finished}
        by_cell: dict[str, list[Item]] = {}
        for item in remaining:
            by_cell.setdefault(item.cell.id, []).append(item)

        def with_partner(cell: Cell, select) -> list[str]:
            mates = [cell.id] + ([self.partners[cell.id].id] if cell.id in self.partners else [])
            return [i.nodeid for m in mates for i in by_cell.get(m, []) if select(i)]

        def priority(cell: Cell) -> tuple[int, float]:  # the longest and costliest go first
            return (-cell.seq_len, -sum(i.predicted_s for i in by_cell[cell.id]))

        cells = sorted((items[0].cell for items in by_cell.values()), key=priority)
        units = []
        for p in sorted({i.pass_index for i in remaining if i.pass_index > 0}, reverse=True):
            units += [with_partner(c, lambda i, p=p: i.pass_index == p) for c in cells]
        units += [with_partner(c, lambda i: True) for c in cells if c.id not in begun]
        return [u for u in units if u]
