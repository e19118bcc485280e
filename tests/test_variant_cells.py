"""The attention variants as grid cells: the kv_heads and window axes, their pairs, their skips, their workloads
and the report's section on them. Dense cells keep the ids, pairs and records every earlier run has."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from analysis.report.writer import write_report
from bench.cell import Cell
from bench.grid import GridError, load_grid
from bench.pairs import declared_partners
from bench.skips import unsupported
from bench.workloads import attention_workload, predicted_peak_bytes
from model import cost

ROOT = Path(__file__).parents[1]


def test_the_variants_profile_has_grouped_and_windowed_cells_and_dense_ids_are_unchanged():
    grid = load_grid("variants")
    ids = {c.id for c in grid.cells()}
    assert "cpu-float32-small-n1024-h8-sdpa-forward-kv2" in ids
    assert "cpu-float32-small-n1024-h8-naive-train-kv1" in ids
    assert "cpu-float32-small-n2048-h8-sdpa-forward-w128" in ids
    assert "cpu-float32-small-n1024-h8-sdpa-forward" in ids  # kv_heads 0: every head its own, the id of old
    assert not any(c.kv_heads == c.heads for c in grid.cells())  # kv_heads = heads would repeat the dense cell
    default = load_grid("default").cells()
    dense = [c for c in default if c.kv_heads == 0 and c.window == 0]
    assert all("-kv" not in c.id and "-w" not in c.id for c in dense)  # every earlier cell keeps its id
    # the default run's small block of variants: flex with and without a window, SDPA with it, one key/value head
    variants = {(c.impl, c.kv_heads, c.window) for c in default if c.kv_heads or c.window or c.impl == "flex"}
    assert variants == {("flex", 0, 0), ("flex", 0, 128), ("sdpa", 0, 128), ("sdpa", 1, 0)}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("attention.kv_heads=3", "kv_heads=3 must divide heads=8; choose 0 (all) or one of [1, 2, 4, 8]"),
        ("attention.window=-1", "window=-1 must be 0 (off) or a positive whole number"),
        ("attention.kv_heads=two", "axis 'kv_heads': 'two' is not a whole number"),
    ],
)
def test_bad_variant_values_are_refused_in_one_line(override, message):
    with pytest.raises(GridError) as err:
        load_grid("variants", [override])
    assert str(err.value) == message


def test_only_the_attention_group_takes_the_variant_axes():
    grid = load_grid("quick", ["kv_heads=2", "window=64"])
    for cell in grid.cells():
        assert (cell.kv_heads, cell.window) == ((2, 64) if cell.group == "attention" else (0, 0))


def test_a_grouped_cell_pairs_with_every_heads_own_and_a_window_with_half_its_length():
    cells = load_grid("variants").cells()
    pairs = declared_partners(cells)
    grouped = next(c for c in cells if c.kv_heads == 1 and c.seq_len == 512)
    assert pairs[grouped.id] == replace(grouped, kv_heads=0)
    window = next(c for c in cells if c.window and c.seq_len == 1024)
    assert pairs[window.id] == replace(window, seq_len=512)
    shortest = next(c for c in cells if c.window and c.seq_len == 512)  # no window cell at 256 in the run
    assert pairs[shortest.id] == replace(shortest, window=0)


def test_implementations_without_variants_are_skipped_with_the_reason():
    cell = Cell("attention", "cpu", "float32", "small", 128, 8, "torch_mha", "forward", kv_heads=2)
    reason = unsupported(cell)
    assert reason.startswith("unsupported: ") and reason.endswith(
        "window of keys (kv_heads=2): only our attention does"
    )
    assert "window=16" in unsupported(replace(cell, impl="examples.slowed_attention:same", window=16))
    assert unsupported(replace(cell, impl="sdpa")) is None


@pytest.mark.parametrize("variant", [{"kv_heads": 2}, {"kv_heads": 1, "window": 16}, {"window": 16}])
def test_a_variant_cell_checks_against_its_reference_and_counts_its_flops(variant):
    shape = load_grid("variants").shapes["small"]
    cell = Cell("attention", "cpu", "float32", "small", 64, 8, "naive", "forward", **variant)
    work = attention_workload(cell, shape, "cpu", torch.float32)
    assert work.check() < 1e-5
    counter = FlopCounterMode(display=False)
    with counter:
        work.eager_step()
    assert work.flops("materialised") == counter.get_total_flops()
    dense = replace(cell, kv_heads=0, window=0)
    kv = variant.get("kv_heads", 8)
    assert work.flops("materialised") == cost.grouped_attention_forward_flops(2, 64, 256, 8, kv).total
    # a window adds its (n, n) mask; grouping shrinks k and v and the explicit kernel repeats them back
    m = cost.MemoryShape(2, 64, 256, 8, 1024, 4, "cpu")
    expected = cost.attention_variant_bytes(m, "materialised", kv, variant.get("window"), False)
    assert predicted_peak_bytes(cell, shape) - predicted_peak_bytes(dense, shape) == expected


def test_the_variant_memory_model_follows_the_physics():
    m = cost.MemoryShape(2, 512, 256, 8, 1024, 4, "cpu")
    assert cost.attention_variant_bytes(m, "flash", 8, None, False) == 0  # dense: nothing changes
    assert cost.attention_variant_bytes(m, "flash", 2, None, False) == -2 * m.u * 3 // 4  # k, v four times smaller
    assert cost.attention_variant_bytes(m, "flash", 1, None, True) < cost.attention_variant_bytes(
        m, "flash", 2, None, True
    )
    # an explicit kernel gives the shrink back in its repeated copies
    assert cost.attention_variant_bytes(m, "materialised", 1, None, False) > 0
    assert cost.attention_variant_bytes(m, "flash", 8, 128, False) == 512 * 512 * 4


@pytest.mark.slow
def test_a_variants_run_reports_each_variant_against_its_physics(tmp_path):
    """A small variants grid end to end: every variant cell runs, is paired as declared, and the report's
    section gives a word for each grouped comparison and judges each window's growth against its physics."""
    run = tmp_path / "run"
    run.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "bench"),
            "-p",
            "no:cacheprovider",
            "-q",
            "--profile",
            "variants",
            "--set",
            "seq_len=64,128",
            "--set",
            "heads=4",
            "--set",
            "attention.window=0,32",
            "--passes",
            "1",
            "-k",
            "sdpa and forward",
            f"--benchmark-json={run / 'benchmarks.json'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((run / "benchmarks.json").read_text())
    extra = {b["extra_info"]["id"]: b["extra_info"] for b in data["benchmarks"]}
    assert extra["cpu-float32-small-n128-h4-sdpa-forward-kv1"]["partner_id"] == "cpu-float32-small-n128-h4-sdpa-forward"
    assert (
        extra["cpu-float32-small-n128-h4-sdpa-forward-w32"]["partner_id"] == "cpu-float32-small-n64-h4-sdpa-forward-w32"
    )
    assert extra["cpu-float32-small-n128-h4-sdpa-forward-kv2"]["attention_kernel"] == "flash"
    report = write_report(run).read_text()
    section = report.split("## Attention variants")[1].split("\n## ")[0]
    assert "4 query heads over 1 key/value head take x" in section
    assert "window 32" in section and "(physics: quadratic; " in section  # SDPA computes every score
    found = report.split("## What this run found")[1].split("\n## ")[0]
    assert "4 query heads over 1 key/value head, n=128, against dense" in found


