"""Benchmark group 'layer': see bench/workloads.py for what a cell runs."""

from bench.cell_runner import run_cell

GROUP = "layer"


def test_layer(benchmark, cell, grid, profile_dir):
    run_cell(benchmark, cell, grid, profile_dir)
