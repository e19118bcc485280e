"""attnbench as a careless or unlucky user meets it: bad output paths, two runs into one folder, SIGTERM,
reruns, and user modules that change torch's settings, go wrong after their check, sleep, hang or try to stop
the process. Nothing that was there before is lost (checksums), no later cell's numbers are touched, and
every refusal is one line with exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.machine import machine_slug
from model.kernel_choice import CACHE_ENV

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile" / "hostile_attention.py"
SLUG = machine_slug("cpu")
# the smallest real grid: attention cells of one length
TINY = ("--profile", "quick", "--set", "seq_len=64", "--set", "dtype=float32", "-k", "attention", "-q")


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def bench(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run("-m", "bench", *args, cwd=cwd, env=env)


def one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit 2, no traceback, and one error line holding every expected phrase."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, result.stderr
    for phrase in expected:
        assert phrase in errors[0], errors[0]


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` by its SHA-256: what 'nothing lost' is checked against."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".attnbench.lock"
    }


def write_run(folder: Path, shard: str | None = None, ids: slice = slice(None)) -> Path:
    """A real run's JSON (the committed quick-CPU fixture) in `folder`, as one shard where `shard` is given."""
    data = json.loads((FIXTURES / "quick-cpu" / "benchmarks.json").read_text())
    data["machine_info"]["attnbench"]["shard"] = shard
    data["benchmarks"] = data["benchmarks"][ids]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmarks.json").write_text(json.dumps(data))
    return folder


