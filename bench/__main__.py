"""Run a grid into results/<device>-<machine>/ and write its report.

    python -m bench --device cpu --profile default      # what `tox -e cpu` runs
    python -m bench --device cuda --profile cuda --shard 2/4   # one of 4 shards, into its own folder

Every output path is checked before anything is measured, and one run at a time writes into a folder (a
lock; a second run refuses). The JSON and traces are written in a staging folder named by the run and
swapped in only when pytest finishes, so an interrupted run (Ctrl-C or SIGTERM) never leaves a half-written
results folder: what it measured lands in <run>/interrupted-<run id>/. A run never writes over another: where
its machine's folder holds one it writes <folder>/runs/NNNN-DATE/ (bench/run_folder.py); a folder named by --name
that holds a run is refused without --replace. Extra arguments go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from bench.grid import GridError
from bench.run_folder import describe_run, folder_of_its_own, refused
from bench.sharding import parse_shard
from infra import signals
from infra.cli import add_renamed
from infra.files import (
    RUN_FILES,
    OutputError,
    check_name,
    mark_results_folder,
    remove_created,
    unused_path,
    writable_folder,
)
from infra.machine import machine_facts, machine_slug
from infra.run_lock import FolderBusy, folder_lock

BENCH_DIR = Path(__file__).parent


def run_folder_name(device: str, shard: str | None) -> str:
    if not shard:
        return machine_slug(device)
    k, n = parse_shard(shard)
    return f"{machine_slug(device)}-shard{k}of{n}"


def measured_cells(path: Path) -> tuple[int, list[dict]]:
    """How many grid cells a results JSON timed, and the cells that did not run."""
    data = json.loads(path.read_text())
    cells = {b["extra_info"].get("id") for b in data["benchmarks"]}
    return len(cells), data.get("attnbench_not_run", [])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_renamed(
        p.add_argument,
        "--profile",
        "--grid",
        default="default",
        help="grid profile from bench/grids.toml (quick, default, full, cuda, check)",
    )
    add_renamed(
        p.add_argument,
        "--passes",
        "--repeats",
        type=int,
        default=None,
        help="interleaved passes (default: the profile's)",
    )
    p.add_argument("--shard", default=None, metavar="K/N", help="run the K-th of N cost-balanced shards")
    p.add_argument("--results", type=Path, default=Path("results"), help="parent folder of the run folder")
    p.add_argument(
        "--name",
        default=None,
        help="run folder name (default: DEVICE-MACHINE[-shardKofN]; a numbered folder inside it where it holds a run)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the run the folder holds, once this one completes (without it such a folder is refused)",
    )
    p.add_argument(
        "--run-id",
        default=None,
        help="this run's id, which names its partial files (default: the start time and a random suffix)",
    )
    p.add_argument("--no-traces", action="store_true", help="skip the profiler traces")
    p.add_argument("--no-report", action="store_true", help="skip writing REPORT.md and figures")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ab"]:  # python -m bench ab --base REV: two versions in alternating passes (bench/ab.py)
        from bench.ab import main as ab_main

        return ab_main(argv[1:])
    args, pytest_args = parser().parse_known_args(argv)
    try:
        check_name("--name", args.name)
        check_name("--run-id", args.run_id)
        default = args.results / (args.name or run_folder_name(args.device, args.shard))
    except (GridError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"error: --device cuda, but torch {torch.__version__} sees no CUDA device here; run on a machine "
            "with a GPU (and a CUDA build of torch), or use --device cpu",
            file=sys.stderr,
        )
        return 2
    here = machine_facts()
    run_dir, moved = (default, None) if args.name or args.replace else folder_of_its_own(default, here)
    if refused(run_dir, here):
        return 2
    try:
        created = writable_folder(run_dir, "--results" if args.name is None else "--results/--name")
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if moved:
        print(f"attnbench: {moved}; this run writes a folder of its own: {run_dir}", flush=True)
    # a results folder made here is attnbench's own: its index is attnbench's to write
    ours = created is not None and args.results.resolve().is_relative_to(created.resolve())
    try:
        with folder_lock(run_dir, "run"), signals.interrupts_as_keyboard_interrupt():
            code = run(args, run_dir, pytest_args, args.results if ours else None)
    except FolderBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if code == USAGE:  # nothing was measured: leave no empty folder behind
        remove_created(created)
        return 2
    return code


USAGE = -1  # run(): a bad option, refused before anything ran


def run(args: argparse.Namespace, run_dir: Path, pytest_args: list[str], mark: Path | None) -> int:
    """The grid into `run_dir`, whose lock this process holds; `mark`: a results folder this run made."""
    earlier = run_dir / "benchmarks.json"
    if earlier.exists() and not args.replace:
        print(
            f"error: {run_dir} already holds a run ({describe_run(earlier)}); pass --replace to replace it once "
            "this run completes, or --name NAME for a folder of its own",
            file=sys.stderr,
        )
        return 2
    run_id = args.run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for stale in run_dir.glob(".partial-*"):  # a run that died without a word (SIGKILL): this lock is ours now
        shutil.rmtree(stale, ignore_errors=True)
    staging = run_dir / f".partial-{run_id}"
    staging.mkdir()
    partial_json, partial_traces = staging / "benchmarks.json", staging / "traces"
    command = [
        str(BENCH_DIR),
        f"--profile={args.profile}",
        f"--device={args.device}",
        f"--benchmark-json={partial_json}",
        "-p",
        "no:cacheprovider",
        "-rsf",
        *pytest_args,
    ]
    command += [f"--passes={args.passes}"] if args.passes is not None else []
    command += [f"--shard={args.shard}"] if args.shard else []
    if not args.no_traces:
        command.append(f"--trace-dir={partial_traces}")
    print(f"attnbench: profile {args.profile!r} on {args.device} -> {run_dir} (run {run_id})", flush=True)
    try:
        code = pytest.main(command)
    except KeyboardInterrupt:  # stopped outside a test (pytest stops inside one itself)
        code = pytest.ExitCode.INTERRUPTED
    if code == pytest.ExitCode.USAGE_ERROR:
        shutil.rmtree(staging, ignore_errors=True)
        return USAGE
    if mark is not None:
        mark_results_folder(mark)
    if code == pytest.ExitCode.INTERRUPTED or signals.received():
        return interrupted(run_dir, staging, run_id)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not partial_json.exists():
        return stopped(run_dir, staging, run_id, code)
    try:
        measured, not_run = measured_cells(partial_json)
    except (OSError, ValueError):  # written only in part (a write that failed): never taken for a run
        return stopped(run_dir, staging, run_id, pytest.ExitCode.INTERNAL_ERROR)
    if measured == 0 and earlier.exists():  # an empty run never replaces a measured one
        kept = set_apart(run_dir, staging, f"nothing-measured-{run_id}", keep=True)
        print(
            f"attnbench: no cell was measured ({len(not_run)} skipped or failed; reasons in {kept}/benchmarks.json);"
            f" the earlier run in {run_dir} is kept",
            file=sys.stderr,
        )
        return 1
    try:
        with signals.deferred():  # the swap-in completes whole; a stop that arrives inside it takes effect after
            swap_in(staging, run_dir)
        if measured == 0:
            reasons = sorted({o["reason"] for o in not_run})
            print(
                f"attnbench: no cell was measured: {len(not_run)} cells skipped or failed, every reason in "
                f"{earlier} (e.g. {reasons[0] if reasons else 'none'})",
                file=sys.stderr,
            )
            return 1
        if code == pytest.ExitCode.TESTS_FAILED:
            print("attnbench: some cells failed (see above); they are listed in benchmarks.json", file=sys.stderr)
        if not args.no_report and not args.shard:
            report = subprocess.run([sys.executable, "-m", "analysis", "report", str(run_dir)])
            code = code or report.returncode
    except KeyboardInterrupt:
        print(
            f"attnbench: run {run_id} stopped ({signals.name()}) after its cells were saved in {earlier}; its report "
            f"is not written (python -m analysis report {run_dir} writes it)",
            file=sys.stderr,
        )
        return signals.exit_code(2)
    return int(code)


def swap_in(staging: Path, run_dir: Path) -> None:
    """The staged run becomes the folder's: the earlier run's report goes first, then its JSON and traces are
    replaced by renames, so at any moment the folder holds one run's files (and whatever else was there)."""
    for name in RUN_FILES:
        if name == "benchmarks.json":
            continue  # replaced by a rename below, never missing
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    os.replace(staging / "benchmarks.json", run_dir / "benchmarks.json")
    if (staging / "traces").exists():
        os.replace(staging / "traces", run_dir / "traces")
    shutil.rmtree(staging, ignore_errors=True)


