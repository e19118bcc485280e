"""The measured roofs and each cell's regime (issue 40): cache sizes from sysfs, the bandwidth probe's sizes and
record, the cost model's phases, the regime rule on cells built to land in each regime, and the operator classes
of the FLOPs-against-time table."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.roofline import level_roofs, regimes
from analysis.traces import op_class
from bench.bandwidth import triad_point, working_sets
from infra.machine import cpu_caches, memory_level, memory_levels
from model.cost import MemoryShape, attention_forward_flops, attention_phases, layer_class_flops

MiB = 1 << 20


def _sysfs(root: Path, cpu: int, entries: list[tuple[str, str, str, str]]) -> None:
    for i, (level, kind, size, shared) in enumerate(entries):
        index = root / f"cpu{cpu}" / "cache" / f"index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (index / name).write_text(value + "\n")


def test_cache_sizes_come_from_sysfs_per_instance_with_how_many_instances(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    for cpu in (0, 1):
        _sysfs(
            tmp_path,
            cpu,
            [
                ("1", "Data", "32K", str(cpu)),
                ("1", "Instruction", "32K", str(cpu)),
                ("2", "Unified", "1024K", str(cpu)),
                ("3", "Unified", "32768K", "0-1"),
            ],
        )
    sizes, instances = cpu_caches.__wrapped__(tmp_path)
    assert sizes == {"L1d": 32 << 10, "L2": MiB, "L3": 32 * MiB}
    assert instances == {"L1d": 2, "L2": 2, "L3": 1}
    levels = memory_levels({"cpu_cache_bytes": sizes, "cpu_cache_instances": instances}, "cpu")
    assert [name for name, _ in levels] == ["L1d", "L2", "L3", "DRAM"]
    assert memory_level(1.5 * MiB, levels) == "L2"  # two private L2s hold it together
    assert memory_level(33 * MiB, levels) == "DRAM"
    assert memory_level(float("nan"), levels) == "DRAM"  # a cell whose peak was not measured
    assert memory_levels({}, "cpu") == [("DRAM", 1 << 62)]  # a run from before the caches were recorded
    gpu = memory_levels({"gpu_l2_bytes": 50 * MiB, "cpu_cache_bytes": sizes}, "cuda")
    assert [name for name, _ in gpu] == ["L2", "HBM"] and memory_level(64 * MiB, gpu) == "HBM"
    assert working_sets(gpu, "cuda")[-1] >= 8 * 50 * MiB  # past the GPU's L2 too


def test_the_probe_spans_the_caches_and_its_interval_holds_its_median():
    levels = [("L2", 2 * MiB), ("L3", 32 * MiB), ("DRAM", 1 << 62)]
    sizes = working_sets(levels, "cpu")
    assert sizes[0] <= levels[0][1] and sizes[-1] >= 8 * levels[1][1]
    assert {memory_level(s, levels) for s in sizes} == {"L2", "L3", "DRAM"}
    point = triad_point("cpu", MiB, "L2", samples=5)
    assert point.low_bytes_per_s <= point.median_bytes_per_s <= point.high_bytes_per_s
    assert point.bytes_per_triad == point.working_set_bytes <= MiB and len(point.samples_s) == 5


def test_the_phases_move_score_bytes_only_for_an_explicit_softmax():
    m = MemoryShape(2, 512, 256, 16, 1024, 4, "cpu")
    forward = attention_forward_flops(2, 512, 256)
    linear, scores = attention_phases(m, "materialised", train=False)
    assert (linear.flops, scores.flops) == (forward.linear, forward.attention_scores)
    assert scores.bytes == 4 * m.s and scores.flops / scores.bytes == pytest.approx((256 // 16) / 4)
    assert attention_phases(m, "materialised", train=True)[1].bytes == 11 * m.s
    assert attention_phases(m, "flash", train=True)[1].bytes == 0
    assert attention_phases(m, "flash", train=True)[1].flops == 3.5 * forward.attention_scores


def _cell(impl: str, family: str, heads: int, n: int, seconds: float, peak_mem: int) -> dict:
    flops = sum(p.flops for p in attention_phases(MemoryShape(2, n, 256, heads, 1024, 4, "cpu"), family, False))
    return {
        "group": "attention",
        "device": "cpu",
        "dtype": "float32",
        "shape": "small",
        "impl": impl,
        "mode": "forward",
        "heads": heads,
        "compile": "eager",
        "kv_heads": 0,
        "window": 0,
        "seq_len": n,
        "batch": 2,
        "d_model": 256,
        "d_ff": 1024,
        "attention_family": family,
        "flops": flops,
        "median_s": seconds,
        "peak_mem_bytes": peak_mem,
        "predicted_mem_bytes": peak_mem,
    }


FACTS = {
    "cpu_cache_bytes": {"L2": MiB, "L3": 32 * MiB},
    "cpu_cache_instances": {"L2": 2, "L3": 1},
    "matmul_peak": [{"device": "cpu", "dtype": "float32", "peak_flops_per_s": 200e9}],
    "bandwidth": [
        {"device": "cpu", "level": lvl, "working_set_bytes": ws, "median_bytes_per_s": bw}
        | {"low_bytes_per_s": 0.9 * bw, "high_bytes_per_s": 1.1 * bw}
        for lvl, ws, bw in (
            ("L2", MiB, 60e9),
            ("L2", 2 * MiB, 100e9),
            ("L3", 16 * MiB, 130e9),
            ("DRAM", 256 * MiB, 40e9),
        )
    ],
}


def test_the_regime_rule_places_cells_built_for_each_regime():
    cells = pd.DataFrame(
        [
            # one head: a compute-bound series, time growing with its work
            _cell("naive", "materialised", 1, 256, 1e-3, 4 * MiB),
            _cell("naive", "materialised", 1, 512, 3.2e-3, 10 * MiB),
            # 16 heads at n=512: the score phase at 4 FLOP/byte in DRAM, under a ridge of 5
            _cell("naive", "materialised", 16, 256, 4e-3, 20 * MiB),
            _cell("naive", "materialised", 16, 512, 14e-3, 70 * MiB),
            # a series whose time does not follow its work: overhead
            _cell("sdpa", "flash", 1, 256, 5e-3, MiB),
            _cell("sdpa", "flash", 1, 512, 5.2e-3, MiB),
        ]
    )
    table = regimes(cells, FACTS).set_index(["impl", "heads", "seq_len"])["regime"]
    assert table[("naive", 1, 512)] == "compute-bound"
    assert table[("naive", 16, 512)] == "bandwidth-bound (DRAM)"
    # a DRAM roof measured between 30 and 60 GB/s puts that score phase's ridge (200 GFLOP/s over it) between 3.3
    # and 6.7 FLOP/byte, around its 4: no word a rerun could contradict
    wide = {
        **FACTS,
        "bandwidth": [{**p, "low_bytes_per_s": 30e9, "high_bytes_per_s": 60e9} for p in FACTS["bandwidth"]],
    }
    wide_table = regimes(cells, wide).set_index(["impl", "heads", "seq_len"])["regime"]
    assert wide_table[("naive", 16, 512)] == "at the ridge (DRAM)" and wide_table[("naive", 1, 512)] == "compute-bound"
    assert table[("sdpa", 1, 256)] == table[("sdpa", 1, 512)] == "overhead-bound"
    roofs = level_roofs(FACTS).set_index("level")["median_bytes_per_s"]
    assert roofs["L2"] == 100e9  # a level's roof is its best point, not its first
    assert regimes(cells, {**FACTS, "bandwidth": []}).empty  # no probe, no regimes


def test_operator_classes_by_name_and_their_flops():
    assert op_class("aten::addmm") == op_class("aten::bmm") == "contraction"
    assert op_class("aten::_scaled_dot_product_flash_attention_for_cpu") == "contraction"
    assert op_class("aten::_softmax") == op_class("aten::native_layer_norm_backward") == "normalisation"
    assert op_class("aten::add") == op_class("autograd::engine::evaluate_function: AddBackward0") == "rest"
    flops = layer_class_flops(2, 1024, 256, 4, 1024, train=True)
    share = flops["contraction"] / sum(flops.values())
    assert 0.98 < share < 1.0
    more_heads = layer_class_flops(2, 1024, 256, 16, 1024, train=True)
    assert more_heads["normalisation"] > flops["normalisation"] and more_heads["contraction"] == flops["contraction"]
    assert math.isclose(layer_class_flops(2, 1024, 256, 4, 1024, train=False)["rest"] * 2, flops["rest"])


def test_the_committed_default_run_shows_the_physics():
    """Issue 40's run: the forward kernels to 4096 and naive to 2048 in both dtypes with five lengths or more, the
    roofs measured and every dense attention cell placed under them, the traced lengths bracketing n = d_ff, and
    the memory model within ±25% on every cell at the lengths added."""
    from analysis.load import load_run

    run = Path(__file__).parents[1] / "results" / "cpu-amd-epyc-avx512bf16-2c"
    cells, _, facts = load_run(run / "benchmarks.json")
    one_head = cells[(cells["group"] == "attention") & (cells["heads"] == 1)]
    reach = one_head.groupby(["impl", "mode", "dtype"])["seq_len"].agg(["max", "nunique"])
    assert (reach.loc[("sdpa", "forward"), "max"] >= 4096).all()
    assert (reach.loc["naive", "max"] >= 2048).all() and (reach.loc["naive", "nunique"] >= 5).all()
    assert facts["cpu_cache_bytes"] and {p["level"] for p in facts["bandwidth"]} >= {"L2", "L3", "DRAM"}
    table = regimes(cells, facts)
    dense = cells[(cells["group"] == "attention") & cells["mode"].isin(["forward", "train"])]
    assert len(table) == len(dense) and table["regime"].str.match(r"compute|bandwidth|overhead|at the ridge").all()
    traced = cells.dropna(subset=["trace_name"])
    assert traced["seq_len"].min() < traced["d_ff"].iloc[0] < traced["seq_len"].max()
    added = cells[cells["seq_len"] >= 2048]
    assert ((added["peak_mem_bytes"] / added["predicted_mem_bytes"] - 1).abs() <= 0.25).all()
