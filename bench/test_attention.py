"""Benchmark group 'attention': see bench/workloads.py for what a cell runs."""

from bench.cell_runner import run_cell

GROUP = "attention"


def test_attention(benchmark, cell, grid, pass_index, trace_dir, first_pass, time_limit_s, partner):
    run_cell(benchmark, cell, grid, pass_index, trace_dir, first_pass, time_limit_s, partner)