@contextmanager
def read_only(folder: Path):
    """`folder` made unwritable for this process: by mode where permissions bind (not root), else a read-only
    bind mount over it (root ignores modes)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot make a read-only folder here (root, and no bind mount)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


# --- data lost -------------------------------------------------------------------------------------------


def test_merge_never_writes_over_the_results_folder_a_run_or_anything_it_did_not_write(tmp_path):
    results = tmp_path / "R"
    shards = [write_run(results / f"cpu-shard{k}of2", f"{k}/2", slice(k - 1, None, 2)) for k in (1, 2)]
    write_run(results / "full-run")
    (results / "notes.txt").write_text("someone's notes\n")
    before = digests(results)
    for out in (results, results / "full-run", shards[0], results / "notes.txt"):
        one_line_error(run("-m", "analysis", "merge", str(out), *map(str, shards), cwd=tmp_path), "OUT")
        assert digests(results) == before
    # a new folder, then the same merge again over its own earlier output: both fine, the shards untouched, and
    # what the user put into the earlier merge's folder kept
    for again in range(2):
        assert run("-m", "analysis", "merge", str(results / "merged"), *map(str, shards), cwd=tmp_path).returncode == 0
        assert {k: v for k, v in digests(results).items() if not k.startswith("merged/")} == before
        if not again:
            (results / "merged" / "NOTES.txt").write_text("what I saw\n")
            (results / "merged" / "mydata").mkdir()
            (results / "merged" / "mydata" / "keep.csv").write_text("a,b\n1,2\n")
    assert (results / "merged" / "NOTES.txt").read_text() == "what I saw\n"
    assert (results / "merged" / "mydata" / "keep.csv").read_text() == "a,b\n1,2\n"
    merged = json.loads((results / "merged" / "benchmarks.json").read_text())
    assert merged["machine_info"]["attnbench"]["merged_shards"] == ["1/2", "2/2"]
    assert not [p for p in results.iterdir() if p.name.startswith(".merge")]  # no staging left behind


def test_a_report_never_rewrites_a_readme_attnbench_did_not_write(tmp_path):
    project = tmp_path / "proj"
    write_run(project / "run1")
    (project / "README.md").write_text("# my project\n" + "line\n" * 300)
    before = digests(project)
    report = run("-m", "analysis", "report", str(project / "run1"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert digests(project)["README.md"] == before["README.md"]
    assert "no results index written" in report.stderr
    one_line_error(run("-m", "analysis", "index", str(project), cwd=tmp_path), "not a results folder attnbench made")
    # bench's own results folder gets its index; a README there that attnbench did not write is still kept
    result = bench(*TINY, "--results", str(tmp_path / "R"), "--no-traces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Written by `python -m analysis index`" in (tmp_path / "R" / "README.md").read_text()
    (tmp_path / "R" / "README.md").write_text("mine\n")
    assert run("-m", "analysis", "report", str(tmp_path / "R" / SLUG), cwd=tmp_path).returncode == 0
    assert (tmp_path / "R" / "README.md").read_text() == "mine\n"


def test_a_bench_run_into_the_project_root_leaves_its_readme_alone(tmp_path):
    (tmp_path / "README.md").write_text("# the project's README\n")
    result = bench(*TINY, "--results", ".", "--no-traces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "README.md").read_text() == "# the project's README\n"
    assert (tmp_path / SLUG / "REPORT.md").is_file()


def test_two_runs_into_one_folder_one_refuses_and_neither_loses_a_result(tmp_path):
    first = subprocess.Popen(
        [sys.executable, "-m", "bench", *TINY, "--set", "seq_len=128", "--results", "R"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / "R" / SLUG / ".attnbench.lock"
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.2)
    second = bench(*TINY, "--set", "seq_len=256", "--results", "R", cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    one_line_error(second, "in use by another attnbench process")
    assert first.returncode == 0, err
    data = json.loads((tmp_path / "R" / SLUG / "benchmarks.json").read_text())
    lengths = {b["extra_info"]["seq_len"] for b in data["benchmarks"] if b["extra_info"]["group"] == "attention"}
    assert lengths == {128}  # the first run's cells, whole, and none of the refused one's
    assert (tmp_path / "R" / SLUG / "REPORT.md").is_file()


def test_bad_output_paths_and_options_are_refused_before_anything_is_measured(tmp_path):
    (tmp_path / "afile").write_text("x\n")
    one_line_error(bench(*TINY, "--results", "afile", cwd=tmp_path), "is a file")
    one_line_error(bench(*TINY, "--results", "afile/sub", cwd=tmp_path), "is a file")
    one_line_error(bench(*TINY, "--set", "heads=abc", "--results", "R", cwd=tmp_path), "'abc' is not a whole number")
    one_line_error(bench(*TINY, "--trace-match", "([", "--results", "R", cwd=tmp_path), "--trace-match '(['")
    one_line_error(bench(*TINY, "--device", "cuda", "--results", "R", cwd=tmp_path), "--device cuda", "no CUDA")
    for name in ("../../x", "a\nb", "n" * 300, ".hidden"):  # --name is one plain folder name, as --run-id is
        one_line_error(bench(*TINY, "--results", "R", "--name", name, cwd=tmp_path), "--name", "is not accepted")
    one_line_error(bench(*TINY, "--results", "R", "--set", "layer.window=16", cwd=tmp_path), "fixes kv_heads, window")
    assert not (tmp_path / "R").exists() and not (tmp_path.parent / "x").exists()  # nothing left, nothing outside
    one_line_error(
        run("-m", "bench.autotune", "--table", "nofolder/t.json", "--passes", "1", cwd=tmp_path),
        "--table nofolder/t.json",
    )
    one_line_error(run("-m", "bench.autotune", "--passes", "0", cwd=tmp_path), "--passes 0 is not accepted")
    one_line_error(run("-m", "bench.autotune", "--budget-s", "-1", cwd=tmp_path), "--budget-s -1 is not accepted")
    one_line_error(run("-m", "bench.distributed", "--rounds", "0", cwd=tmp_path), "--rounds 0 is not accepted")
    paired = ("-m", "bench.noise_floor", "--paired", "--pairs", "1", "--results", "R")
    one_line_error(run(*paired, cwd=tmp_path), "--pairs 1 is not accepted")  # before any commit or file
    one_line_error(run("-m", "bench.distributed", "--timeout-s", "0", cwd=tmp_path), "--timeout-s 0 is not accepted")
    ab = ("-m", "bench", "ab", "--base", "HEAD", "--new", "HEAD", "--pairs", "2")
    one_line_error(run(*ab, "--results", str(tmp_path / "afile"), cwd=ROOT), "is a file")
    one_line_error(run(*ab, "--fail-on", "time:abc", "--results", str(tmp_path / "R"), cwd=ROOT), "'time:abc'")
    one_line_error(run(*ab, "--pass-timeout-s", "0", "--results", str(tmp_path / "R"), cwd=ROOT), "--pass-timeout-s")
    assert not (tmp_path / "R").exists()  # the A/B's refusals came before its first pass


def test_a_read_only_run_folder_is_refused_before_the_grid_runs(tmp_path):
    folder = tmp_path / "R" / SLUG
    folder.mkdir(parents=True)
    with read_only(folder):
        result = bench(*TINY, "--results", "R", cwd=tmp_path)
        under = bench(*TINY, "--results", f"R/{SLUG}/deeper", cwd=tmp_path)  # a new folder under a read-only one
    one_line_error(result, "cannot write there")
    one_line_error(under, "cannot write there")
    assert "passed" not in result.stdout + under.stdout


def test_reports_and_compares_into_a_read_only_folder_are_one_line(tmp_path):
    run_dir = write_run(tmp_path / "R" / "run")
    with read_only(run_dir):
        one_line_error(run("-m", "analysis", "report", str(run_dir), cwd=tmp_path), "cannot write there")
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        one_line_error(
            run("-m", "analysis", "compare", str(run_dir), str(run_dir), "--out", str(out), cwd=tmp_path), "--out"
        )
    one_line_error(run("-m", "analysis", "table", str(run_dir), "--out", "missing/t.csv", cwd=tmp_path), "--out")


def test_a_rerun_keeps_the_earlier_run_unless_told_to_replace_it(tmp_path):
    assert bench(*TINY, "--results", "R", "--no-traces", cwd=tmp_path).returncode == 0
    before = digests(tmp_path / "R" / SLUG)
    # named, the folder is refused; unnamed, the rerun writes a numbered folder of its own inside it
    one_line_error(bench(*TINY, "--results", "R", "--name", SLUG, cwd=tmp_path), "already holds a run", "--replace")
    assert digests(tmp_path / "R" / SLUG) == before
    assert bench(*TINY, "--results", "R", "--no-traces", cwd=tmp_path).returncode == 0
    assert [p.name[:5] for p in (tmp_path / "R" / SLUG / "runs").iterdir()] == ["0002-"]
    assert {k: v for k, v in digests(tmp_path / "R" / SLUG).items() if not k.startswith("runs/")} == before
    # every cell skipped: nothing measured, so the earlier run stays, and the reasons are kept apart
    result = bench(*TINY, "--mem-budget-gb", "0.000001", "--results", "R", "--replace", cwd=tmp_path)
    assert result.returncode == 1 and "no cell was measured" in result.stderr and "Traceback" not in result.stderr
    assert digests(tmp_path / "R" / SLUG)["benchmarks.json"] == before["benchmarks.json"]
    # with --replace a measured run replaces it
    result = bench(*TINY, "--set", "seq_len=128", "--results", "R", "--replace", "--no-traces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "R" / SLUG / "benchmarks.json").read_text())
    assert {b["extra_info"]["seq_len"] for b in data["benchmarks"] if b["extra_info"]["group"] == "attention"} == {128}


def test_a_run_where_nothing_runs_still_writes_every_reason(tmp_path):
    result = bench(*TINY, "--mem-budget-gb", "0.000001", "--results", "R", cwd=tmp_path)
    assert result.returncode == 1 and "no cell was measured" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads((tmp_path / "R" / SLUG / "benchmarks.json").read_text())
    assert data["benchmarks"] == [] and data["machine_info"]["attnbench"]["grid_profile"] == "quick"
    assert data["attnbench_not_run"] and all("would not fit" in o["reason"] for o in data["attnbench_not_run"])


def sigterm_when(process: subprocess.Popen, ready, after_s: float = 0.0) -> tuple[str, str]:
    """SIGTERM `process` `after_s` seconds after ready() holds (polled), then its output."""
    deadline = time.time() + 240
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(after_s)
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=120)


def test_sigterm_during_bench_leaves_this_runs_partial_json_and_no_stale_file(tmp_path):
    folder = tmp_path / "R" / SLUG
    folder.mkdir(parents=True)
    (folder / ".partial-old-dead-run").mkdir()  # what a SIGKILLed run leaves: never taken for this run's
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "--profile",
            "quick",
            "--set",
            "dtype=float32",
            "--results",
            "R",
            "--run-id",
            "term1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # stopped once it has timed some cells: the first trace is of a layer cell, after every attention cell; the
    # train_step cells are still to come, however fast or loaded the machine
    _, err = sigterm_when(process, lambda: (folder / ".partial-term1" / "traces").exists())
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped (SIGTERM)" in err and "Traceback" not in err
    partial = json.loads((folder / "interrupted-term1" / "benchmarks.json").read_text())
    assert partial["benchmarks"] and partial["machine_info"]["attnbench"]["grid_profile"] == "quick"
    assert not (folder / "benchmarks.json").exists()  # an interrupted run is not the folder's run
    assert not list(folder.glob(".partial-*")) and not list(folder.glob("benchmarks.partial*"))


def test_sigterm_during_ab_removes_its_worktrees_and_keeps_the_pairs_it_finished(tmp_path):
    def worktrees() -> str:
        return subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout

    def temporary() -> set[Path]:
        return set(Path(os.environ.get("TMPDIR", "/tmp")).glob("attnbench-ab-*"))

    before_worktrees, before_tmp = worktrees(), temporary()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "ab",
            "--base",
            "HEAD",
            "--new",
            "HEAD",
            "--pairs",
            "4",
            "--results",
            str(tmp_path),
            "--name",
            "ab",
            "--profile",
            "quick",
            "--set",
            "seq_len=64",
            "-k",
            "attention and sdpa",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []

    def third_pass_started() -> bool:  # the first pair is done once the third pass starts
        seen.append(process.stdout.readline())
        return seen[-1].startswith("[3/")

    out, err = sigterm_when(process, third_pass_started)
    assert process.returncode == 128 + signal.SIGTERM, "".join(seen) + out + err
    assert "stopped (SIGTERM)" in err and "Traceback" not in err
    assert worktrees() == before_worktrees and temporary() == before_tmp
    kept = list((tmp_path / "ab").glob("interrupted-*/base/benchmarks.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["machine_info"]["attnbench"]["ab"]["pairs"] >= 1
    assert not (tmp_path / "ab" / "base").exists()  # not mistaken for a finished A/B


# --- numbers wrong ---------------------------------------------------------------------------------------


def user_grid(tmp_path: Path, impls: str, *args: str, env: dict | None = None) -> tuple[dict, dict]:
    """The attention group at one length with these implementations; (results JSON, reasons by (impl, pass))."""
    shutil.copy(HOSTILE, tmp_path / "hostile_attention.py")
    out = tmp_path / "out.json"
    result = run(
        "-m",
        "pytest",
        str(ROOT / "bench"),
        "-p",
        "no:cacheprovider",
        "-q",
        "--profile",
        "quick",
        "--set",
        "seq_len=64",
        "--set",
        f"attention.impl={impls}",
        "-k",
        "attention",
        f"--benchmark-json={out}",
        *args,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # some cells failed, the grid went on
    assert "Traceback" not in result.stdout + result.stderr
    data = json.loads(out.read_text())
    reasons = {(o["params"]["impl"], o["params"]["mode"]): o["reason"] for o in data["attnbench_not_run"]}
    assert all("\n" not in reason for reason in reasons.values())
    data["output_tail"] = result.stdout[-4000:] + result.stderr[-2000:]  # what a failed assertion below shows
    return data, reasons


def test_a_user_modules_changes_to_torchs_settings_fail_its_cell_and_reach_no_later_cell(tmp_path):
    witness = tmp_path / "witness.jsonl"
    impls = ",".join(
        [
            "hostile_attention:one_thread",
            "hostile_attention:float64_default",
            "hostile_attention:no_grad_left_on",
            "naive",
            "hostile_attention:witness",
        ]
    )
    data, reasons = user_grid(tmp_path, impls, env={"HOSTILE_WITNESS": str(witness)})
    assert "torch.get_num_threads()" in reasons[("hostile_attention:one_thread", "forward")]
    assert (
        "torch.get_default_dtype(): torch.float32 -> torch.float64"
        in reasons[("hostile_attention:float64_default", "train")]
    )
    assert "torch.is_grad_enabled(): True -> False" in reasons[("hostile_attention:no_grad_left_on", "train")]
    timed = {(b["extra_info"]["impl"], b["extra_info"]["mode"]) for b in data["benchmarks"]}
    # the built-in and the correct module after them ran, and ran under the run's own settings
    assert timed == {(i, p) for i in ("naive", "hostile_attention:witness") for p in ("forward", "train")}
    threads = data["machine_info"]["attnbench"]["torch_threads"]
    seen = [json.loads(line) for line in witness.read_text().splitlines()]
    assert seen and all(s == {"threads": threads, "dtype": "torch.float32", "grad": True} for s in seen)


def test_a_module_that_goes_wrong_after_its_check_is_never_reported_as_valid(tmp_path):
    data, reasons = user_grid(tmp_path, "sdpa,hostile_attention:goes_wrong")
    assert {b["extra_info"]["impl"] for b in data["benchmarks"]} == {"sdpa"}, (reasons, data["output_tail"])
    for p in ("forward", "train"):
        assert "output changed after its check" in reasons[("hostile_attention:goes_wrong", p)]


def test_user_modules_that_would_fake_a_number_fail_their_cells_and_sdpa_is_measured(tmp_path):
    impls = ["caches_first", "memoises", "wider_dtype", "nan_every_4th", "writes_input", "leaks"]
    data, reasons = user_grid(
        tmp_path, ",".join(["sdpa", *(f"hostile_attention:{i}" for i in impls)]), "--set", "dtype=float32,bfloat16"
    )
    timed = {b["extra_info"]["impl"] for b in data["benchmarks"]}
    assert timed == {"sdpa"}, (reasons, data["output_tail"])  # none of them reported, let alone as fastest

    def why(impl: str, mode: str = "forward") -> str:
        return reasons[(f"hostile_attention:{impl}", mode)]

    assert "no attention ran" in why("caches_first") or "output changed after its check" in why("caches_first")
    assert "on an input it had not seen" in why("memoises")  # right on every input, but stored
    assert "returned float64 for a float32 input" in why("wider_dtype") or "returned float32 for a bfloat16" in why(
        "wider_dtype"
    )
    assert "NaN or inf" in why("nan_every_4th")
    assert "wrote into" in why("writes_input") or "leaf Variable" in why("writes_input", "train")
    assert "is a leak" in why("leaks")


def test_child_processes_and_threads_a_user_module_leaves_are_named_and_processes_ended(tmp_path):
    import psutil

    before = {p.pid for p in psutil.process_iter()}
    data, reasons = user_grid(tmp_path, "hostile_attention:spawns_child,hostile_attention:spawns_thread,sdpa")
    assert "left process" in reasons[("hostile_attention:spawns_child", "forward")]
    assert "left thread 'hostile-busy'" in reasons[("hostile_attention:spawns_thread", "forward")]
    assert {b["extra_info"]["impl"] for b in data["benchmarks"]} == {"sdpa"}, (reasons, data["output_tail"])
    busy = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.pid not in before and "while True: pass" in " ".join(p.info["cmdline"] or [])
    ]
    assert busy == []  # no busy child outlives the run


def test_slow_and_hanging_modules_fail_their_cells_at_the_time_limit_and_the_grid_goes_on(tmp_path):
    started = time.perf_counter()
    data, reasons = user_grid(
        tmp_path, "hostile_attention:sleeper,hostile_attention:hangs,sdpa", "--cell-time-limit-s", "4"
    )
    assert time.perf_counter() - started < 120  # four limited cells, not an endless run
    for impl in ("hostile_attention:sleeper", "hostile_attention:hangs"):
        assert "ran past its time limit of 4 s" in reasons[(impl, "forward")]
    assert {b["extra_info"]["impl"] for b in data["benchmarks"]} == {"sdpa"}, (reasons, data["output_tail"])


def test_user_code_that_tries_to_stop_the_process_fails_only_its_cell(tmp_path):
    data, reasons = user_grid(tmp_path, "hostile_attention:exits,hostile_attention:interrupts,sdpa")
    assert "raised SystemExit(3)" in reasons[("hostile_attention:exits", "forward")]
    assert "raised KeyboardInterrupt" in reasons[("hostile_attention:interrupts", "train")]
    assert {b["extra_info"]["impl"] for b in data["benchmarks"]} == {"sdpa"}, (reasons, data["output_tail"])


# --- damaged input ---------------------------------------------------------------------------------------


def test_a_kernel_cache_of_the_wrong_shape_is_measured_again(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "kernel_choices.json").write_text("[1, 2]")
    out = tmp_path / "out.json"
    result = run(
        "-m",
        "pytest",
        str(ROOT / "bench"),
        "-p",
        "no:cacheprovider",
        "-q",
        "--profile",
        "quick",
        "--set",
        "seq_len=64",
        "--set",
        "attention.impl=auto,sdpa",
        "-k",
        "attention",
        f"--benchmark-json={out}",
        cwd=tmp_path,
        env={CACHE_ENV: str(cache)},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert {b["extra_info"]["impl"] for b in json.loads(out.read_text())["benchmarks"]} == {"auto", "sdpa"}


def test_one_corrupt_run_does_not_break_the_index_or_the_others_reports(tmp_path):
    results = tmp_path / "R"
    results.mkdir()
    (results / ".attnbench-results").write_text("")
    write_run(results / "good")
    (results / "bad").mkdir()
    (results / "bad" / "benchmarks.json").write_text("{not json")
    index = run("-m", "analysis", "index", str(results), cwd=tmp_path)
    assert index.returncode == 0 and "bad/benchmarks.json" in index.stderr and "Traceback" not in index.stderr
    assert "**good**" in (results / "README.md").read_text() and "unreadable" in (results / "README.md").read_text()
    assert run("-m", "analysis", "report", str(results / "good"), cwd=tmp_path).returncode == 0
    one_line_error(run("-m", "analysis", "report", str(results / "bad"), cwd=tmp_path), "bad/benchmarks.json")


def test_a_noise_floor_that_is_not_json_is_one_line(tmp_path):
    run_dir = write_run(tmp_path / "run")
    (tmp_path / "floor.json").write_text("not json")
    one_line_error(
        run(
            "-m",
            "analysis",
            "compare",
            str(run_dir),
            str(run_dir),
            "--noise-floor",
            str(tmp_path / "floor.json"),
            cwd=tmp_path,
        ),
        "--noise-floor",
        "not valid JSON",
    )


def test_a_damaged_corpus_is_one_line_in_both_experiments(tmp_path):
    for package in ("experiments", "model", "infra", "analysis"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    corpus = tmp_path / "experiments" / "data" / "stdlib_docstrings.txt"
    env = {"PYTHONPATH": str(tmp_path)}
    corpus.write_text("damaged\n")
    one_line_error(run("-m", "experiments.train", "--task", "text", "--steps", "1", cwd=tmp_path, env=env), "SHA-256")
    one_line_error(run("-m", "experiments.extrapolation", "--out", "lm", cwd=tmp_path, env=env), "SHA-256")
    corpus.unlink()
    one_line_error(run("-m", "experiments.train", "--task", "text", "--steps", "1", cwd=tmp_path, env=env), "missing")
    one_line_error(run("-m", "experiments.extrapolation", "--out", "lm", cwd=tmp_path, env=env), "missing")


def test_a_stop_inside_a_deferred_block_is_raised_as_the_block_ends():
    """The profiler's parse runs in C++ frames without line numbers, where pytest cannot report a KeyboardInterrupt
    (it crashed with a TypeError and the run exited 1 instead of keeping its cells): a signal there waits for it."""
    from infra import signals

    previous = signal.getsignal(signal.SIGTERM)
    signals.install()
    try:
        done = []
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run: nothing was raised inside the block
                done.append("finished")
        assert done == ["finished"] and signals.received() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # outside a deferred block a stop is raised at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
