"""User code kept from the run: torch's process-wide settings saved before a cell and restored after it (a
change is that cell's failure, named in one line), a time limit on each pass of a user cell, and what user
code raises to stop a process (SystemExit, a KeyboardInterrupt no signal caused) turned into its cell's
failure."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import psutil
import torch

from infra import signals

# At least this long, and this many times the cost model's prediction of the pass: a limit for a module that
# hangs or crawls, far above what a working one needs (the prediction is of this CPU's measured pace).
LIMIT_FLOOR_S = 20.0
LIMIT_FACTOR = 10.0


@dataclass(frozen=True)
class Setting:
    name: str
    get: Callable[[], object]
    set: Callable[[object], None]


def _backend_flag(module: object, attr: str) -> Setting:
    return Setting(f"{module.__name__}.{attr}", lambda: getattr(module, attr), lambda v: setattr(module, attr, v))


def _sdp(kind: str) -> Setting:
    cuda = torch.backends.cuda
    return Setting(
        f"torch.backends.cuda.{kind}_sdp_enabled()",
        getattr(cuda, f"{kind}_sdp_enabled"),
        getattr(cuda, f"enable_{kind}_sdp"),
    )


# torch's process-wide settings a module may change and every later cell would inherit
SETTINGS = (
    Setting("torch.get_num_threads()", torch.get_num_threads, torch.set_num_threads),
    Setting("torch.get_default_dtype()", torch.get_default_dtype, torch.set_default_dtype),
    Setting("torch.get_default_device()", torch.get_default_device, torch.set_default_device),
    Setting("torch.is_grad_enabled()", torch.is_grad_enabled, torch.set_grad_enabled),
    Setting(
        "torch.get_float32_matmul_precision()", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision
    ),
    Setting(
        "torch.are_deterministic_algorithms_enabled()",
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]),
    ),
    Setting("torch.is_anomaly_enabled()", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    _backend_flag(torch.backends.cudnn, "enabled"),
    _backend_flag(torch.backends.cudnn, "benchmark"),
    _backend_flag(torch.backends.cudnn, "deterministic"),
    _backend_flag(torch.backends.cudnn, "allow_tf32"),
    _backend_flag(torch.backends.mkldnn, "enabled"),
    Setting(
        "torch.backends.cuda.matmul.allow_tf32",
        lambda: torch.backends.cuda.matmul.allow_tf32,
        lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", v),
    ),
    _sdp("flash"),
    _sdp("mem_efficient"),
    _sdp("math"),
)


def snapshot() -> dict[str, object]:
    return {s.name: s.get() for s in SETTINGS}


def restore(saved: dict[str, object]) -> list[str]:
    """Put every setting back as `saved` has it; what had changed, as 'name: before -> now' lines."""
    changed = []
    for s in SETTINGS:
        now = s.get()
        if now != saved[s.name]:
            changed.append(f"{s.name}: {saved[s.name]} -> {now}")
            s.set(saved[s.name])
    return changed


def clear_instrumentation() -> list[str]:
    """What an interrupted measurement left running, stopped: a torch dispatch or function mode (the FLOP
    counter) or the profiler. A time limit can land inside our own instrumentation around user code, and
    what it leaves on would change every later cell."""
    from torch.utils._python_dispatch import _pop_mode

    left = []
    while torch._C._len_torch_dispatch_stack():
        left.append(f"dispatch mode {type(_pop_mode()).__name__}")
    while torch._C._len_torch_function_stack():
        left.append(f"function mode {type(torch._C._pop_torch_function_stack()).__name__}")
    if torch.autograd._profiler_enabled():
        torch.autograd._disable_profiler()
        left.append("the profiler")
    return left


class CellTimeLimit(BaseException):
    """A pass of a cell ran past its limit. A BaseException, so user code's `except Exception` cannot hide it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeLimit in the main thread once `seconds` have passed (None or 0: no limit)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        if _importing(frame):  # never inside an import: a module left half-initialised breaks every later cell
            signal.setitimer(signal.ITIMER_REAL, IMPORT_RETRY_S)
            return
        raise CellTimeLimit(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


IMPORT_RETRY_S = 0.05  # a time limit that fell inside an import tries again this much later


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code is inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def background() -> tuple[set[int], set[int]]:
    """This process's child processes (pids) and live threads (idents) now."""
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    return children, {t.ident for t in threading.enumerate() if t.ident is not None}


def leftovers(before: tuple[set[int], set[int]]) -> list[str]:
    """What a cell started and left running since `before`, named: its child processes, ended here (terminated,
    then killed), and its threads, which Python cannot end (they are named, so the cell fails)."""
    children, threads = before
    left = []
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in children and not _torchs_own(p)]
    for process in new:
        try:
            left.append(f"process {process.pid} ({' '.join(process.cmdline())[:80] or process.name()})")
            process.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(new, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    left += [f"thread {t.name!r}" for t in threading.enumerate() if t.ident not in threads and t.is_alive()]
    return left


def _torchs_own(process: psutil.Process) -> bool:
    """A process torch starts for itself and keeps for the run (inductor's pool of compile workers)."""
    try:
        return "_inductor/compile_worker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def pass_limit_s(predicted_s: float | None, option_s: float | None) -> float | None:
    """The time limit of one pass of a user cell: the option's where given (0: none), else from the prediction."""
    if option_s is not None:
        return option_s or None
    return max(LIMIT_FLOOR_S, LIMIT_FACTOR * predicted_s) if predicted_s else LIMIT_FLOOR_S


def stop_is_users(err: BaseException) -> bool:
    """True where `err` is user code's own attempt to stop the process, not a user stopping the run: a
    SystemExit, or a KeyboardInterrupt that no SIGINT or SIGTERM caused."""
    if isinstance(err, SystemExit):
        return True
    return isinstance(err, KeyboardInterrupt) and signals.received() is None
