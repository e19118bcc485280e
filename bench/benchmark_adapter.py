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
        raise RuntimeError(
            f"pytest-benchmark {_version()} lacks {', '.join(missing)}: attnbench's adapter "
            "(bench/benchmark_adapter.py) needs updating for it"
        )
    benchmark._mode = "attnbench.record_samples"  # what pedantic sets: the fixture counts as used
    stats = benchmark._make_stats(1)
    stats.options["timer"] = timer
    for sample in samples_s:
        stats.update(sample)


def mark_untimed(benchmark) -> None:
    """A test that times nothing on purpose (a cell's untimed pass of facts): the fixture counts as used, so
    pytest-benchmark neither warns nor writes an entry for it."""
    missing = [name for name in PRIVATE_API[:1] if not hasattr(benchmark, name)]
    if missing:
        raise RuntimeError(
            f"pytest-benchmark {_version()} lacks {', '.join(missing)}: update bench/benchmark_adapter.py"
        )
    benchmark._mode = "attnbench.untimed"


def _version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")


def empty_json(config, path, not_run: list[dict]) -> None:
    """The results JSON pytest-benchmark would write, for a session that timed nothing (it writes none then),
    through its public hooks, so the machine facts and every cell's reason for not running are kept."""
    import json

    hook = config.hook
    machine_info = hook.pytest_benchmark_generate_machine_info(config=config)
    hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
    commit_info = hook.pytest_benchmark_generate_commit_info(config=config)
    hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output = hook.pytest_benchmark_generate_json(
        config=config, benchmarks=[], include_data=True, machine_info=machine_info, commit_info=commit_info
    )
    hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=output)
    path.write_text(json.dumps(output, indent=1, default=str))
