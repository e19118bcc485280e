"""Shards of one grid (python -m bench --shard K/N on several machines) merged into one run folder,
whose report lists every cell as one unsharded run would. Shards of different grids or commits are
refused, and so is an incomplete set."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from analysis.errors import AnalysisError
from analysis.load import machine_label, read_json

SAME = ("grid_profile", "grid", "grid_overrides", "git_commit")


def merge_shards(shard_dirs: list[Path], out: Path) -> Path:
    shards = []
    for folder in shard_dirs:
        data = read_json(folder / "benchmarks.json")
        facts = data["machine_info"]["attnbench"]
        if not facts.get("shard"):
            raise AnalysisError(f"{folder}: not a shard (run with --shard K/N)")
        shards.append((folder, data, facts))
    first = shards[0][2]
    for folder, _, facts in shards[1:]:
        for fact in SAME:
            if facts.get(fact) != first.get(fact):
                raise AnalysisError(f"{folder} and {shards[0][0]} differ in {fact} ({facts.get(fact)!r} vs "
                                    f"{first.get(fact)!r}): only shards of one grid at one commit merge")  # fmt: skip
    numbers = sorted(int(f["shard"].split("/")[0]) for _, _, f in shards)
    total = int(first["shard"].split("/")[1])
    if numbers != list(range(1, total + 1)):
        raise AnalysisError(f"shards {numbers} of {total} given: a merge needs each of 1..{total} exactly once")
    merged = json.loads(json.dumps(shards[0][1]))  # machine_info, commit_info and version of shard 1
    facts = merged["machine_info"]["attnbench"]
    facts.update(shard=None, merged_shards=[f["shard"] for _, _, f in shards],
                 shard_machines={f["shard"]: machine_label(f) for _, _, f in shards})  # fmt: skip
    merged["benchmarks"], merged["attnbench_not_run"] = [], []
    for _, data, shard_facts in shards:
        for bench in data["benchmarks"]:
            extra = bench["extra_info"]
            if extra["group"] == "calibration":  # every shard measures its own peak: keep each, apart
                extra["id"] = f"{extra['id']}@shard{shard_facts['shard'].split('/')[0]}"
            merged["benchmarks"].append(bench)
        merged["attnbench_not_run"] += data.get("attnbench_not_run", [])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".merge-", dir=out.parent))
    (staging / "benchmarks.json").write_text(json.dumps(merged))
    for folder, _, _ in shards:
        if (folder / "traces").is_dir():
            shutil.copytree(folder / "traces", staging / "traces", dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # the merged folder appears whole or not at all
    return out
