"""The cost model on a CPU's measured pace, the lengths a profile leaves out to fit its time budget, and
the progress line: on synthetic paces with known answers (an emulated bf16 100x slower), so nothing
depends on the CPU that runs the tests."""

import pytest

from bench.grid import load_grid
from bench.pace import KINDS, Pace, measure_pace
from bench.progress import Progress
from bench.sharding import predicted_seconds, step_seconds
from bench.time_budget import leave_out

NATIVE = ["avx2", "fma", "avx512f", "avx512_bf16"]
AVX2 = ["avx2", "fma"]


def pace(bf16_slowdown: float, fp32_s_per_flop: float = 1 / 1.5e11) -> Pace:
    rates = {}
    for train in (False, True):
        for kind in KINDS:
            rates[("float32", kind, train)] = fp32_s_per_flop * (3 if train else 1)
            rates[("bfloat16", kind, train)] = fp32_s_per_flop * (3 if train else 1) * bf16_slowdown
    return Pace(rates)


def cpu_cells(grid):
    return [c for c in grid.cells() if c.device == "cpu"]


def test_the_pace_probe_measures_every_kind_and_pass():
    measured = measure_pace(["float32"], budget_s=0.01)
    assert set(measured.seconds_per_flop) == {("float32", k, t) for k in KINDS for t in (False, True)}
    assert all(v > 0 for v in measured.seconds_per_flop.values())


def test_the_cost_model_follows_the_measured_pace():
    grid = load_grid("default")
    cell = next(c for c in cpu_cells(grid) if c.group == "layer" and c.dtype == "bfloat16" and c.seq_len == 1024)
    fast, slow = step_seconds(cell, grid, pace(0.5)), step_seconds(cell, grid, pace(100))
    assert slow == pytest.approx(200 * fast, rel=1e-6)
    explicit = pace(1.0)
    explicit.seconds_per_flop[("bfloat16", "explicit", False)] *= 50  # only the explicit softmax emulated
    naive = next(
        c
        for c in cpu_cells(grid)
        if c.group == "attention"
        and c.impl == "naive"
        and c.dtype == "bfloat16"
        and c.mode == "forward"
        and c.seq_len == 1024
    )
    sdpa = next(c for c in cpu_cells(grid) if c.trace_name == naive.trace_name.replace("naive", "sdpa"))
    assert step_seconds(naive, grid, explicit) > 10 * step_seconds(naive, grid, pace(1.0))
    assert step_seconds(sdpa, grid, explicit) == step_seconds(sdpa, grid, pace(1.0))


def test_a_fitting_grid_loses_nothing():
    grid = load_grid("default")
    assert leave_out(cpu_cells(grid), grid, pace(0.5), 3600.0, NATIVE) == {}


def test_emulated_bf16_loses_its_longest_lengths_first_until_the_grid_fits():
    grid = load_grid("default")
    cells, slow = cpu_cells(grid), pace(30, fp32_s_per_flop=1 / 3e11)
    # short by half of what emulated bf16 costs at its longest length: bf16 costs most, so it loses that length
    longest = max(c.seq_len for c in cells if c.dtype == "bfloat16")
    total = sum(predicted_seconds(c, grid, slow) for c in cells)
    budget = total - 0.5 * sum(
        predicted_seconds(c, grid, slow) for c in cells if (c.dtype, c.seq_len) == ("bfloat16", longest)
    )
    left = leave_out(cells, grid, slow, budget, AVX2)
    kept = [c for c in cells if c.trace_name not in left]
    assert sum(predicted_seconds(c, grid, slow) for c in kept) <= budget
    dropped = [c for c in cells if c.trace_name in left]
    assert dropped and {c.dtype for c in dropped} == {"bfloat16"}
    bf16_lengths = {c.seq_len for c in kept if c.dtype == "bfloat16"}
    assert bf16_lengths and max(bf16_lengths) < min(c.seq_len for c in dropped)  # the longest went first
    assert {c.seq_len for c in kept if c.dtype == "float32"} == {c.seq_len for c in cells if c.dtype == "float32"}
    reason = next(iter(left.values()))
    assert f"{budget / 60:g}-minute budget" in reason and "cpu bfloat16 cells at n=" in reason
    assert "bfloat16 emulated here: no avx512_bf16/amx" in reason
    assert "emulated" not in next(iter(leave_out(cells, grid, slow, budget, NATIVE).values()))


