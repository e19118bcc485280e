"""The measured noise floor of `analysis compare`: the same grid run four times (two A/A pairs) and once
more with one thread (A/B), each a separate process. The first pair measures how far two runs of the
same code drift apart (noise_floor.json); the second pair tests compare with and without that floor:
what it flags there is its false-alarm rate. What it flags in A/B is what it can see.

    python -m bench.noise_floor --profile quick --passes 3     # results/noise-<machine>/NOISE.md

The runs are python -m bench processes; the comparisons and NOISE.md come from python -m analysis.

With --paired, the same questions for `python -m bench ab` (paired, alternating passes) on the quick
grid's attention group at n = 128, 256, 512 with examples/extra_work_attention.py beside the built-ins:
an A/A of HEAD against itself, and an A/B against a throwaway revision that makes that example do 6%
more attention work, into results/noise-paired-<machine>/ (NOISE.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ab import DEFAULT_PAIRS
from bench.run_folder import refused
from infra.cli import add_renamed
from infra.files import atomic_write_text
from infra.machine import machine_facts, machine_slug

# a1, a2 measure the run-to-run spread; a3, a4 are a second A/A pair that tests it; b changes one thing.
RUNS = (("a1", {}), ("a2", {}), ("a3", {}), ("a4", {}), ("b-threads1", {"OMP_NUM_THREADS": "1"}))


EXTRA = "examples/extra_work_attention.py"
EXTRA_FRACTION = 0.06  # of the attention's work (forward FLOPs; 1.5x when training); NOISE.md has the slowdown
PAIRED_IMPLS = "attention.impl=naive,sdpa,torch_mha,examples.extra_work_attention:make"


def slower_revision(repo: Path, fraction: float) -> str:
    """A commit on no branch: HEAD with the example doing `fraction` extra work (the known slowdown)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "slower"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=repo, check=True, capture_output=True
        )
        try:
            source = (tree / EXTRA).read_text()
            (tree / EXTRA).write_text(source.replace("EXTRA_FRACTION = 0.0", f"EXTRA_FRACTION = {fraction}"))
            identity = ["-c", "user.name=attnbench noise floor", "-c", "user.email=noise@attnbench.invalid"]
            subprocess.run(
                ["git", *identity, "commit", "-qam", f"noise floor: {fraction:.1%} extra attention work"],
                cwd=tree,
                check=True,
                capture_output=True,
            )
            return subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=tree, check=True, capture_output=True, text=True
            ).stdout.strip()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)


def paired(args: argparse.Namespace) -> int:
    repo = Path(__file__).resolve().parents[1]
    folder = args.results / f"noise-paired-{machine_slug('cpu')}"
    if any(refused(folder / name, machine_facts()) for name in ("aa", "ab-extra")):
        return 2
    slower = slower_revision(repo, EXTRA_FRACTION)
    folder.mkdir(parents=True, exist_ok=True)
    experiment = {"extra_fraction": EXTRA_FRACTION, "slower": slower, "pairs": args.pairs, "profile": args.profile}
    atomic_write_text(folder / "experiment.json", json.dumps(experiment))
    for name, new in (("aa", "HEAD"), ("ab-extra", slower)):
        print(f"attnbench noise floor (paired): {name}, HEAD against {new}", flush=True)
        command = [
            sys.executable,
            "-m",
            "bench",
            "ab",
            "--base",
            "HEAD",
            "--new",
            new,
            "--profile",
            args.profile,
            "--pairs",
            str(args.pairs),
            "--results",
            str(folder),
            "--name",
            name,
            "--fail-on",
            "time:5%",
            "--replace",
            "--set",
            PAIRED_IMPLS,
            "--set",
            "seq_len=128,256,512",
            "-k",
            "attention",
        ]
        if subprocess.run(command).returncode == 2:
            print(f"error: {name} failed; see above", file=sys.stderr)
            return 1
    return subprocess.run([sys.executable, "-m", "analysis", "noise", str(folder)]).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.noise_floor", description=__doc__.splitlines()[0])
    add_renamed(p.add_argument, "--profile", "--grid", default="quick", help="grid profile of every run")
    add_renamed(p.add_argument, "--passes", "--repeats", type=int, default=3, help="interleaved passes per run")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--paired", action="store_true", help="measure python -m bench ab (A/A, and a known slowdown)")
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="with --paired: base/new pass pairs per comparison")
    args = p.parse_args(argv)
    if args.paired:
        return paired(args)
    folder = args.results / f"noise-{machine_slug('cpu')}"
    if refused(folder, machine_facts()):
        return 2
    for name, env in RUNS:
        print(f"attnbench noise floor: run {name} {env or ''}", flush=True)
        command = [
            sys.executable,
            "-m",
            "bench",
            "--profile",
            args.profile,
            "--passes",
            str(args.passes),
            "--results",
            str(folder),
            "--name",
            name,
            "--no-traces",
            "--no-report",
            "--replace",
            "-q",
        ]
        # the experiment remeasures its own runs: each replaces its earlier self only once it completes
        if subprocess.run(command, env={**os.environ, **env}).returncode != 0:
            print(f"error: run {name} failed; see above", file=sys.stderr)
            return 1
    return subprocess.run([sys.executable, "-m", "analysis", "noise", str(folder)]).returncode


if __name__ == "__main__":
    sys.exit(main())
