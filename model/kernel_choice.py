"""The `auto` attention kernel: per (device, dtype, train or eval, dropout, length), the kernel that
ran fastest on this machine.

Where a choice comes from, in order:
- `table`: choices handed in from a table (bench hands in results/kernel_table.json, written by
  `python -m bench.autotune`), whose entry was measured on a machine with this one's fingerprint
  (instruction-set flags and cores, or GPU name, and torch major.minor); the model reads no table itself;
- `cache`: tuned on first use here, like triton's autotuner: every candidate timed on the call's own
  shapes, the winner kept in the user's cache directory under this machine's fingerprint;
- `fallback`: `sdpa` (SDPA's dispatcher decides), where nothing was measured and tuning cannot run now
  (inside torch.compile, a CUDA-graph capture, a profiler or a dispatch mode such as the FLOP counter).

Kernels: `naive` (explicit softmax), `blocked` (the same, a block of queries at a time), `sdpa` and the
SDPA backends forced one at a time: `flash`, `efficient`, `cudnn`, `math`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

from infra.files import atomic_write_text
from model.kernels import KERNELS

FALLBACK = "sdpa"
CACHE_ENV = "ATTNBENCH_CACHE_DIR"  # overrides the platform's cache directory (tests, read-only homes)
TUNE_ENV = "ATTNBENCH_AUTOTUNE"  # "0": never tune on first use, fall back instead


@dataclass(frozen=True)
class Choice:
    device: str  # "cpu" or "cuda"
    dtype: str  # as torch prints it: float32, bfloat16, float16
    train: bool  # forward+backward (True) or inference forward (False)
    dropout: bool  # attention dropout > 0
    seq_len: int
    kernel: str


def read_table(path: Path) -> dict:
    """{"machines": {slug: {"facts": {...}, "choices": [...]}}}; an empty table when there is no file."""
    if not path.is_file():
        return {"machines": {}}
    data = json.loads(path.read_text())
    for slug, entry in data.get("machines", {}).items():
        for choice in entry.get("choices", []):
            if choice.get("kernel") not in KERNELS:
                raise ValueError(f"{path}: machine {slug!r} has kernel {choice.get('kernel')!r}; one of {KERNELS}")
    return data


def _choice(row: dict) -> Choice:
    return Choice(**{k: row[k] for k in ("device", "dtype", "train", "dropout", "seq_len", "kernel")})


def torch_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def tuning_facts(cpu_flags: list[str], cpu_count: int | None, gpu_name: str | None, torch_version: str) -> dict:
    """What a measured choice depends on: the facts an entry must share with this machine to apply here."""
    return {
        "cpu_flags": sorted(cpu_flags),
        "cpu_count": cpu_count,
        "gpu_name": gpu_name,
        "torch_minor": torch_minor(torch_version),
    }


def entry_applies(entry_facts: dict, here: dict, device: str) -> bool:
    """A CPU entry needs the same instruction-set flags and cores, a CUDA entry the same GPU; both the same
    torch major.minor. An entry that lacks a fact cannot be shown to match, so it does not apply."""
    version = entry_facts.get("torch_version")
    if version is None or torch_minor(version) != here["torch_minor"]:
        return False
    if device == "cuda":
        return entry_facts.get("gpu_name") is not None and entry_facts.get("gpu_name") == here["gpu_name"]
    flags = entry_facts.get("cpu_flags")
    same_cores = entry_facts.get("cpu_count") == here["cpu_count"]
    return flags is not None and sorted(flags) == here["cpu_flags"] and same_cores


def matching_choices(table: dict, here: dict) -> tuple[Choice, ...]:
    """Every choice of the table measured on a machine like this one."""
    out = []
    for entry in table.get("machines", {}).values():
        for row in entry.get("choices", []):
            if entry_applies(entry.get("facts", {}), here, row["device"]):
                out.append(_choice(row))
    return tuple(out)


def choose(choices: tuple[Choice, ...], device: str, dtype: str, seq_len: int, dropout: bool, train: bool) -> str:
    """The kernel measured fastest for the nearest measured length (in log space) under the same
    device, dtype, pass and dropout; FALLBACK where nothing was measured for them."""
    return _nearest(choices, device, dtype, seq_len, dropout, train) or FALLBACK


def _nearest(choices: tuple[Choice, ...], device: str, dtype: str, seq_len: int, dropout: bool, train: bool):
    candidates = [c for c in choices if (c.device, c.dtype, c.train, c.dropout) == (device, dtype, train, dropout)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(math.log(c.seq_len / seq_len)), c.seq_len)).kernel


def length_bucket(n: int) -> int:
    """Tuned lengths are kept per power of two: a model fed many lengths tunes a handful of times."""
    return 2 ** round(math.log2(max(n, 1)))


def cache_file() -> Path:
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("attnbench")
    return Path(root) / "kernel_choices.json"


def tuning_blocked() -> str | None:
    """Why tuning cannot run now, or None: timing inside these would be wrong or would corrupt them."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    if os.environ.get(TUNE_ENV, "1") == "0":
        return f"{TUNE_ENV}=0"
    if torch.compiler.is_compiling():
        return "inside torch.compile"
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return "inside a CUDA-graph capture"
    if torch.autograd.profiler._is_profiler_enabled:
        return "inside the profiler"
    if _get_current_dispatch_mode() is not None:
        return "inside a dispatch mode"
    return None