def test_a_budget_too_small_keeps_each_native_dtypes_shortest_length():
    grid = load_grid("default")
    cells = cpu_cells(grid)
    left = leave_out(cells, grid, pace(100), 1.0, NATIVE)
    kept = {(c.dtype, c.seq_len) for c in cells if c.trace_name not in left}
    assert {dtype for dtype, _ in kept} == {"float32", "bfloat16"}
    shortest = {d: min(c.seq_len for c in cells if c.dtype == d) for d, _ in kept}
    assert all(n == shortest[dtype] for dtype, n in kept)


def test_an_emulated_dtype_goes_entirely_before_float32_loses_a_length():
    grid = load_grid("default")
    cells = cpu_cells(grid)
    bf16_shortest = sum(
        predicted_seconds(c, grid, pace(30)) for c in cells if c.dtype == "bfloat16" and c.seq_len == 128
    )
    fp32 = sum(predicted_seconds(c, grid, pace(30)) for c in cells if c.dtype == "float32")
    left = leave_out(cells, grid, pace(30), fp32 + 0.5 * bf16_shortest, AVX2)
    kept = {(c.dtype, c.seq_len) for c in cells if c.trace_name not in left}
    assert {d for d, _ in kept} == {"float32"}  # bfloat16 emulated (AVX2): gone, with its reason
    assert {n for _, n in kept} == {c.seq_len for c in cells if c.dtype == "float32"}
    assert any("bfloat16 cells at n=128" in r and "emulated" in r for r in left.values())


class FakeConfig:
    class pluginmanager:  # noqa: N801 - stands in for pytest's attribute
        @staticmethod
        def get_plugin(name):
            return None


def test_progress_scales_what_is_left_by_the_pace_so_far():
    progress = Progress(FakeConfig(), {"a": 10.0, "b": 10.0, "c": 20.0}, interval_s=0.0)
    progress.pytest_runtest_logfinish("a")
    progress.start = progress.last - 20.0  # the first 10 predicted seconds took 20
    line = progress.line(progress.last)
    assert line.startswith("attnbench: 1/3 items, 00:20 elapsed, about 01:00 left (2.00x")


def test_an_auto_cell_with_nothing_measured_is_predicted_to_tune_first(monkeypatch, tmp_path):
    import bench.implementations
    from bench.cell import FACTS_PASS
    from bench.sharding import forward_flops, pass_seconds, tuning_seconds
    from model.kernel_choice import KernelChooser
    from model.kernel_tuning import BUDGET_S as TUNING_BUDGET_S

    grid = load_grid("default")
    grid.blocks = [{k: v for k, v in b.items() if k != "timing"} for b in grid.blocks]  # one timing for both cells
    auto = next(
        c
        for c in cpu_cells(grid)
        if c.impl == "ours_auto"
        and c.dtype == "bfloat16"
        and c.seq_len == 1024
        and c.mode == "train"
        and c.dropout == 0
    )
    ours = next(c for c in cpu_cells(grid) if c.trace_name == auto.trace_name.replace("ours_auto", "ours"))
    elsewhere = KernelChooser(
        {"cpu_flags": AVX2, "cpu_count": 2, "gpu_name": None, "torch_minor": "2.13"}, (), tmp_path / "cache.json"
    )
    monkeypatch.setattr(bench.implementations, "bench_chooser", lambda: elsewhere)
    slow = pace(30)
    assert tuning_seconds(ours, grid, slow, 1.0) == 0.0
    tune = tuning_seconds(auto, grid, slow, 1.0)
    scores = forward_flops(auto, grid).attention_scores  # every kind runs at one rate in this synthetic pace
    assert tune == pytest.approx(4 * slow.seconds("bfloat16", "explicit", True, scores) + 2 * TUNING_BUDGET_S)
    facts = FACTS_PASS
    assert pass_seconds(auto, grid, facts, slow) - pass_seconds(ours, grid, facts, slow) == pytest.approx(tune)
    assert pass_seconds(auto, grid, 0, slow) == pass_seconds(ours, grid, 0, slow)  # only the facts pass tunes


