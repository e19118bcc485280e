"""The committed notebooks, executed by the committed code and saved with their outputs, so a reader who
opens one as a file (on GitHub, in an editor) sees its figures, tables and samples.

    python -m analysis.notebooks            # execute both in place (what `tox -e notebooks` runs)
    python -m analysis.notebooks --check    # are the committed notebooks the current code's? (exit 1 if not)

Each notebook records, in its metadata and in its first code cell's output, the machine and the commit it
ran on. A clean tree is required to execute them, so that commit is exactly the code that ran. The check
asks what staleness means here: the same cells and sources as at the recorded commit, every code cell
executed, and no error output. Measured figures may differ from run to run; that is not staleness.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import nbformat

from infra.files import atomic_write_text
from infra.machine import git_commit, machine_slug

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = (ROOT / "analysis" / "transformer.ipynb", ROOT / "analysis" / "figures.ipynb")
TIMEOUT_S = 900  # per cell: the transformer notebook trains for a minute and runs a small grid


def execute(path: Path, commit: str) -> nbformat.NotebookNode:
    """The notebook executed, in memory (written only once every notebook ran, so each saw a clean tree)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nb.metadata["attnbench"] = {"commit": commit, "machine": machine_slug("cpu")}
    return nb


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def problems(path: Path, committed_as: Path | None = None) -> list[str]:
    """Why the committed notebook is not the current code's, one line each (empty: it is). `committed_as`: the
    notebook's path in the repository, where `path` is a copy of it."""
    nb = nbformat.read(path, as_version=4)
    name = (committed_as or path).relative_to(ROOT)
    recorded = nb.metadata.get("attnbench", {}).get("commit")
    if not recorded:
        return [f"{name}: no recorded commit: it was not executed by python -m analysis.notebooks"]
    out = []
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    unexecuted = [i for i, cell in enumerate(code) if cell.get("execution_count") is None]
    if unexecuted:
        out.append(f"{name}: code cells {unexecuted} were never executed")
    errors = [i for i, cell in enumerate(code) if any(o.get("output_type") == "error" for o in cell.outputs)]
    if errors:
        out.append(f"{name}: code cells {errors} hold error output")
    if not code or not code[0].outputs:
        out.append(f"{name}: its first code cell has no output naming the machine and commit it ran on")
    then = subprocess.run(["git", "show", f"{recorded}:{name}"], cwd=ROOT, capture_output=True, text=True)
    if then.returncode != 0:
        out.append(f"{name}: the recorded commit {recorded} is not in this repository's history")
    elif sources(nbformat.reads(then.stdout, as_version=4)) != sources(nb):
        out.append(f"{name}: its cells differ from those at the commit it ran on ({recorded[:10]}): execute it again")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.notebooks", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="check the committed notebooks instead of executing them")
    args = p.parse_args(argv)
    if args.check:
        found = [line for path in NOTEBOOKS for line in problems(path)]
        print("\n".join(found) or "the committed notebooks are the current code's")
        return 1 if found else 0
    commit = git_commit(ROOT)
    if not commit or commit.endswith("-dirty"):
        print(
            "error: the working tree has uncommitted changes; commit them first, so the notebooks record the "
            "code that ran",
            file=sys.stderr,
        )
        return 2
    executed = []
    for path in NOTEBOOKS:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        executed.append(execute(path, commit))
    for path, nb in zip(NOTEBOOKS, executed):
        atomic_write_text(path, nbformat.writes(nb) + "\n")
    print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in NOTEBOOKS)} (commit {commit[:10]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