class KernelChooser:
    """The auto kernel's choices for one machine: the committed table's matching entries, then this
    machine's cache, then tuning on first use (`tune` times candidate kernels and returns their seconds)."""

    def __init__(self, here: dict, table: tuple[Choice, ...] = (), cache_path: Path | None = None) -> None:
        self.here, self.table, self.cache_path = here, table, cache_path
        key = json.dumps(here, sort_keys=True)
        self.cache_key = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cached: dict[str, dict] = self._read_cache()

    def _read_cache(self) -> dict[str, dict]:
        if self.cache_path is None or not self.cache_path.is_file():
            return {}
        try:
            entry = json.loads(self.cache_path.read_text())["machines"][self.cache_key]
            return {row["key"]: row for row in entry["choices"] if row.get("kernel") in KERNELS}
        except (OSError, ValueError, LookupError, TypeError, AttributeError):
            return {}  # no entry for this machine, or a damaged cache (any shape): re-measured, never trusted

    @staticmethod
    def _key(device: str, dtype: str, n: int, dropout: bool, train: bool) -> str:
        return "-".join(
            (device, dtype, "train" if train else "eval", "dropout" if dropout else "nodropout", str(length_bucket(n)))
        )

    def lookup(self, device: str, dtype: str, n: int, dropout: bool, train: bool) -> tuple[str, str]:
        """(kernel, where it came from), without tuning."""
        kernel = _nearest(self.table, device, dtype, n, dropout, train)
        if kernel:
            return kernel, "table"
        row = self.cached.get(self._key(device, dtype, n, dropout, train))
        return (row["kernel"], "cache") if row else (FALLBACK, "fallback")

    def choose(
        self,
        device: str,
        dtype: str,
        n: int,
        dropout: bool,
        train: bool,
        tune: Callable[[], dict[str, float]] | None = None,
    ) -> str:
        kernel, source = self.lookup(device, dtype, n, dropout, train)
        if source != "fallback" or tune is None or self.cache_path is None or tuning_blocked():
            return kernel
        seconds = tune()
        if not seconds:
            return kernel
        best = min(seconds, key=seconds.get)
        row = {
            "key": self._key(device, dtype, n, dropout, train),
            **asdict(Choice(device, dtype, train, dropout, n, best)),
            "seconds": {k: round(v, 9) for k, v in seconds.items()},
        }
        self.cached[row["key"]] = row
        self._write_cache()
        return best

    def _write_cache(self) -> None:
        path = self.cache_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.loads(path.read_text()) if path.is_file() else {}
            if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
                data = {"machines": {}}  # a damaged cache is rewritten whole
            data["machines"][self.cache_key] = {"facts": self.here, "choices": list(self.cached.values())}
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        except (OSError, ValueError):
            pass  # no cache (read-only home, say): the choice holds for this process only


def this_machine() -> dict:
    """The facts a table entry or cached choice must match to apply here."""
    from infra.machine import kernel_flags, this_cpu

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return tuning_facts(kernel_flags(this_cpu().flags), os.cpu_count(), gpu, torch.__version__)


@cache
def default_chooser() -> KernelChooser:
    """This machine's cache, tuned on first use: what an attention gets when no chooser is handed to it."""
    return KernelChooser(this_machine(), (), cache_file())


@cache
def table_chooser(path: Path) -> KernelChooser:
    """This machine's cache behind the table's entries that match its fingerprint (one per table file)."""
    here = this_machine()
    return KernelChooser(here, matching_choices(read_table(path), here), cache_file())
