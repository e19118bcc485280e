"""The committed notebooks open with their outputs, and those outputs are the current code's: executed by
python -m analysis.notebooks at a commit whose notebook sources are today's, every code cell executed,
no error output. A notebook whose cells changed after it ran fails here until it is executed again."""

import subprocess
from pathlib import Path

import nbformat
import pytest

from analysis.notebooks import NOTEBOOKS, problems

ROOT = Path(__file__).parents[1]


def in_history(commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_committed_notebook_is_the_current_codes(path):
    commit = nbformat.read(path, as_version=4).metadata.get("attnbench", {}).get("commit", "")
    if commit and not in_history(commit) and (ROOT / ".git" / "shallow").exists():
        pytest.skip("a shallow clone: the commit the notebook ran on is not here to compare with")
    assert problems(path) == []


def test_a_notebook_edited_after_it_ran_is_found_stale(tmp_path):
    nb = nbformat.read(NOTEBOOKS[1], as_version=4)
    nb.cells[1].source += "\nx = 1"
    copy = tmp_path / NOTEBOOKS[1].name
    nbformat.write(nb, copy)
    found = problems(copy, committed_as=NOTEBOOKS[1])
    assert len(found) == 1 and "differ from those at the commit it ran on" in found[0]
    nb.cells[3].outputs = [nbformat.v4.new_output("error", ename="E", evalue="", traceback=[])]
    nbformat.write(nb, copy)
    assert any("hold error output" in line for line in problems(copy, committed_as=NOTEBOOKS[1]))
