"""Atomic file writes (a reader sees the old file or the new one, never half of either), output folders
checked before any measuring, and the marker of a results folder attnbench made (the only kind whose index
it writes)."""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from pathlib import Path

# A results folder attnbench made, or was told it owns: only there does it write its index (README.md).
RESULTS_MARKER = ".attnbench-results"
# A machine's further runs, each a folder of its own inside the folder of its first: <machine folder>/runs/NNNN-DATE
# (git ignores runs/, so a committed run and its index stay as they were).
RUNS = "runs"
# What attnbench writes into a run folder: the run's JSON and traces, its report and figures. Everything else there
# (a user's notes) is left where it is by whatever replaces the run.
RUN_FILES = ("benchmarks.json", "traces", "REPORT.md", "figures")


def results_root(run_dir: Path) -> Path:
    """The results folder a run belongs to: its parent, or for a numbered run (MACHINE/runs/NNNN) its machine's."""
    run_dir = run_dir.resolve()
    return run_dir.parent.parent.parent if is_numbered_run(run_dir) else run_dir.parent


def is_numbered_run(run_dir: Path) -> bool:
    return run_dir.resolve().parent.name == RUNS


INDEX_HEADER = "Real runs of attnbench, one folder each. Written by `python -m analysis index`."


class OutputError(Exception):
    """An output path attnbench cannot write: one line naming it, found before anything is measured."""


# A folder or id attnbench names after the user: one path component, no leading dot (not '.', '..' or hidden),
# short enough for any file system once a suffix is added.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(option: str, value: str | None) -> None:
    """OutputError naming `option` unless `value` (if given) is one plain folder name."""
    if value is not None and not NAME_PATTERN.match(value):
        raise OutputError(
            f"{option} {value!r} is not accepted; use 1 to 100 letters, digits, '.', '_' and '-', starting with "
            "a letter or digit (one folder name, no path)"
        )


def atomic_write_text(path: Path, text: str) -> None:
    # a temporary name of its own, so two writers of one file never share (and steal) a temporary file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_csv(path: Path, rows: list[dict]) -> None:
    """Rows (dicts with the same keys) as a CSV with a header, written atomically."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())


def unused_path(path: Path) -> Path:
    """`path`, or where something is there already, the first free `path-2`, `path-3`...: a kept folder never
    lands on an earlier one (a retried job reuses its run id)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def writable_folder(path: Path, option: str) -> Path | None:
    """Make `path` a folder attnbench can write into, or OutputError naming `option` and why not. Returns the
    topmost folder it had to create (None if `path` existed), so a run that stops at once can take it away."""
    for existing in (path, *path.parents):
        if existing.exists():
            break
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder; give a folder")
    created = None if existing == path else next(p for p in (path, *path.parents) if p.parent == existing)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_created(created)
        reason = f"{option} {path}: cannot write there ({_reason(err)}); give a folder you can write to"
        raise OutputError(reason) from None
    return created


def remove_created(created: Path | None) -> None:
    """Remove folders `writable_folder` created, where they are still empty but for a lock this process took
    there (nothing of anyone's is lost)."""
    if created is None:
        return
    from infra.run_lock import LOCK_NAME

    for lock in created.rglob(LOCK_NAME):
        lock.unlink(missing_ok=True)
    for folder in sorted((p for p in [created, *created.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: something was written there, keep it


def writable_file(path: Path, option: str) -> None:
    """OutputError naming `option` unless `path` can be written (its folder exists and takes files)."""
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise OutputError(f"{option} {path}: no folder {path.parent}; create it first or give another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot write into {path.parent} ({_reason(err)})") from None


def mark_results_folder(folder: Path) -> None:
    """Mark a results folder as attnbench's own (bench does so where it made the folder itself)."""
    (folder / RESULTS_MARKER).write_text("attnbench writes its results index (README.md) in this folder.\n")


def owns_index(folder: Path) -> str | None:
    """None where attnbench may write folder/README.md (the folder carries the marker and any README there is
    an index attnbench wrote), else why not, in one line."""
    if not (folder / RESULTS_MARKER).is_file():
        return (
            f"{folder} is not a results folder attnbench made (no {RESULTS_MARKER} inside), so its README.md "
            f"is left alone; to have the index there, create {folder / RESULTS_MARKER}"
        )
    readme = folder / "README.md"
    if readme.exists():
        try:
            ours = INDEX_HEADER in readme.read_text(errors="replace")[:2000]
        except OSError:
            ours = False
        if not ours:
            return f"{readme} was not written by attnbench, so it is left alone"
    return None
