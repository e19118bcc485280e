"""Shards of one grid (python -m bench --shard K/N on several machines) merged into one run folder,
whose report lists every cell as one unsharded run would. Shards of different grids or commits are
refused, and so is an incomplete set. The merge writes only into a new (or empty) folder or over an earlier
merge, never over anything else, through a staging folder swapped in whole."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from analysis.errors import AnalysisError
from analysis.load import machine_label, read_json, upgrade
from infra.files import RUN_FILES, writable_folder
from infra.run_lock import LOCK_NAME, folder_lock

SAME = ("grid_profile", "grid", "grid_overrides", "git_commit")


def is_earlier_merge(folder: Path) -> bool:
    """A folder an earlier merge wrote: its benchmarks.json names the shards it merged."""
    try:
        facts = json.loads((folder / "benchmarks.json").read_text())["machine_info"]["attnbench"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(facts.get("merged_shards"))


def check_out(out: Path, shard_dirs: list[Path]) -> None:
    """OUT may be new, an empty folder or an earlier merge; never a shard, a folder holding one, or else."""
    target = out.resolve()
    for folder in shard_dirs:
        shard = folder.resolve()
        if shard == target or shard.is_relative_to(target):
            raise AnalysisError(
                f"OUT {out} is (or holds) the shard {folder}: the merge would replace what it "
                "merges; give a new folder, e.g. results/NAME-merged"
            )
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"OUT {out} is a file; give a new folder (or an earlier merge's) for the merged run")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not is_earlier_merge(out):
        raise AnalysisError(
            f"OUT {out} holds files that no merge wrote; the merge writes only into a new or empty "
            "folder, or over an earlier merge: give another OUT"
        )


def merge_shards(shard_dirs: list[Path], out: Path) -> Path:
    check_out(out, shard_dirs)
    shards = []
    for folder in shard_dirs:
        data = upgrade(read_json(folder / "benchmarks.json"))
        facts = data["machine_info"]["attnbench"]
        if not facts.get("shard"):
            raise AnalysisError(f"{folder}: not a shard (run with --shard K/N)")
        shards.append((folder, data, facts))
    first = shards[0][2]
    for folder, _, facts in shards[1:]:
        for fact in SAME:
            if facts.get(fact) != first.get(fact):
                raise AnalysisError(
                    f"{folder} and {shards[0][0]} differ in {fact} ({facts.get(fact)!r} vs "
                    f"{first.get(fact)!r}): only shards of one grid at one commit merge"
                )
    numbers = sorted(int(f["shard"].split("/")[0]) for _, _, f in shards)
    total = int(first["shard"].split("/")[1])
    if numbers != list(range(1, total + 1)):
        raise AnalysisError(f"shards {numbers} of {total} given: a merge needs each of 1..{total} exactly once")
    merged = json.loads(json.dumps(shards[0][1]))  # machine_info, commit_info and version of shard 1
    facts = merged["machine_info"]["attnbench"]
    facts.update(
        shard=None,
        merged_shards=[f["shard"] for _, _, f in shards],
        shard_machines={f["shard"]: machine_label(f) for _, _, f in shards},
    )
    merged["benchmarks"], merged["attnbench_not_run"] = [], []
    # every shard measured its own matmul peak (its cells' MFU divides by it): each kept, naming its shard
    facts["matmul_peak"] = [
        {**peak, "shard": shard_facts["shard"].split("/")[0]}
        for _, _, shard_facts in shards
        for peak in shard_facts.get("matmul_peak", [])
    ]
    facts["bandwidth"] = [
        {**point, "shard": shard_facts["shard"].split("/")[0]}
        for _, _, shard_facts in shards
        for point in shard_facts.get("bandwidth", [])
    ]
    for _, data, _ in shards:
        for bench in data["benchmarks"]:
            merged["benchmarks"].append(bench)
        merged["attnbench_not_run"] += data.get("attnbench_not_run", [])
    writable_folder(out.parent, "OUT's folder")
    staging = Path(tempfile.mkdtemp(prefix=".merge-", dir=out.parent))
    try:
        (staging / "benchmarks.json").write_text(json.dumps(merged))
        for folder, _, _ in shards:
            if (folder / "traces").is_dir():
                shutil.copytree(folder / "traces", staging / "traces", dirs_exist_ok=True)
        swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def swap_in(staging: Path, out: Path) -> None:
    """The merged folder appears whole or not at all; an earlier merge there (checked) is set aside, the files no
    merge or report wrote (a user's notes, their data) are moved into the new one, then the rest is removed."""
    if not out.exists():
        staging.rename(out)
        return
    with folder_lock(out, "merge"):
        check_out(out, [])  # still empty or an earlier merge, now that this process holds its lock
        old = Path(tempfile.mkdtemp(prefix=".merge-old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    staging.rename(out)
    for entry in old.iterdir():
        if entry.name not in (*RUN_FILES, LOCK_NAME):
            entry.rename(out / entry.name)
    shutil.rmtree(old)  # only once every file of the user's is in the new folder
