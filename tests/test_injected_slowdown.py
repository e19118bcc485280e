"""The known slowdowns the gate's validation injects (bench.injected_slowdown, bench.noise_floor's SLOWDOWNS):
off on every branch, and each does what the experiment says it does when turned on."""

import threading
import time
from pathlib import Path

from bench import injected_slowdown
from bench.noise_floor import SLOWDOWNS

ROOT = Path(__file__).resolve().parents[1]


def test_every_slowdown_is_off_here_and_its_switch_is_one_line_the_experiment_can_find():
    for name, path, off, on, _ in SLOWDOWNS:
        lines = (ROOT / path).read_text().splitlines()
        assert lines.count(off) == 1, f"{name}: {path} must hold the line {off!r} once"
        assert on not in lines and on != off
    assert injected_slowdown.STEP_STRETCH == 0 and injected_slowdown.BACKGROUND_DUTY == 0
    assert len({name for name, *_ in SLOWDOWNS}) == len(SLOWDOWNS)


def test_off_the_step_is_itself_and_no_thread_starts():
    def step():
        return 1

    assert injected_slowdown.stretched(step) is step
    assert injected_slowdown.start_background_work() is None
    assert injected_slowdown.THREAD_NAME not in {t.name for t in threading.enumerate()}


def test_a_stretched_step_takes_the_fraction_longer_and_returns_its_result(monkeypatch):
    monkeypatch.setattr(injected_slowdown, "STEP_STRETCH", 0.5)
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.02)
        return "out"

    call = injected_slowdown.stretched(step)
    start = time.perf_counter()
    assert call() == "out" and calls == [1]  # the step ran once; the rest was a busy wait
    assert time.perf_counter() - start >= 0.02 * 1.5  # by construction: it waits until then


def test_background_work_runs_in_a_thread_of_its_own_until_stopped(monkeypatch):
    monkeypatch.setattr(injected_slowdown, "BACKGROUND_DUTY", 0.5)
    stop = injected_slowdown.start_background_work()
    try:
        assert stop is not None
        assert injected_slowdown.THREAD_NAME in {t.name for t in threading.enumerate()}
    finally:
        stop.set()
    deadline = time.monotonic() + 5
    while injected_slowdown.THREAD_NAME in {t.name for t in threading.enumerate()} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert injected_slowdown.THREAD_NAME not in {t.name for t in threading.enumerate()}
