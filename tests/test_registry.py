"""The implementation registry is the one place an implementation is declared: the grid's names, the
skips, the predicted family, the auto cells and the baseline all come from its entry."""

import json
import subprocess
import sys

import pytest

from bench import implementations
from bench.cell_runner import measure_facts
from bench.grid import Cell, GridError, load_grid
from bench.implementations import Implementation, _attention, _load_same_names
from bench.skips import unsupported
from bench.workloads import predicted_family, uses_auto
from infra import registry
from infra.registry import Entry, is_user, names

GRID = load_grid("quick")


def test_sdpa_math_is_a_built_in_that_runs_the_math_backend():
    grid = load_grid("quick", ["attention.impl=sdpa_math"])
    cell = next(c for c in grid.cells("attention") if c.mode == "train")
    assert predicted_family(cell) == "math"
    facts = measure_facts(Cell("attention", "cpu", "float32", "small", 64, 4, "sdpa_math", "train"), GRID, None)
    assert facts.check_passed and facts.attention_kernel == "math"


def test_one_entry_is_all_a_new_built_in_needs(monkeypatch):
    entry = Entry("blocked_attention", "attention", "blocked")
    with pytest.raises(GridError, match="'blocked_attention' is not accepted"):
        load_grid("quick", ["attention.impl=blocked_attention"])
    monkeypatch.setitem(registry._BY_KEY, ("attention", "blocked_attention"), entry)
    built = Implementation(entry, _attention("blocked"), _load_same_names)
    monkeypatch.setitem(implementations._BUILT, ("attention", "blocked_attention"), built)
    grid = load_grid("quick", ["attention.impl=blocked_attention"])  # the grid accepts it
    cell = grid.cells("attention")[0]
    assert "blocked_attention" in names("attention") and not is_user(cell.impl)
    assert predicted_family(cell) == "blocked" and unsupported(cell) is None and not uses_auto(cell)
    facts = measure_facts(
        Cell("attention", "cpu", "float32", "small", 64, 4, "blocked_attention", "forward"), GRID, None
    )
    assert facts.attention_kernel == "blocked"


def test_auto_and_baselines_come_from_the_entries():
    assert {e.name for e in registry.ENTRIES if e.kernel == "auto"} == {"auto", "ours_auto"}
    assert {(e.group, e.name) for e in registry.ENTRIES if e.baseline} == {
        ("attention", "torch_mha"),
        ("layer", "torch"),
    }
    assert names("train_step") == ("naive", "sdpa", "auto")


@pytest.mark.slow
def test_each_cell_records_whether_it_is_a_baseline_or_a_users(tmp_path):
    out = tmp_path / "out.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/",
        "--profile",
        "quick",
        "--set",
        "seq_len=64",
        "-k",
        "layer and eval",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--benchmark-json={out}",
    ]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    marks = {
        b["extra_info"]["impl"]: (b["extra_info"]["baseline"], b["extra_info"]["user"])
        for b in json.loads(out.read_text())["benchmarks"]
        if b["extra_info"]["group"] == "layer"
    }
    assert marks == {"ours": (False, False), "torch": (True, False)}
