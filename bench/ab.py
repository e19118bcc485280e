"""python -m bench ab: two versions of the code, timed in alternating passes, then compared.

    python -m bench ab --base origin/main                  # HEAD (a clean tree) against origin/main
    python -m bench ab --base v0.1 --new my-branch --fail-on device_time:5%

Each side is checked out into its own git worktree; the grid runs one pass at a time in a fresh process
per pass, alternating base and new in pairs (B N, N B, B N, ...), so that the machine's drift during the
experiment hits both sides alike and cancels in each pair's ratio (Chromium's pinpoint, asv continuous).
The two sides land in RESULTS/NAME/base and RESULTS/NAME/new (benchmarks.json each, written only when every
pass finished), `analysis compare` reads them as a pair and writes RESULTS/NAME/compare.md; with
--fail-on its exit code gates a pull request. Every option and the output folder are checked before the
first pass; a folder that holds an earlier A/B is refused without --replace. Worktrees and the temporary
folder are removed whatever happens (Ctrl-C and SIGTERM included); an interrupted A/B keeps the pairs it
finished in RESULTS/NAME/interrupted-ID/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.run_folder import other_machine
from infra import signals
from infra.files import OutputError, atomic_write_text, check_name, remove_created, writable_folder
from infra.machine import machine_facts, machine_slug
from infra.run_lock import FolderBusy, folder_lock


class ABError(Exception):
    """Bad input or a failed pass: one line, nothing written."""


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
    return result.stdout.strip()


def resolve_revision(repo: Path, rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo)
    except ABError:
        raise ABError(f"--base/--new {rev!r} is not a revision of {repo}; give a commit, branch or tag") from None


OWNER = "owner.pid"  # in an A/B's temporary folder: the process whose worktrees live there


def prune_abandoned(repo: Path) -> list[str]:
    """Worktrees an earlier A/B left when it was killed (SIGKILL leaves no chance to remove them): those whose
    temporary folder names a process that is gone, removed with their folder. Another A/B's still running are
    left alone. The paths removed."""
    listed = git("worktree", "list", "--porcelain", cwd=repo).splitlines()
    removed = []
    for line in listed:
        path = Path(line.removeprefix("worktree ")) if line.startswith("worktree ") else None
        if path is None or not path.parent.name.startswith(TEMPORARY_PREFIX):
            continue
        try:
            owner = int((path.parent / OWNER).read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and psutil.pid_exists(owner):
            continue
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True)
        shutil.rmtree(path.parent, ignore_errors=True)
        removed.append(str(path))
    subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
    return removed


TEMPORARY_PREFIX = "attnbench-ab-"


@contextmanager
def worktrees(repo: Path, revisions: dict[str, str], parent: Path):
    """One detached worktree per side, removed on the way out (an interrupt included); the folder names this
    process as their owner, so a later A/B can remove them should this one be killed."""
    made: list[Path] = []
    (parent / OWNER).write_text(str(os.getpid()))
    try:
        dirs = {}
        for side, sha in revisions.items():
            path = parent / side
            git("worktree", "add", "--detach", str(path), sha, cwd=repo)
            made.append(path)
            dirs[side] = path
        yield dirs
    finally:
        for path in made:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


# Simultaneous intervals over a grid's cells need a tight per-cell spread: on the quick attention group (24 cells)
# 10 pairs gave a median simultaneous half-width of 6.8%, 20 pairs 4.5-5.2% (results/noise-paired-*, gate-*): at
# 20, real slowdowns of 6-10% (one implementation, every cell, the whole process) fail the gate, while an unchanged
# grid on a 2-core VM stays undecided where its noisiest cells would need about 100 pairs (results/gate-*/NOISE.md).
DEFAULT_PAIRS = 20


GRID_FILE = "bench/conftest.py"  # a revision without it has no grid to run


def check_has_grid(repo: Path, option: str, rev: str, sha: str) -> None:
    if subprocess.run(["git", "cat-file", "-e", f"{sha}:{GRID_FILE}"], cwd=repo, capture_output=True).returncode:
        raise ABError(
            f"{option} {rev!r} ({sha[:10]}) has no {GRID_FILE}: it predates attnbench's grid, so it cannot be run; "
            "give a later revision"
        )


def pass_options(checkout: Path, profile: str) -> list[str]:
    """One pass of `profile`, in the option names that side's code knows (older ones: --grid, --repeats)."""
    conftest = (checkout / GRID_FILE).read_text()
    new_names = '"--profile"' in conftest
    options = [f"--profile={profile}", "--passes=1"] if new_names else [f"--grid={profile}", "--repeats=1"]
    options += ["--time-budget-min=0"] if "--time-budget-min" in conftest else []
    return options + (["--common-mode"] if '"--common-mode"' in conftest else [])