def set_apart(run_dir: Path, staging: Path, name: str, keep: bool) -> Path | None:
    """The staging folder kept as run_dir/NAME (beside, never over, an earlier one of that name) where `keep`,
    else removed: either way it is no longer this run's staging folder."""
    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    kept = unused_path(run_dir / name)
    os.replace(staging, kept)
    return kept


def stopped(run_dir: Path, staging: Path, run_id: str, code: int) -> int:
    """pytest ended without a complete results file: whatever the run wrote is kept apart (a later run never
    deletes it), the earlier run untouched."""
    kept = set_apart(run_dir, staging, f"unsaved-{run_id}", staging.is_dir() and any(staging.iterdir()))
    where = f"what it wrote is kept in {kept}" if kept else "it wrote nothing"
    print(
        f"attnbench: run {run_id} stopped (pytest exit {int(code)}); {where}; earlier results in {run_dir} are "
        "untouched",
        file=sys.stderr,
    )
    return int(code) or 1


def interrupted(run_dir: Path, staging: Path, run_id: str) -> int:
    """An interrupted run: what it measured apart, in a folder named by the run; the earlier run untouched."""
    kept = set_apart(run_dir, staging, f"interrupted-{run_id}", (staging / "benchmarks.json").exists())
    where = f"the cells it finished are in {kept}/benchmarks.json" if kept else "no cell had finished"
    print(
        f"attnbench: run {run_id} stopped ({signals.name()}); {where}; earlier results in {run_dir} are untouched",
        file=sys.stderr,
    )
    return signals.exit_code(2)


if __name__ == "__main__":
    sys.exit(main())
