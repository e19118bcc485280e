"""The measured noise floor of `analysis compare`: the same grid run four times (two A/A pairs) and once
more with one thread (A/B), each a separate process. The first pair measures how far two runs of the
same code drift apart (noise_floor.json); the second pair tests compare with and without that floor:
what it flags there is its false-alarm rate. What it flags in A/B is what it can see.

    python -m bench.noise_floor --profile quick --passes 3     # results/noise-<machine>/NOISE.md

The runs are python -m bench processes; the comparisons and NOISE.md come from python -m analysis.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.run_folder import refused
from infra.cli import add_renamed
from infra.machine import machine_facts, machine_slug

# a1, a2 measure the run-to-run spread; a3, a4 are a second A/A pair that tests it; b changes one thing.
RUNS = (("a1", {}), ("a2", {}), ("a3", {}), ("a4", {}), ("b-threads1", {"OMP_NUM_THREADS": "1"}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.noise_floor", description=__doc__.splitlines()[0])
    add_renamed(p.add_argument, "--profile", "--grid", default="quick", help="grid profile of every run")
    add_renamed(p.add_argument, "--passes", "--repeats", type=int, default=3, help="interleaved passes per run")
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    folder = args.results / f"noise-{machine_slug('cpu')}"
    if refused(folder, machine_facts()):
        return 2
    for name, env in RUNS:
        print(f"attnbench noise floor: run {name} {env or ''}", flush=True)
        command = [sys.executable, "-m", "bench", "--profile", args.profile, "--passes", str(args.passes), "--results",
                   str(folder), "--name", name, "--no-traces", "--no-report", "-q"]  # fmt: skip
        if subprocess.run(command, env={**os.environ, **env}).returncode != 0:
            print(f"error: run {name} failed; see above", file=sys.stderr)
            return 1
    return subprocess.run([sys.executable, "-m", "analysis", "noise", str(folder)]).returncode


if __name__ == "__main__":
    sys.exit(main())