def run_pass(checkout: Path, out: Path, profile: str, pytest_args: list[str], timeout_s: float) -> dict:
    """One pass of the grid by the code in `checkout`, in its own process; its pytest-benchmark JSON."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/",
        "-q",
        "-p",
        "no:cacheprovider",
        *pass_options(checkout, profile),
        f"--benchmark-json={out}",
        *pytest_args,
    ]
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # that side's packages, not the installed ones
    try:
        result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ABError(f"a pass in {checkout.name} ran past {timeout_s:.0f} s") from None
    if result.returncode not in (0, 1) or not out.is_file():
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise ABError(f"a pass of the {checkout.name} side failed (pytest exit {result.returncode}): {tail[0]}")
    return json.loads(out.read_text())


def merge_passes(passes: list[dict], side: str, ab: dict) -> dict:
    """The side's passes as one benchmark JSON of `len(passes)` interleaved passes, marked as one side of `ab`."""
    merged = {**passes[0], "benchmarks": []}
    for index, data in enumerate(passes):
        for bench in data["benchmarks"]:
            extra = {**bench["extra_info"], "pass_index": index, "passes": len(passes)}
            merged["benchmarks"].append({**bench, "name": f"{bench['name']}-r{index}", "extra_info": extra})
    facts = merged["machine_info"]["attnbench"] = {**passes[0]["machine_info"]["attnbench"], "passes": len(passes)}
    facts["ab"] = {**ab, "side": side, "revision": ab[side]}
    return merged


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the revision to compare against")
    p.add_argument("--new", default=None, help="the revision under test (default: HEAD, with a clean tree)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help=f"base/new pass pairs (default {DEFAULT_PAIRS})")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--name", default=None, help="folder under RESULTS (default: ab-MACHINE)")
    p.add_argument("--fail-on", default=None, metavar="METRIC:PCT,...", help="as analysis compare's")
    p.add_argument("--pass-timeout-s", type=float, default=1800.0)
    p.add_argument(
        "--replace", action="store_true", help="replace an earlier A/B in the folder once this one completes"
    )
    return p


def plan(pairs: int) -> list[tuple[int, str]]:
    """(pass index, side) in run order: B N, N B, B N, ...: a linear drift also cancels across two pairs."""
    order = []
    for i in range(pairs):
        sides = ("base", "new") if i % 2 == 0 else ("new", "base")
        order += [(i, side) for side in sides]
    return order


def write_sides(folder: Path, passes: dict[str, list[dict]], ab: dict) -> None:
    for side in ("base", "new"):
        (folder / side).mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / side / "benchmarks.json", json.dumps(merge_passes(passes[side], side, ab)))


