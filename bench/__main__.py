"""Run a grid into results/<device>-<machine>/ and write its report.

    python -m bench --device cpu --profile default      # what `tox -e cpu` runs
    python -m bench --device cuda --profile cuda --shard 2/4   # one of 4 shards, into its own folder

The JSON and traces are written beside the old ones and swapped in only when pytest finishes, so an
interrupted run never leaves a half-written results folder. Extra arguments go to pytest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.grid import GridError
from bench.run_folder import refused
from bench.sharding import parse_shard
from infra.cli import add_renamed
from infra.machine import machine_facts, machine_slug

BENCH_DIR = Path(__file__).parent


def run_folder_name(device: str, shard: str | None) -> str:
    if not shard:
        return machine_slug(device)
    k, n = parse_shard(shard)
    return f"{machine_slug(device)}-shard{k}of{n}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ab"]:  # python -m bench ab --base REV: two versions in alternating passes (bench/ab.py)
        from bench.ab import main as ab_main

        return ab_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_renamed(p.add_argument, "--profile", "--grid", default="default",
                help="grid profile from bench/grids.toml (quick, default, full, cuda, check)")
    add_renamed(p.add_argument, "--passes", "--repeats", type=int, default=None,
                help="interleaved passes (default: the profile's)")
    p.add_argument("--shard", default=None, metavar="K/N", help="run the K-th of N cost-balanced shards")
    p.add_argument("--results", type=Path, default=Path("results"), help="parent folder of the run folder")
    p.add_argument("--name", default=None, help="run folder name (default: DEVICE-MACHINE[-shardKofN])")
    p.add_argument("--no-traces", action="store_true", help="skip the profiler traces")
    p.add_argument("--no-report", action="store_true", help="skip writing REPORT.md and figures")
    args, pytest_args = p.parse_known_args(argv)
    try:
        run_dir = args.results / (args.name or run_folder_name(args.device, args.shard))
    except GridError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if refused(run_dir, machine_facts()):
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    partial_json, partial_traces = run_dir / "benchmarks.partial.json", run_dir / "traces.partial"
    shutil.rmtree(partial_traces, ignore_errors=True)
    command = [str(BENCH_DIR), f"--profile={args.profile}", f"--device={args.device}",
               f"--benchmark-json={partial_json}", "-p", "no:cacheprovider", "-rsf", *pytest_args]  # fmt: skip
    command += [f"--passes={args.passes}"] if args.passes is not None else []
    command += [f"--shard={args.shard}"] if args.shard else []
    if not args.no_traces:
        command.append(f"--trace-dir={partial_traces}")
    print(f"attnbench: profile {args.profile!r} on {args.device} -> {run_dir}", flush=True)
    code = pytest.main(command)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not partial_json.exists():
        print(f"attnbench: run stopped (pytest exit {int(code)}); earlier results in {run_dir} are untouched",
              file=sys.stderr)  # fmt: skip
        return int(code) or 1
    os.replace(partial_json, run_dir / "benchmarks.json")
    shutil.rmtree(run_dir / "traces", ignore_errors=True)
    if partial_traces.exists():
        os.replace(partial_traces, run_dir / "traces")
    if code == pytest.ExitCode.TESTS_FAILED:
        print("attnbench: some cells failed (see above); they are listed in benchmarks.json", file=sys.stderr)
    if not args.no_report and not args.shard:
        report = subprocess.run([sys.executable, "-m", "analysis", "report", str(run_dir)])
        code = code or report.returncode
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
