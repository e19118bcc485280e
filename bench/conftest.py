"""pytest plumbing for the grids: options, cell generation in interleaved passes, shards, skips with
reasons, machine facts."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

from bench.bandwidth import measured_bandwidth
from bench.benchmark_adapter import empty_json
from bench.cell import FACTS_PASS
from bench.flops import ADDED_FORMULAS
from bench.grid import DEVICES, MODES, Cell, Grid, GridError, load_grid
from bench.injected_slowdown import start_background_work
from bench.isolation import pass_limit_s
from bench.matmul_peak import measured_peaks
from bench.pace import Pace, measure_pace
from bench.pairs import declared_partners
from bench.progress import Progress
from bench.replan import Item, Replanner
from bench.sharding import assign_shards, in_shard, parse_shard, pass_seconds
from bench.skips import fast_fp16, memory_budget, skip_reason
from bench.time_budget import leave_out
from bench.varlen import DISTRIBUTION
from infra import signals
from infra.cli import add_renamed
from infra.machine import machine_facts
from infra.record import SCHEMA_VERSION


@dataclass
class RunState:
    """What one benchmark run knows, kept in pytest's stash: the grid, the shard, the machine, what the first
    pass of each cell found, this CPU's pace, the cells left out for time, and the run's clock."""

    grid: Grid
    shard: tuple[int, int] | None
    machine: dict
    owner: dict[str, int] | None  # cell -> shard, where sharded
    first_pass: dict = field(default_factory=dict)
    pace: Pace | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # trace_name -> reason
    time_budget_min: float | None = None
    predicted_s: float | None = None
    predicted_pass_s: dict[tuple[str, int], float] = field(default_factory=dict)  # (cell id, pass) -> seconds
    partners: dict[str, Cell] = field(default_factory=dict)  # cell id -> the cell timed beside it (bench/pairs.py)
    started: float = field(default_factory=time.perf_counter)


RUN = pytest.StashKey[RunState]()
DEFAULT_PROFILE_MATCH = r"^layer:(cpu-float32|cuda-bfloat16)-small-.*-h4-(ours|ours_naive|torch)-train-p0$"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("attnbench")
    add_renamed(
        g.addoption,
        "--profile",
        "--grid",
        default="default",
        help="grid profile from bench/grids.toml (quick, default, full, cuda)",
    )
    g.addoption("--device", default="all", help="run only this device's cells: cpu, cuda or all")
    g.addoption("--set", action="append", default=[], metavar="[GROUP.]AXIS=V1,V2", help="override a grid axis")
    add_renamed(
        g.addoption,
        "--passes",
        "--repeats",
        type=int,
        default=None,
        help="interleaved passes over the grid (default: the profile's, 3 for default and cuda)",
    )
    g.addoption("--shard", default=None, metavar="K/N", help="run the K-th of N cost-balanced shards of the grid")
    g.addoption(
        "--mem-budget-gb",
        type=float,
        default=None,
        help="skip cells predicted to need more (default: 80%% of available memory)",
    )
    g.addoption("--allow-slow-fp16", action="store_true", help="run float16 on a CPU without fast fp16 kernels")
    add_renamed(
        g.addoption,
        "--trace-dir",
        "--profile-dir",
        type=Path,
        default=None,
        help="write torch.profiler traces of selected cells here",
    )
    add_renamed(
        g.addoption,
        "--trace-match",
        "--profile-match",
        default=DEFAULT_PROFILE_MATCH,
        help="regex over GROUP:CELL_ID of cells to trace",
    )
    g.addoption(
        "--common-mode",
        action="store_true",
        help="time a fixed reference matmul after every round (CPU), so a paired comparison can divide "
        "the machine's drift out (python -m bench ab sets it)",
    )
    g.addoption(
        "--time-budget-min",
        type=float,
        default=None,
        help="leave out the costliest lengths per device and dtype until the run's cells are predicted to "
        "fit this many minutes (default: the profile's time_budget_min; 0: no budget)",
    )
    g.addoption(
        "--cell-time-limit-s",
        type=float,
        default=None,
        help="stop a pass of a user implementation's cell after this many seconds and fail the cell "
        "(default: 10x the cost model's prediction, at least 20 s; 0: no limit)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config.option, "profile"):
        return
    device = config.getoption("device")
    if device not in (*DEVICES, "all"):
        raise pytest.UsageError(f"--device {device!r} is not accepted; choose from {', '.join(DEVICES)}, all")
    budget = config.getoption("mem_budget_gb")
    if budget is not None and budget <= 0:
        raise pytest.UsageError(f"--mem-budget-gb {budget:g} is not accepted; give a positive number of GiB")
    minutes = config.getoption("time_budget_min")
    if minutes is not None and minutes < 0:
        raise pytest.UsageError(f"--time-budget-min {minutes:g} is not accepted; give minutes, or 0 for no budget")
    limit = config.getoption("cell_time_limit_s")
    if limit is not None and not limit >= 0:
        raise pytest.UsageError(f"--cell-time-limit-s {limit:g} is not accepted; give seconds, or 0 for no limit")
    pattern = config.getoption("trace_match")
    try:
        re.compile(pattern)
    except re.error as err:
        raise pytest.UsageError(
            f"--trace-match {pattern!r} is not a regular expression ({err}); give a Python "
            "regex over GROUP:CELL_ID, e.g. 'layer:.*-train-'"
        ) from None
    try:
        grid = load_grid(config.getoption("profile"), config.getoption("set"), config.getoption("passes"))
        if config.getoption("common_mode"):
            grid.timing = replace(grid.timing, common_mode=True)
        shard = parse_shard(config.getoption("shard")) if config.getoption("shard") else None
    except GridError as err:
        raise pytest.UsageError(str(err)) from None
    # SIGTERM stops the run as Ctrl-C does (the cells done so far are written), and a KeyboardInterrupt that no
    # signal caused is user code's, not the user's
    signals.install()
    start_background_work()  # nothing, unless the gate's validation injected it (bench.injected_slowdown)
    owner = assign_shards(grid.cells(), grid, shard[1]) if shard else None
    # the machine at the start: the commit checked out when the run began
    config.stash[RUN] = RunState(grid, shard, machine_facts(), owner)
    plan_run(config, config.stash[RUN])
    config.pluginmanager.register(NotRunRecorder(), "attnbench-not-run")


def selected_cells(config: pytest.Config, run: RunState) -> list[Cell]:
    """The cells of this device and shard."""
    device, shard = config.getoption("device"), run.shard
    return [
        c
        for c in run.grid.cells()
        if (device == "all" or c.device == device) and not (shard and not in_shard(c, run.owner, shard[0]))
    ]


def skip_or_leave_out(config: pytest.Config, run: RunState, cell: Cell) -> str | None:
    budget = memory_budget(cell.device, config.getoption("mem_budget_gb"))
    reason = skip_reason(cell, run.grid.shapes[cell.shape], budget, config.getoption("allow_slow_fp16"))
    return reason or run.left_out.get(cell.trace_name)


def plan_run(config: pytest.Config, run: RunState) -> None:
    """This CPU's pace, and the cells left out to fit the time budget."""
    flags = run.machine["cpu_flags"]
    runnable = [c for c in selected_cells(config, run) if not skip_or_leave_out(config, run, c)]
    probe = sorted(
        {
            c.dtype
            for c in runnable
            if c.device == "cpu" and (c.dtype != "float16" or fast_fp16(flags) or config.getoption("allow_slow_fp16"))
        }
    )
    run.pace = measure_pace(probe) if probe else None
    minutes = config.getoption("time_budget_min")
    minutes = run.grid.time_budget_min if minutes is None else minutes
    if minutes:
        # a cell and its partner share a dtype and a length, so they are left out together
        run.left_out = leave_out(runnable, run.grid, run.pace, minutes * 60, flags, declared_partners(runnable))
    # bench ab's passes compare each cell with itself on the other side, timed beside the reference matmul: no pairs
    kept = [c for c in runnable if c.trace_name not in run.left_out]
    run.partners = {} if run.grid.timing.common_mode else declared_partners(kept)
    run.time_budget_min = minutes or None
    run.started = time.perf_counter()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    config, group = metafunc.config, metafunc.module.GROUP
    run = config.stash[RUN]
    grid = run.grid
    params = []
    for cell in selected_cells(config, run):
        if cell.group != group:
            continue
        reason = skip_or_leave_out(config, run, cell)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(cell, FACTS_PASS, id=f"{cell.id}-facts", marks=marks))  # untimed
        for r in range(grid.passes):
            test_id = cell.id if grid.passes == 1 else f"{cell.id}-r{r}"
            params.append(pytest.param(cell, r, id=test_id, marks=marks))
    metafunc.parametrize(("cell", "pass_index"), params)


