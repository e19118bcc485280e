"""One writer per results folder: a run, a merge or a report takes the folder's lock (filelock) for as long
as it writes there; a second one refuses at once with one line instead of mixing its files (and its load)
with the first's. A child that its parent started while holding the lock (bench's report) is told so through
the environment and does not wait for its own parent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".attnbench.lock"
HELD_ENV = "ATTNBENCH_LOCK_HELD"  # folders (os.pathsep-separated) whose lock this process's parent holds


class FolderBusy(Exception):
    """Another attnbench process is writing into the folder."""


def _held_by_parent(folder: Path) -> bool:
    held = os.environ.get(HELD_ENV, "")
    return str(folder.resolve()) in held.split(os.pathsep)


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock while writing there (the folder must exist); FolderBusy where another process
    holds it. `what` names the writer in the refusal ("run", "merge", "report")."""
    if _held_by_parent(folder):
        yield
        return
    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderBusy(
            f"{folder} is in use by another attnbench process (its lock {folder / LOCK_NAME} is "
            f"held), so this {what} is refused; wait for that one to finish, or write into "
            "another folder (--name NAME or --results DIR)"
        ) from None
    previous = os.environ.get(HELD_ENV)
    os.environ[HELD_ENV] = os.pathsep.join(filter(None, [previous, str(folder.resolve())]))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HELD_ENV, None)
        else:
            os.environ[HELD_ENV] = previous
        lock.release()