def test_a_grouped_cell_is_compared_with_its_own_groups_dense_cell_only():
    """A training step of the same device, dtype, shape, length, heads, impl and mode is in the run too: it is
    not the grouped attention cell's twin (its FLOPs ratio would be the whole model's)."""
    from analysis.report.variants import grouped_table

    def cell(group: str, kv_heads: int, flops: float) -> dict:
        return {
            "group": group,
            "device": "cpu",
            "dtype": "float32",
            "shape": "small",
            "seq_len": 512,
            "heads": 4,
            "impl": "sdpa",
            "mode": "train",
            "kv_heads": kv_heads,
            "window": 0,
            "varlen": "none",
            "id": f"{group}-{kv_heads}",
            "device_passes_s": [[flops * 1e-12 * f for f in (1.0, 1.01, 0.99)] for _ in range(3)],
            "passes": 3,
            "flops": flops,
            "peak_mem_bytes": flops / 1e3,
            "predicted_mem_bytes": flops / 1e3,
            "attention_kernel": "flash",
        }

    grouped = cell("attention", 1, 8e8)
    cells = pd.DataFrame([grouped, cell("attention", 0, 1e9), cell("train_step", 0, 4e9)])
    table = grouped_table(pd.DataFrame([grouped]), cells)
    assert len(table) == 1 and table["flops_vs_dense"].iloc[0] == pytest.approx(0.8)