def replanner_for(monkeypatch, slack_s: float = 0.0, passes: int = 3):
    """Two lengths x two impls (a declared pair at n=1024), a facts pass and `passes` timed passes each, 1 s
    predicted per item, in the run's order: pass by pass."""
    from bench.cell import FACTS_PASS, Cell
    from bench.replan import Item, Replanner

    cells = [
        Cell("attention", "cpu", "float32", "small", n, 4, impl, "forward") for n in (256, 1024) for impl in ("a", "b")
    ]
    order = [FACTS_PASS, *range(passes)]
    items = [Item(f"{c.id}-{p}", c, p, 1.0) for p in order for c in cells]
    partners = {cells[2].id: cells[3], cells[3].id: cells[2]}
    monkeypatch.setattr("bench.replan.SLACK_S", slack_s)  # these items take seconds: the floor of lateness ignored
    monkeypatch.setattr("bench.replan.SETTLE_S", 0.0)  # ... and the first minute
    monkeypatch.setattr("bench.replan.MIN_WINDOW_PREDICTED_S", 5.0)
    return Replanner(items, promise_s=len(items), partners=partners), items


def finish(replanner, items, seconds_each: float) -> None:
    """Items end one after another, each taking `seconds_each` (the replanner's clock moved by hand)."""
    for item in items:
        replanner.last_end -= seconds_each  # as if it started that long before now
        replanner.pytest_runtest_logfinish(item.nodeid)


def test_on_the_cost_models_pace_nothing_is_left_out(monkeypatch):
    replanner, items = replanner_for(monkeypatch)
    replanner.started -= 8.0
    finish(replanner, items[:8], 1.0)
    assert replanner.replan(replanner.last_end) == [] and replanner.left_out == {}


def test_a_machine_that_gets_busy_mid_run_loses_its_least_needed_work_and_keeps_the_promise(monkeypatch):
    replanner, items = replanner_for(monkeypatch)
    monkeypatch.setattr("bench.replan.others_share", lambda *clocks: 0.5)  # other processes took half the cores
    # the facts pass and pass 0 on time (8 items, 8 s), then the machine gets busy: 2.9 times slower
    replanner.started -= 8.0 + 2 * 2.9
    finish(replanner, items[:8], 1.0)
    finish(replanner, items[8:10], 2.9)
    now = replanner.last_end
    dropped = replanner.replan(now)
    assert dropped, "a machine that slowed down cannot keep the promise without leaving something out"
    kept = replanner.still_to_come()
    elapsed = now - replanner.started
    assert elapsed + sum(i.predicted_s for i in kept) * replanner.pace(now) <= 1.05 * replanner.promise_s
    left = [replanner.items[n] for n in dropped]
    assert all(i.pass_index >= 1 for i in left)  # every cell keeps the passes it has and its first timed one
    assert max(i.pass_index for i in left) == 2 and left[0].pass_index == 2  # the last pass goes first
    assert left[0].cell.seq_len == 1024  # the longest length first
    by_pass = {(i.cell.id, i.pass_index) for i in left}
    pair = [c.id for c in (items[2].cell, items[3].cell)]
    for _, p in by_pass:  # a declared pair loses a pass together or not at all
        assert ((pair[0], p) in by_pass) == ((pair[1], p) in by_pass)
    assert all("left out mid-run to keep the run's promise" in r for r in replanner.left_out.values())
    assert "1.38x the cost model's pace" in next(iter(replanner.left_out.values()))  # 13.8 s for 10 predicted
    assert {(i.cell.seq_len, i.pass_index) for i in kept} == {(1024, 1)}  # the pair's pass 1 still runs


