"""The measured noise floor of `analysis compare`: the same grid run four times (two A/A pairs) and once
more with one thread (A/B), each a separate process. The first pair measures how far two runs of the
same code drift apart (noise_floor.json); the second pair tests compare with and without that floor:
what it flags there is its false-alarm rate. What it flags in A/B is what it can see.

    python -m bench.noise_floor --profile quick --passes 3     # results/noise-<machine>/NOISE.md

The runs are python -m bench processes; the comparisons and NOISE.md come from python -m analysis.

With --paired, the same questions for `python -m bench ab` (paired, alternating passes) on the quick
grid's attention group at n = 128, 256, 512 with examples/extra_work_attention.py beside the built-ins:
an A/A of HEAD against itself, and an A/B against each of three throwaway revisions with a known slowdown
(SLOWDOWNS: one implementation, every cell, the whole process), into results/gate-<machine>/ (NOISE.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ab import DEFAULT_PAIRS, git
from bench.run_folder import refused
from infra.cli import add_renamed
from infra.files import atomic_write_text
from infra.machine import machine_facts, machine_slug

# a1, a2 measure the run-to-run spread; a3, a4 are a second A/A pair that tests it; b changes one thing.
RUNS = (("a1", {}), ("a2", {}), ("a3", {}), ("a4", {}), ("b-threads1", {"OMP_NUM_THREADS": "1"}))


EXTRA = "examples/extra_work_attention.py"
EXTRA_FRACTION = 0.06  # of the attention's work (forward FLOPs; 1.5x when training); NOISE.md has the slowdown
PAIRED_IMPLS = "attention.impl=naive,sdpa,torch_mha,examples.extra_work_attention:make"
INJECTED = "bench/injected_slowdown.py"
# The known slowdowns, each a one-line change on a throwaway revision: (A/B folder, file, line off, line on, what).
# Each was sized before the experiment to slow what it hits by about 8% (the old gate's blind spot: 8-10%);
# NOISE.md states what each measured.
SLOWDOWNS = (
    (
        "ab-extra",
        EXTRA,
        "EXTRA_FRACTION = 0.0",
        f"EXTRA_FRACTION = {EXTRA_FRACTION}",
        f"one implementation: examples/extra_work_attention.py does {EXTRA_FRACTION:.0%} of the attention's FLOPs "
        "as extra work",
    ),
    (
        "ab-every-cell",
        INJECTED,
        "STEP_STRETCH = 0.0",
        "STEP_STRETCH = 0.08",
        "every cell: each timed call takes 8% longer (a busy wait after it; the reference matmul untouched)",
    ),
    (
        "ab-process",
        INJECTED,
        "BACKGROUND_DUTY = 0.0",
        "BACKGROUND_DUTY = 0.04",
        "the whole process: a thread started with the run keeps a core busy 4% of every millisecond (leftover "
        "background work; the reference matmul slowed too)",
    ),
)


def slower_revision(repo: Path, path: str, off: str, on: str) -> str:
    """A commit on no branch: HEAD with the line `off` of `path` made `on` (a known slowdown)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "slower"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=repo, check=True, capture_output=True
        )
        try:
            lines = (tree / path).read_text().splitlines(keepends=True)
            if sum(line.rstrip("\n") == off for line in lines) != 1:
                raise SystemExit(f"error: {path} has no single line {off!r} to turn the slowdown on")
            (tree / path).write_text("".join(on + "\n" if line.rstrip("\n") == off else line for line in lines))
            identity = ["-c", "user.name=attnbench noise floor", "-c", "user.email=noise@attnbench.invalid"]
            subprocess.run(
                ["git", *identity, "commit", "-qam", f"noise floor: {on}"],
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
    folder = args.results / (args.name or f"gate-{machine_slug('cpu')}")
    names = ["aa", *(s[0] for s in SLOWDOWNS)]
    if any(refused(folder / name, machine_facts()) for name in names):
        return 2
    revisions = {name: slower_revision(repo, path, off, on) for name, path, off, on, _ in SLOWDOWNS}
    folder.mkdir(parents=True, exist_ok=True)
    experiment = {
        "pairs": args.pairs,
        "profile": args.profile,
        "base": git("rev-parse", "HEAD", cwd=repo),
        "slowdowns": {
            name: {"revision": revisions[name], "change": on, "what": what} for name, _, _, on, what in SLOWDOWNS
        },
    }
    atomic_write_text(folder / "experiment.json", json.dumps(experiment, indent=1))
    for name, new in (("aa", "HEAD"), *revisions.items()):
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
    p.add_argument("--name", default=None, help="with --paired: the folder under RESULTS (default: gate-MACHINE)")
    args = p.parse_args(argv)
    if args.paired:
        if args.pairs < 2:  # refused before any commit or file is made, as bench ab would refuse it later
            print(
                f"error: --pairs {args.pairs} is not accepted; give 2 or more (an interval needs two pairs)",
                file=sys.stderr,
            )
            return 2
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
