"""The one place attnbench reaches into pytest-benchmark's private API: its pedantic mode times only with
the host clock, so device times (CUDA events, graph replays) enter its stats through the same Metadata
pedantic fills. pyproject bounds pytest-benchmark to the major versions this is known to work with, and
tests/test_benchmark_adapter.py fails loudly, naming what is missing, when a release changes it."""

from __future__ import annotations

PRIVATE_API = ("_mode", "_make_stats")  # what pedantic() itself uses on the fixture


def missing_private_api(benchmark) -> list[str]:
    return [name for name in PRIVATE_API if not hasattr(benchmark, name)]


def record_samples(benchmark, samples_s: list[float], timer: str) -> None:
    """Put externally measured seconds into the fixture's stats, as pedantic would have."""
    missing = missing_private_api(benchmark)
    if missing:
        raise RuntimeError(f"pytest-benchmark {_version()} lacks {', '.join(missing)}: attnbench's adapter "
                           "(bench/benchmark_adapter.py) needs updating for it")  # fmt: skip
    benchmark._mode = "attnbench.record_samples"  # what pedantic sets: the fixture counts as used
    stats = benchmark._make_stats(1)
    stats.options["timer"] = timer
    for sample in samples_s:
        stats.update(sample)


def _version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")
