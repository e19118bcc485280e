"""Options renamed for what they mean (--profile, --passes, --trace-dir): the old names still work and say so."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import add_renamed

ROOT = Path(__file__).resolve().parents[1]


def test_old_name_sets_the_new_option_and_says_so(capsys):
    p = argparse.ArgumentParser()
    add_renamed(p.add_argument, "--passes", "--repeats", type=int, default=None)
    assert p.parse_args(["--repeats", "2"]).passes == 2
    assert "--repeats is deprecated; use --passes" in capsys.readouterr().err
    assert p.parse_args(["--passes", "4"]).passes == 4 and p.parse_args([]).passes is None
    assert "--repeats" not in p.format_help()  # the old name is hidden from --help


@pytest.mark.slow
def test_pytest_grid_still_takes_the_old_names():
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--grid",
        "quick",
        "--repeats",
        "2",
        "--set",
        "seq_len=64",
        "-k",
        "attention and sdpa and forward",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "--grid is deprecated; use --profile" in out and "--repeats is deprecated; use --passes" in out
    assert "-r1]" in result.stdout  # two passes collected


@pytest.mark.parametrize(
    ("old", "new"),
    [("model.train", "experiments.train"), ("model.positional_experiment", "experiments.positional_experiment")],
)
def test_old_module_names_still_run_and_say_the_new_one(old, new):
    result = subprocess.run([sys.executable, "-m", old, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"python -m {old} is deprecated; use python -m {new}") == 1
    assert f"python -m {new}" in result.stdout  # the new module's own usage