@pytest.mark.parametrize("share", [0.0, None])
def test_a_slow_pace_on_an_idle_machine_within_the_cost_models_wobble_leaves_nothing_out(monkeypatch, share):
    """1.38x on a machine nothing else ran on: the cost model's own wobble (0.79-1.32x in an idle default run),
    not a busy machine; the same pace with other processes on half the cores is acted on (the test above), and
    so is a pace past UNEXPLAINED_PACE whatever else ran."""
    replanner, items = replanner_for(monkeypatch)
    monkeypatch.setattr("bench.replan.others_share", lambda *clocks: share)
    replanner.started -= 8.0 + 2 * 2.9
    finish(replanner, items[:8], 1.0)
    finish(replanner, items[8:10], 2.9)
    assert replanner.pace(replanner.last_end) == pytest.approx(1.38, abs=0.01)
    assert replanner.replan(replanner.last_end) == [] and replanner.left_out == {}
    replanner.started -= 20.0  # far slower: 33.8 s for 10 predicted
    finish(replanner, items[10:11], 20.0)
    assert replanner.replan(replanner.last_end), "a pace past the wobble is acted on with nothing seen running"


def test_a_run_of_seconds_is_never_cut_for_being_seconds_late(monkeypatch):
    replanner, items = replanner_for(monkeypatch, slack_s=20.0)
    replanner.started -= 8.0 + 2 * 2.9
    finish(replanner, items[:8], 1.0)
    finish(replanner, items[8:10], 2.9)
    assert replanner.replan(replanner.last_end) == []  # 6 s late of a 16 s promise, under the 20 s floor


def test_nothing_is_left_out_in_the_first_minute(monkeypatch):
    replanner, items = replanner_for(monkeypatch)
    monkeypatch.setattr("bench.replan.SETTLE_S", 60.0)  # the facts passes first: the cost model's least sure
    replanner.started -= 8.0 + 2 * 2.9
    finish(replanner, items[:8], 1.0)
    finish(replanner, items[8:10], 2.9)
    assert replanner.replan(replanner.last_end) == []


def test_later_passes_go_before_any_whole_cell_so_every_question_keeps_an_answer(monkeypatch):
    replanner, items = replanner_for(monkeypatch)
    monkeypatch.setattr("bench.replan.others_share", lambda *clocks: None)  # 3x: acted on, busy or not
    replanner.started -= 6.0  # two facts items done, 3x slower than predicted: most of the rest cannot fit
    finish(replanner, items[:2], 3.0)
    dropped = [replanner.items[n] for n in replanner.replan(replanner.last_end)]
    passes = [i.pass_index for i in dropped]
    assert passes[:8] == [2] * 4 + [1] * 4  # every cell's last pass, then its second-to-last
    whole = {i.cell.id for i in dropped[8:]}
    assert whole == {items[2].cell.id, items[3].cell.id}  # then a whole cell not begun, with its partner
    kept = {(i.cell.id, i.pass_index) for i in replanner.still_to_come()}
    assert kept == {(items[0].cell.id, 0), (items[1].cell.id, 0)}  # the begun cells keep their first timed pass


def test_a_native_grid_a_little_over_budget_drops_whole_comparisons_least_important_first():
    from bench.time_budget import UNCOMPARED, importance

    grid = load_grid("default")
    cells, p = cpu_cells(grid), pace(1.0)
    total = sum(predicted_seconds(c, grid, p) for c in cells)
    left = leave_out(cells, grid, p, 0.9 * total, NATIVE)
    kept = [c for c in cells if c.trace_name not in left]
    assert left and sum(predicted_seconds(c, grid, p) for c in kept) <= 0.9 * total
    ranks = importance(cells)
    dropped = [ranks[name] for name in left]
    assert UNCOMPARED in dropped  # cells no comparison reads go first
    assert all(ranks[c.trace_name] <= min(dropped) for c in kept)  # nothing more important went before them
    assert min(dropped) > 1  # the length series (priority 1) keeps every length in both dtypes
    series = {(c.impl, c.mode, c.dtype, c.seq_len) for c in kept if c.group == "attention" and c.heads == 1}
    assert len({s[:3] for s in series}) == 12 and len(series) == 12 * 5 + 4  # the forward kernels' n=4096 too
    assert all("priority" in reason for reason in left.values())