def cell_of(item: pytest.Item) -> Cell | None:
    """The grid cell an item measures (None for a group the profile leaves empty, or a plain test)."""
    params = getattr(item, "callspec", None) and item.callspec.params
    cell = params.get("cell") if params else None
    return cell if isinstance(cell, Cell) else None


def pass_order(item: pytest.Item) -> tuple[int, int, int, int]:
    """Eager cells pass by pass (A B A B, so drift shows as spread between passes), each group's untimed pass
    of facts just before its first timed pass, then compiled ones: compilation changes the process (caches,
    threads, memory), so nothing eager is timed after it."""
    cell = cell_of(item)
    if cell is None:
        return (0, 0, 0, 0)
    index = item.callspec.params["pass_index"]
    return (int(cell.compile != "eager"), max(index, 0), list(MODES).index(cell.group), index)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=pass_order)  # stable: within a pass, the declared order


def pytest_collection_finish(session: pytest.Session) -> None:
    """The plan over the items that will run (-k and -m have deselected theirs by now): its promise, the
    progress line, and the replanner that keeps the promise."""
    config, items = session.config, session.items
    if RUN not in config.stash:
        return
    run = config.stash[RUN]
    grid, pace = run.grid, run.pace
    predicted = {}
    for item in items:
        cell = cell_of(item)
        if cell is not None and not item.get_closest_marker("skip"):
            pass_index = item.callspec.params["pass_index"]
            predicted[item.nodeid] = pass_seconds(cell, grid, pass_index, pace, run.partners.get(cell.id))
            run.predicted_pass_s[(cell.id, item.callspec.params["pass_index"])] = predicted[item.nodeid]
    run.predicted_s = sum(predicted.values())
    replanner = None
    if run.time_budget_min:  # the promise kept as the run goes, should the machine get busy
        planned = [
            Item(item.nodeid, cell_of(item), item.callspec.params["pass_index"], predicted[item.nodeid])
            for item in items
            if item.nodeid in predicted
        ]
        # the promise is the budget, or the prediction where it is longer: a run predicted well inside its
        # budget is not cut for running a little slower than predicted
        replanner = Replanner(planned, max(run.predicted_s, 60 * run.time_budget_min), run.partners)
        config.pluginmanager.register(replanner, "attnbench-replan")
    config.pluginmanager.register(Progress(config, predicted, replanner), "attnbench-progress")
    cells = {item.callspec.params["cell"].trace_name for item in items if item.nodeid in predicted}
    left, budget = len(run.left_out), run.time_budget_min
    note = f"; {left} cells left out to fit the {budget:g}-minute budget (reasons with the skips)" if left else ""
    line = (
        f"attnbench: {len(cells)} cells x {grid.passes} passes, about "
        f"{sum(predicted.values()) / 60:.1f} min by the cost model"
        + (" at this CPU's measured pace" if pace else "")
        + note
        + (f"; held to the {budget:g}-minute budget should the machine get busy" if budget else "")
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


class NotRunRecorder:
    """Keeps every skipped or failed cell with its reason, for the results JSON."""

    def __init__(self) -> None:
        self.cells: dict[str, tuple[Cell, int]] = {}
        self.outcomes: list[dict] = []
        self.timed: set[str] = set()  # cells with a timed pass that passed
        self.passes_left_out: list[dict] = []  # later passes of timed cells, left out mid-run (bench/replan.py)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if cell_of(item) is not None:
                self.cells[item.nodeid] = (cell_of(item), item.callspec.params["pass_index"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell, pass_index = self.cells.get(report.nodeid, (None, 0))
        if cell is not None and report.passed and report.when == "call" and pass_index != FACTS_PASS:
            self.timed.add(cell.id)
        if cell is None or not (report.skipped or (report.failed and report.when == "call")):
            return
        if report.skipped and cell.id in self.timed:  # its earlier passes stand: the cell ran, with fewer passes
            reason = report.longrepr[2].removeprefix("Skipped: ")
            self.passes_left_out.append({"id": cell.id, "pass_index": pass_index, "reason": reason})
            return
        if any(o["id"] == cell.id for o in self.outcomes):
            return  # one record per cell: later passes end as the one that ended it did
        if report.skipped:
            reason = report.longrepr[2].removeprefix("Skipped: ")
        else:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = (crash.message if crash else str(report.longrepr)).removeprefix("Failed: ")
        outcome = "skipped" if report.skipped else "failed"
        self.outcomes.append(
            {
                "name": report.nodeid,
                "id": cell.id,
                "params": cell.params(),
                "outcome": outcome,
                "reason": reason,
                "pass_index": pass_index,
            }
        )

    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: list, output_json: dict) -> None:
        # Cells that did not run stay in the results with their reason: nothing is silently dropped. A cell that
        # failed in a later pass (its output changed, its time ran out) keeps none of its earlier passes.
        failed = {o["id"] for o in self.outcomes if o["outcome"] == "failed"}
        output_json["benchmarks"] = [b for b in output_json["benchmarks"] if b["extra_info"].get("id") not in failed]
        output_json["attnbench_not_run"] = self.outcomes
        output_json["attnbench_passes_left_out"] = self.passes_left_out

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest-benchmark writes no JSON when nothing was timed: write one with every cell's reason
        path = session.config.getoption("benchmark_json", None)
        if path is not None and not path.exists() and self.cells:
            empty_json(session.config, path, self.outcomes)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """A results file that cannot be written (a full disk, a file-size limit, an I/O error) is one line naming it,
    and the run ends with exit 3 (pytest's internal error): bench keeps what was written apart, never as a run."""
    try:
        return (yield)
    except OSError as err:
        where = err.filename or session.config.getoption("benchmark_json", None)
        print(f"error: cannot write {where} ({err.strerror or type(err).__name__})", file=sys.stderr, flush=True)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return None


@pytest.fixture
def grid(request: pytest.FixtureRequest) -> Grid:
    return request.config.stash[RUN].grid


@pytest.fixture
def first_pass(request: pytest.FixtureRequest) -> dict:
    return request.config.stash[RUN].first_pass


@pytest.fixture
def time_limit_s(request: pytest.FixtureRequest, cell: Cell, pass_index: int) -> float | None:
    """How long one pass of a user implementation's cell may take (None: no limit)."""
    run = request.config.stash[RUN]
    return pass_limit_s(run.predicted_pass_s.get((cell.id, pass_index)), request.config.getoption("cell_time_limit_s"))


@pytest.fixture
def partner(request: pytest.FixtureRequest, cell: Cell) -> Cell | None:
    """The cell timed beside this one in ABBA blocks, where the run declares the pair and both run."""
    return request.config.stash[RUN].partners.get(cell.id)


@pytest.fixture
def trace_dir(request: pytest.FixtureRequest, cell: Cell, pass_index: int) -> Path | None:
    out = request.config.getoption("trace_dir")
    selected = re.search(request.config.getoption("trace_match"), f"{cell.group}:{cell.id}")
    if out is None or not selected:  # traced in the facts pass; the timed passes record where
        return None
    return out


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    run = config.stash[RUN]
    grid, shard, pace = run.grid, run.shard, run.pace
    machine_info["attnbench"] = {
        **run.machine,
        "schema_version": SCHEMA_VERSION,
        "grid_profile": grid.profile,
        "grid": grid.describe(),
        "grid_overrides": config.getoption("set"),
        "passes": grid.passes,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "flop_formulas_added": list(ADDED_FORMULAS),
        "varlen_distribution": DISTRIBUTION,  # how a variable-length batch's lengths are drawn
        # the run's matmul peak per device and dtype its cells ran (the denominator of their MFU)
        "matmul_peak": [asdict(peak) for peak in measured_peaks()],
        # its memory bandwidth by working-set size on each device (the roofline's bandwidth roofs)
        "bandwidth": [asdict(point) for point in measured_bandwidth()],
        # what the run was predicted to take at this CPU's measured pace, and what it took
        "pace_seconds_per_flop": {
            f"{d}/{k}/{'train' if t else 'eval'}": v for (d, k, t), v in (pace.seconds_per_flop.items() if pace else [])
        },
        "time_budget_min": run.time_budget_min,
        "cells_left_out_for_time": len(run.left_out),
        # what the run left out as it went, to keep its promise on a machine that got busy (bench/replan.py)
        "items_left_out_mid_run": len(replanned.left_out)
        if (replanned := config.pluginmanager.get_plugin("attnbench-replan"))
        else 0,
        "predicted_s": run.predicted_s,
        "elapsed_s": time.perf_counter() - run.started,
    }