def check_options(args: argparse.Namespace, out_dir: Path) -> Path | None:
    """Every option and the output folder, before the first pass: a bad one costs nothing measured."""
    from analysis.compare import parse_thresholds
    from analysis.errors import AnalysisError

    try:
        check_name("--name", args.name)
    except OutputError as err:
        raise ABError(str(err)) from None
    if args.pairs < 2:
        raise ABError(f"--pairs {args.pairs} is not accepted; give 2 or more (an interval needs two pairs)")
    if not args.pass_timeout_s > 0:
        raise ABError(f"--pass-timeout-s {args.pass_timeout_s:g} is not accepted; give a positive number of seconds")
    try:
        parse_thresholds(args.fail_on, "--fail-on")
    except AnalysisError as err:
        raise ABError(str(err)) from None
    if (reason := other_machine(out_dir, machine_facts())) is not None:
        raise ABError(reason)
    if (out_dir / "base" / "benchmarks.json").exists() and not args.replace:
        raise ABError(
            f"{out_dir} already holds an A/B; pass --replace to replace it once this one completes, or "
            "--name NAME for a folder of its own"
        )
    try:
        return writable_folder(out_dir, "--results/--name")
    except OutputError as err:
        raise ABError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    args, pytest_args = parser().parse_known_args(argv)
    repo = Path(__file__).resolve().parents[1]
    out_dir = args.results / (args.name or f"ab-{machine_slug('cpu')}")
    passes: dict[str, list[dict]] = {"base": [], "new": []}
    ab: dict = {}
    created = None  # the folders made for the output, taken away again where nothing was written
    try:
        revisions = {"base": resolve_revision(repo, args.base), "new": resolve_revision(repo, args.new or "HEAD")}
        if args.new is None and git("status", "--porcelain", "--untracked-files=no", cwd=repo):
            raise ABError("the working tree has uncommitted changes: commit them (the new side is HEAD) or give --new")
        for side, option in (("base", "--base"), ("new", "--new")):
            check_has_grid(repo, option, getattr(args, side) or "HEAD", revisions[side])
        created = check_options(args, out_dir)
        for path in prune_abandoned(repo):
            print(f"attnbench ab: removed the worktree {path} a killed A/B left behind", file=sys.stderr)
        ab = {"id": uuid.uuid4().hex, "pairs": args.pairs, "profile": args.profile, **revisions}
        with folder_lock(out_dir, "A/B"), signals.interrupts_as_keyboard_interrupt():
            with (
                tempfile.TemporaryDirectory(prefix=TEMPORARY_PREFIX) as tmp,
                worktrees(repo, revisions, Path(tmp)) as dirs,
            ):
                for n, (index, side) in enumerate(plan(args.pairs), 1):
                    print(f"[{n}/{2 * args.pairs}] pass {index + 1} of {side} ({revisions[side][:10]})", flush=True)
                    out = Path(tmp) / f"{side}-{index}.json"
                    passes[side].append(run_pass(dirs[side], out, args.profile, pytest_args, args.pass_timeout_s))
            write_sides(out_dir, passes, ab)
    except (ABError, FolderBusy) as err:
        print(f"error: {err}", file=sys.stderr)
        remove_created(created)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the worktrees and the temporary folder are gone by now
        return interrupted(out_dir, passes, ab)
    from analysis.__main__ import main as analysis_main

    command = ["compare", str(out_dir / "base"), str(out_dir / "new"), "--out", str(out_dir)]
    return analysis_main(command + (["--fail-on", args.fail_on] if args.fail_on else []))


def interrupted(out_dir: Path, passes: dict[str, list[dict]], ab: dict) -> int:
    """The pairs an interrupted A/B finished, apart in a folder named by it; nothing else written."""
    pairs = min(len(passes["base"]), len(passes["new"]))
    how = signals.name()
    if pairs and ab:
        kept = out_dir / f"interrupted-{ab['id'][:12]}"
        write_sides(kept, {side: passes[side][:pairs] for side in passes}, {**ab, "pairs": pairs})
        where = f"the {pairs} pairs it finished are in {kept}/base and {kept}/new"
    else:
        where = "no pair had finished"
    print(f"attnbench ab: stopped ({how}); worktrees and temporary files removed; {where}", file=sys.stderr)
    return signals.exit_code(2)


if __name__ == "__main__":
    sys.exit(main())
