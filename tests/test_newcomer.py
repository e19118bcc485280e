"""The README's main command as a newcomer meets it: a fresh clone whose results/ already holds a committed run
of this very machine (its fingerprint faked from a fixture). The run writes a folder of its own, exits 0, and
leaves every committed file as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_folder import folder_of_its_own, machine_tag, next_numbered
from infra.machine import machine_facts, machine_slug

pytestmark = pytest.mark.slow  # end to end: a real run in a subprocess

ROOT = Path(__file__).parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "quick-cpu" / "benchmarks.json"
SLUG = machine_slug("cpu")
CODE = ("bench", "infra", "model", "analysis", "experiments", "examples", ".gitignore", "pyproject.toml")
# the README's main command (tox -e cpu runs python -m bench --device cpu --profile default), cut to a few cells
MAIN = ("-m", "bench", "--device", "cpu", "--profile", "default", "--set", "seq_len=64", "--set", "dtype=float32")
FEW = ("-k", "attention and sdpa and not flex", "-q")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def committed_run_of_this_machine(folder: Path) -> None:
    """A real run's JSON whose fingerprint is this machine's, with a report beside it, as a clone would hold."""
    data = json.loads(FIXTURE.read_text())
    data["machine_info"]["attnbench"].update(machine_facts())
    folder.mkdir(parents=True)
    (folder / "benchmarks.json").write_text(json.dumps(data))
    (folder / "REPORT.md").write_text("# the committed report\n")


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A git checkout of the code with one committed run of this machine and its index in results/."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "clone"
    repo.mkdir()
    for name in CODE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / name)
    committed_run_of_this_machine(repo / "results" / SLUG)
    (repo / "results" / ".attnbench-results").write_text("attnbench writes its results index here.\n")
    (repo / "results" / "README.md").write_text(
        "# Results\n\nReal runs of attnbench, one folder each. Written by `python -m analysis index`.\n"
    )
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a committed run", cwd=repo)
    return repo


def test_the_main_command_on_a_clone_holding_this_machines_run_writes_a_run_of_its_own(clone):
    before = digests(clone)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    first = subprocess.run([sys.executable, *MAIN, *FEW], cwd=clone, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "already holds a run" not in first.stderr and "Traceback" not in first.stderr
    numbered = sorted((clone / "results" / SLUG / "runs").iterdir())
    assert [p.name[:4] for p in numbered] == ["0002"], numbered
    assert (numbered[0] / "benchmarks.json").is_file() and (numbered[0] / "REPORT.md").is_file()
    assert "a folder of its own" in first.stdout and str(numbered[0].relative_to(clone)) in first.stdout
    # a second run numbers on; neither touched a committed file, the index included
    second = subprocess.run([sys.executable, *MAIN, *FEW], cwd=clone, capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [p.name[:4] for p in sorted((clone / "results" / SLUG / "runs").iterdir())] == ["0002", "0003"]
    after = digests(clone)
    assert {name: after[name] for name in before} == before
    assert git("status", "--porcelain", cwd=clone) == ""  # nothing changed, nothing new that git would track
    # the index, asked for, lists every run, the numbered ones included
    index = subprocess.run(
        [sys.executable, "-m", "analysis", "index", "results"], cwd=clone, capture_output=True, text=True, env=env
    )
    assert index.returncode == 0, index.stderr
    text = (clone / "results" / "README.md").read_text()
    assert f"{SLUG}/runs/0002-" in text and f"{SLUG}/runs/0003-" in text


def test_replace_and_name_keep_their_meaning(tmp_path):
    here = machine_facts()
    folder = tmp_path / SLUG
    assert folder_of_its_own(folder, here) == (folder, None)  # an empty machine folder is the run's own
    committed_run_of_this_machine(folder)
    chosen, why = folder_of_its_own(folder, here)
    assert chosen == next_numbered(folder) and chosen.parent == folder / "runs" and "kept as it is" in why
    # a folder of the same name holding another machine's run: a folder beside it, named by the fingerprint
    data = json.loads((folder / "benchmarks.json").read_text())
    data["machine_info"]["attnbench"]["cpu_model_number"] = -1
    (folder / "benchmarks.json").write_text(json.dumps(data))
    chosen, why = folder_of_its_own(folder, here)
    assert chosen == tmp_path / f"{SLUG}-{machine_tag(here)}" and "another machine" in why
