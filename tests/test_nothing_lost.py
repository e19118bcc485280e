"""Nothing measured is lost on a bad day: a run id used twice, a results file that cannot be written (a
file-size limit stands for a full disk), a stop while a run swaps its files in or writes its report."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import interrupted
from infra.machine import machine_slug

ROOT = Path(__file__).parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "quick-cpu" / "benchmarks.json"
SLUG = machine_slug("cpu")
TINY = ("--profile", "quick", "--set", "seq_len=64", "--set", "dtype=float32", "-k", "attention", "-q")


def limited_to(size: int):
    """A child's files may not grow past `size` bytes: a write past it fails with EFBIG (as on a full disk)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel ends the process at the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def python(*args: str, cwd: Path, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, preexec_fn=preexec
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    return [line for line in (result.stderr + result.stdout).splitlines() if "error:" in line]


def test_a_run_id_stopped_twice_keeps_both_runs(tmp_path, monkeypatch):
    monkeypatch.setattr("infra.signals._received", [])  # no stopping signal in this process (an earlier test's)
    for n in (1, 2):
        staging = tmp_path / f".partial-retried{n}"
        staging.mkdir()
        (staging / "benchmarks.json").write_text(json.dumps({"try": n}))
        assert interrupted(tmp_path, staging, "retried") == 2
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["interrupted-retried", "interrupted-retried-2"]
    assert [json.loads((tmp_path / k / "benchmarks.json").read_text())["try"] for k in kept] == [1, 2]


@pytest.mark.slow
def test_a_results_file_that_cannot_be_written_is_one_line_and_what_was_written_is_kept(tmp_path):
    result = python("-m", "bench", *TINY, "--results", "R", "--no-traces", cwd=tmp_path, preexec=limited_to(40_000))
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-2000:]
    assert "benchmarks.json" in errors[0] and "File too large" in errors[0]
    folder = tmp_path / "R" / SLUG
    assert not (folder / "benchmarks.json").exists()  # a truncated file is never taken for a run
    kept = list(folder.glob("unsaved-*"))
    assert len(kept) == 1 and (kept[0] / "benchmarks.json").is_file() and not list(folder.glob(".partial-*"))
    # a later run keeps it too: only its own staging is its to clear
    assert python("-m", "bench", *TINY, "--results", "R", "--no-traces", cwd=tmp_path).returncode == 0
    assert list(folder.glob("unsaved-*")) == kept


@pytest.mark.slow
def test_a_report_that_cannot_be_written_is_one_line_naming_the_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "benchmarks.json").write_text(FIXTURE.read_text())
    result = python("-m", "analysis", "report", str(run), cwd=tmp_path, preexec=limited_to(20_000))
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-2000:]
    assert str(run) in errors[0] and "File too large" in errors[0]
    figures = run / "figures"
    assert not list(figures.glob(".*.tmp")) and all(p.stat().st_size > 0 for p in figures.iterdir())


@pytest.mark.slow
def test_sigterm_while_the_report_is_written_exits_143_and_the_folder_holds_one_runs_files(tmp_path):
    folder = tmp_path / "R" / SLUG
    folder.mkdir(parents=True)
    (folder / "benchmarks.json").write_text(FIXTURE.read_text().replace('"quick"', '"earlier"'))
    (folder / "REPORT.md").write_text("# the earlier run's report\n")
    (folder / "figures").mkdir()
    (folder / "figures" / "old.png").write_bytes(b"earlier")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *TINY, "--results", "R", "--replace", "--no-traces"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    # the new JSON swapped in: the report (a child process that takes seconds to import pandas) is under way
    while '"earlier"' in (folder / "benchmarks.json").read_text() and time.time() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "stopped (SIGTERM) after its cells were saved" in err
    assert json.loads((folder / "benchmarks.json").read_text())["machine_info"]["attnbench"]["grid_profile"] == "quick"
    assert not (folder / "figures" / "old.png").exists()  # nothing of the earlier run's report is left beside it
    report = folder / "REPORT.md"
    assert not report.exists() or "the earlier run's report" not in report.read_text()
