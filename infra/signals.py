"""SIGTERM handled as SIGINT is. SIGTERM is what `timeout`, CI runners and `docker stop` send: the run then
stops the way Ctrl-C stops it (the cells done so far written as this run's partial JSON, worktrees and
temporary folders removed). Both handlers note the signal, so a KeyboardInterrupt that no signal caused
(user code raising it) is told apart from a user stopping the run."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_received: list[int] = []
_deferring = [0]  # how many deferred() blocks are open
_pending: list[int] = []  # signals that arrived inside one


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    if _deferring[0]:
        _pending.append(signum)
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def deferred() -> Iterator[None]:
    """A stopping signal that arrives inside the block stops the run as the block ends, not inside it: for
    work where a KeyboardInterrupt cannot be reported. torch's profiler parses its events in C++ frames that
    carry no line number, and pytest's report of an interrupt raised there crashes (TypeError), so the run
    would exit 1 with a traceback instead of keeping its cells."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
        if not _deferring[0] and _pending:
            signum = _pending[-1]
            _pending.clear()
            raise KeyboardInterrupt(signal.Signals(signum).name)


def install() -> None:
    """Route SIGINT and SIGTERM through KeyboardInterrupt, noting which arrived (main thread only)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """`install` for the duration of the block, the previous handlers restored after it."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def received() -> int | None:
    """The last stopping signal this process received (SIGINT or SIGTERM), or None."""
    return _received[-1] if _received else None


def name() -> str:
    """The stopping signal's name (SIGINT, SIGTERM), or 'interrupted' where none arrived."""
    signum = received()
    return signal.Signals(signum).name if signum else "interrupted"


def exit_code(default: int) -> int:
    """128 + the signal that stopped the run, as a shell reports it, or `default` where none did."""
    signum = received()
    return 128 + signum if signum else default
