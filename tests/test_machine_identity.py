"""A machine is known by its fingerprint: parsed from recorded /proc/cpuinfo of the three CPU kinds the
project has run on, so every assertion holds whatever CPU runs the tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.compare import machine_warnings, noise_floor_warnings
from bench.kernel_table import TABLE_FILE
from bench.run_folder import other_machine
from infra.machine import (
    fingerprint,
    identity_differences,
    kernel_flags,
    machine_facts,
    missing_identity,
    native_dtypes,
    parse_cpuinfo,
    slug_for,
)
from model.kernel_choice import entry_applies, matching_choices, read_table, tuning_facts

SAMPLES = Path(__file__).parent / "fixtures" / "cpuinfo"
KINDS = ("amd-epyc-avx2-2c", "amd-epyc-avx512bf16-2c", "intel-xeon-amx-2c")


def facts_of(kind: str, torch_version: str = "2.13.0+cpu", cores: int = 2) -> dict:
    """The machine facts a run on that CPU records (the part the fingerprint and slug read)."""
    cpu = parse_cpuinfo((SAMPLES / f"{kind}.txt").read_text())
    return {
        "cpu_vendor": cpu.vendor,
        "cpu_model": cpu.model_name,
        "cpu_family": cpu.family,
        "cpu_model_number": cpu.model,
        "cpu_stepping": cpu.stepping,
        "cpu_flags": kernel_flags(cpu.flags),
        "cpu_native_dtypes": native_dtypes(cpu.flags),
        "cpu_count": cores,
        "gpu_name": None,
        "torch_version": torch_version,
    }


def test_the_three_cpus_parse_to_their_identity():
    avx2, avx512, intel = (facts_of(k) for k in KINDS)
    assert (avx2["cpu_vendor"], avx2["cpu_family"], avx2["cpu_model_number"]) == ("AuthenticAMD", 25, 1)
    assert (avx512["cpu_vendor"], avx512["cpu_family"], avx512["cpu_model_number"]) == ("AuthenticAMD", 25, 17)
    assert (intel["cpu_vendor"], intel["cpu_family"], intel["cpu_model_number"]) == ("GenuineIntel", 6, 143)
    assert avx2["cpu_model"] == avx512["cpu_model"] == "AMD EPYC"  # the name alone cannot tell them apart
    assert avx2["cpu_native_dtypes"] == {"bfloat16": False, "float16": False}
    assert avx512["cpu_native_dtypes"] == {"bfloat16": True, "float16": False}
    assert intel["cpu_native_dtypes"] == {"bfloat16": True, "float16": True}


def test_slugs_are_readable_and_differ_where_kernels_differ():
    slugs = [slug_for(facts_of(k), "cpu") for k in KINDS]
    assert slugs == ["cpu-amd-epyc-avx2-2c", "cpu-amd-epyc-avx512bf16-2c", "cpu-intel-xeon-platinum-8481c-amx-fp16-2c"]
    assert slug_for({**facts_of(KINDS[0]), "cpu_count": 8}, "cpu") == "cpu-amd-epyc-avx2-8c"
    assert slug_for({"gpu_name": "NVIDIA H100 80GB HBM3"}, "cuda") == "cuda-h100-80gb-hbm3"


def test_identity_differences_name_the_facts_and_skip_what_an_old_run_lacks():
    avx2, avx512 = facts_of(KINDS[0]), facts_of(KINDS[1])
    differences = identity_differences(avx512, avx2)
    assert any(d.startswith("cpu_model_number: 17 vs 1") for d in differences)
    assert any(d.startswith("cpu_flags:") for d in differences)
    assert identity_differences(avx2, dict(avx2, torch_version="2.14.0", torch_threads=1)) == []  # not identity
    legacy = {k: avx512[k] for k in ("cpu_model", "cpu_flags", "cpu_count", "gpu_name")}
    assert identity_differences(legacy, avx512) == []
    flags = f"cpu_flags: {sorted(avx512['cpu_flags'])} vs {sorted(avx2['cpu_flags'])}"
    assert identity_differences(legacy, avx2) == [flags]
    assert missing_identity(legacy) == ["cpu_vendor", "cpu_family", "cpu_model_number"]


def _here(kind: str, torch_version: str = "2.13.0+cpu", cores: int = 2) -> dict:
    facts = facts_of(kind, torch_version, cores)
    return tuning_facts(facts["cpu_flags"], facts["cpu_count"], None, torch_version)


def test_a_table_entry_applies_only_to_a_machine_with_its_fingerprint():
    entry = {"cpu_flags": facts_of(KINDS[1])["cpu_flags"], "cpu_count": 2, "torch_version": "2.13.0+cpu"}
    assert entry_applies(entry, _here(KINDS[1]), "cpu")
    assert not entry_applies(entry, _here(KINDS[0]), "cpu")  # AVX2 only: bf16 emulated there
    assert not entry_applies(entry, _here(KINDS[2]), "cpu")
    assert not entry_applies(entry, _here(KINDS[1], cores=4), "cpu")
    assert not entry_applies(entry, _here(KINDS[1], torch_version="2.14.1"), "cpu")
    assert entry_applies(entry, _here(KINDS[1], torch_version="2.13.1+cu130"), "cpu")  # same major.minor
    gpu = {"gpu_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.11.0+cu130"}
    here_gpu = tuning_facts([], 16, "NVIDIA H100 80GB HBM3", "2.11.0")
    assert entry_applies(gpu, here_gpu, "cuda")
    assert not entry_applies(gpu, {**here_gpu, "gpu_name": "NVIDIA H200"}, "cuda")


def test_the_committed_table_serves_its_own_cpu_and_no_other():
    table = read_table(TABLE_FILE)
    assert matching_choices(table, _here(KINDS[1]))  # measured on the AVX-512 BF16 EPYC
    assert matching_choices(table, _here(KINDS[0])) == ()
    assert matching_choices(table, _here(KINDS[2])) == ()


def _run_folder(path: Path, facts: dict) -> Path:
    path.mkdir(parents=True)
    (path / "benchmarks.json").write_text(json.dumps({"machine_info": {"attnbench": facts}, "benchmarks": []}))
    return path


def test_a_folder_of_another_machine_is_refused_with_the_way_out(tmp_path):
    avx2, avx512 = facts_of(KINDS[0]), facts_of(KINDS[1])
    folder = _run_folder(tmp_path / "cpu-amd-epyc-2c", avx512)
    refusal = other_machine(folder, avx2)
    assert "another machine" in refusal and "cpu_model_number: 17 vs 1" in refusal and "--name" in refusal
    assert other_machine(folder, avx512) is None
    assert other_machine(tmp_path / "new", avx2) is None
    noise = tmp_path / "noise"
    _run_folder(noise / "a1", avx512)  # a noise-floor folder: one run per subfolder
    assert other_machine(noise, avx2) is not None


@pytest.mark.slow
def test_bench_refuses_to_write_over_another_machines_run(tmp_path):
    here = machine_facts()
    other = {**here, "cpu_flags": ["avx2"] if "avx512f" in here["cpu_flags"] else ["avx2", "avx512f"]}
    folder = _run_folder(tmp_path / "theirs", other)
    before = (folder / "benchmarks.json").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "quick", "--results", str(tmp_path), "--name", "theirs"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "another machine" in result.stderr and "--name" in result.stderr
    assert (folder / "benchmarks.json").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == [
        "benchmarks.json"
    ]


def test_compare_warns_that_machines_differ_and_names_the_facts():
    avx2, avx512 = facts_of(KINDS[0]), facts_of(KINDS[1])
    warnings = machine_warnings(avx512, avx2)
    assert warnings[0].startswith("the runs come from different machines (") and "cpu_model_number" in warnings[0]
    legacy = {k: avx512[k] for k in ("cpu_model", "cpu_flags", "cpu_count", "gpu_name", "torch_version")}
    warnings = machine_warnings(legacy, avx512)
    assert not any("different machines" in w for w in warnings)
    assert any("base run does not record cpu_vendor, cpu_family, cpu_model_number" in w for w in warnings)


@pytest.mark.parametrize("floor_kind,warned", [(KINDS[0], True), (KINDS[1], False)])
def test_a_noise_floor_from_another_machine_is_warned(floor_kind, warned):
    floor = {"run_sd": 0.05, "machine": "AMD EPYC (2 cores)", "fingerprint": fingerprint(facts_of(floor_kind))}
    warnings = noise_floor_warnings(floor, facts_of(KINDS[1]))
    assert bool(warnings) == warned
    if warned:
        assert "another machine" in warnings[0] and "cpu_flags" in warnings[0]
    legacy = noise_floor_warnings({"run_sd": 0.05, "machine": "AMD EPYC (2 cores)"}, facts_of(KINDS[1]))
    assert "no machine fingerprint" in legacy[0]


def test_runs_from_before_the_new_fields_mix_with_newer_ones(tmp_path):
    import shutil

    from analysis.errors import AnalysisError
    from analysis.load import load_runs

    legacy = Path(__file__).parent / "fixtures" / "quick-cpu"
    for name, extra in (("newer", {"auto_source": "table", "user": False, "baseline": False}), ("odd", {"x": 1})):
        shutil.copytree(legacy, tmp_path / name)
        path = tmp_path / name / "benchmarks.json"
        data = json.loads(path.read_text())
        for bench in data["benchmarks"]:
            bench["extra_info"].update(extra)
        path.write_text(json.dumps(data))
    cells, _, _ = load_runs([legacy / "benchmarks.json", tmp_path / "newer" / "benchmarks.json"])
    assert cells["auto_source"].notna().sum() == len(cells) // 2  # the older run's cells: empty, not refused
    with pytest.raises(AnalysisError, match="different schemas"):
        load_runs([legacy / "benchmarks.json", tmp_path / "odd" / "benchmarks.json"])


def test_a_run_updating_the_results_index_leaves_the_commit_clean_and_a_code_change_does_not(tmp_path):
    import subprocess

    from infra.machine import git_commit

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("index\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (tmp_path / "results" / "README.md").write_text("index with a new run\n")
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("-dirty")
