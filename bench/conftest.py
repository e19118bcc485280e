"""pytest plumbing for the grids: options, cell generation in interleaved passes, shards, skips with
reasons, machine facts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.flops import ADDED_FORMULAS
from bench.grid import DEVICES, Cell, Grid, GridError, load_grid
from bench.sharding import assign_shards, in_shard, parse_shard
from bench.skips import memory_budget, skip_reason
from model.machine import machine_facts

DEFAULT_PROFILE_MATCH = r"^layer:(cpu-float32|cuda-bfloat16)-small-.*-h4-(ours|torch)-train-p0$"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("attnbench")
    g.addoption("--grid", default="default", help="grid profile from bench/grids.toml (quick, default, full, cuda)")
    g.addoption("--device", default="all", help="run only this device's cells: cpu, cuda or all")
    g.addoption("--set", action="append", default=[], metavar="[GROUP.]AXIS=V1,V2", help="override a grid axis")
    g.addoption("--repeats", type=int, default=None,
                help="interleaved passes over the grid (default: the profile's, 3 for default and cuda)")  # fmt: skip
    g.addoption("--shard", default=None, metavar="K/N", help="run the K-th of N cost-balanced shards of the grid")
    g.addoption("--mem-budget-gb", type=float, default=None,
                help="skip cells predicted to need more (default: 80%% of available memory)")  # fmt: skip
    g.addoption("--allow-slow-fp16", action="store_true", help="run float16 on a CPU without fast fp16 kernels")
    g.addoption("--profile-dir", type=Path, default=None, help="write torch.profiler traces of selected cells here")
    g.addoption("--profile-match", default=DEFAULT_PROFILE_MATCH, help="regex over GROUP:CELL_ID of cells to trace")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config.option, "grid"):
        return
    device = config.getoption("device")
    if device not in (*DEVICES, "all"):
        raise pytest.UsageError(f"--device {device!r} is not accepted; choose from {', '.join(DEVICES)}, all")
    budget = config.getoption("mem_budget_gb")
    if budget is not None and budget <= 0:
        raise pytest.UsageError(f"--mem-budget-gb {budget:g} is not accepted; give a positive number of GiB")
    try:
        grid = load_grid(config.getoption("grid"), config.getoption("set"), config.getoption("repeats"))
        shard = parse_shard(config.getoption("shard")) if config.getoption("shard") else None
        re.compile(config.getoption("profile_match"))
    except (GridError, re.error) as err:
        raise pytest.UsageError(str(err)) from None
    config.attnbench_grid, config.attnbench_shard = grid, shard
    config.attnbench_machine = machine_facts()  # at the start: the commit checked out when the run began
    config.attnbench_owner = assign_shards(grid.cells(), grid, shard[1]) if shard else None
    config.attnbench_first_pass = {}
    config.pluginmanager.register(NotRunRecorder(), "attnbench-not-run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    config, group = metafunc.config, metafunc.module.GROUP
    grid: Grid = config.attnbench_grid
    device, shard, owner = config.getoption("device"), config.attnbench_shard, config.attnbench_owner
    params = []
    for cell in grid.cells(group):
        if (device != "all" and cell.device != device) or (shard and not in_shard(cell, owner, shard[0])):
            continue
        budget = memory_budget(cell.device, config.getoption("mem_budget_gb"))
        reason = skip_reason(cell, grid.shapes[cell.shape], budget, config.getoption("allow_slow_fp16"))
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        for r in range(grid.repeats):
            test_id = cell.id if grid.repeats == 1 else f"{cell.id}-r{r}"
            params.append(pytest.param(cell, r, id=test_id, marks=marks))
    metafunc.parametrize(("cell", "repeat"), params)


def pass_order(item: pytest.Item) -> tuple[int, int]:
    """Eager cells pass by pass (A B A B, so drift shows as spread between passes), then compiled ones:
    compilation changes the process (caches, threads, memory), so nothing eager is timed after it."""
    params = getattr(item, "callspec", None) and item.callspec.params
    if not params or "cell" not in params:
        return (0, 0)
    return (int(params["cell"].compile != "eager"), params["repeat"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=pass_order)  # stable: within a pass, the declared order


class NotRunRecorder:
    """Keeps every skipped or failed cell with its reason, for the results JSON."""

    def __init__(self) -> None:
        self.cells: dict[str, tuple[Cell, int]] = {}
        self.outcomes: list[dict] = []

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if hasattr(item, "callspec") and "cell" in item.callspec.params:
                self.cells[item.nodeid] = (item.callspec.params["cell"], item.callspec.params["repeat"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell, repeat = self.cells.get(report.nodeid, (None, 0))
        if cell is None or repeat > 0 or not (report.skipped or (report.failed and report.when == "call")):
            return  # one record per cell: later passes end as the first did
        if report.skipped:
            reason = report.longrepr[2].removeprefix("Skipped: ")
        else:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = (crash.message if crash else str(report.longrepr)).removeprefix("Failed: ")
        outcome = "skipped" if report.skipped else "failed"
        self.outcomes.append({"name": report.nodeid, "id": cell.id, "params": cell.params(), "outcome": outcome,
                              "reason": reason})  # fmt: skip

    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: list, output_json: dict) -> None:
        # Cells that did not run stay in the results with their reason: nothing is silently dropped.
        output_json["attnbench_not_run"] = self.outcomes


@pytest.fixture
def grid(request: pytest.FixtureRequest) -> Grid:
    return request.config.attnbench_grid


@pytest.fixture
def first_pass(request: pytest.FixtureRequest) -> dict:
    return request.config.attnbench_first_pass


@pytest.fixture
def profile_dir(request: pytest.FixtureRequest, cell: Cell, repeat: int) -> Path | None:
    out = request.config.getoption("profile_dir")
    if out is None or repeat > 0 or not re.search(request.config.getoption("profile_match"), f"{cell.group}:{cell.id}"):
        return None
    return out


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    grid: Grid = config.attnbench_grid
    shard = config.attnbench_shard
    machine_info["attnbench"] = {
        **config.attnbench_machine,
        "grid_profile": grid.profile,
        "grid": grid.describe(),
        "grid_overrides": config.getoption("set"),
        "repeats": grid.repeats,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "flop_formulas_added": list(ADDED_FORMULAS),
    }
