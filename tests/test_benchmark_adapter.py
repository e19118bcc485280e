"""pytest-benchmark's private API, which bench/benchmark_adapter.py relies on: this fails loudly, naming
what is missing, when a release changes it."""

import pytest

from bench.benchmark_adapter import missing_private_api, record_samples


def test_the_fixture_has_what_the_adapter_uses(benchmark):
    assert missing_private_api(benchmark) == [], "pytest-benchmark changed: update bench/benchmark_adapter.py"
    record_samples(benchmark, [3e-3, 1e-3, 2e-3], "cuda_events")
    assert benchmark.stats.stats.median == 2e-3 and benchmark.stats.stats.rounds == 3
    assert benchmark.stats.options["timer"] == "cuda_events"


def test_a_fixture_without_it_is_refused_in_one_line():
    with pytest.raises(RuntimeError, match="lacks _mode, _make_stats: attnbench's adapter"):
        record_samples(object(), [1.0], "cpu_clock")
