"""Facts about the machine a result came from: recorded with every results file."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil
import torch


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says of the first processor. Family and model tell CPUs apart that share a
    marketing name ("AMD EPYC" is both an AVX2-only and an AVX-512 BF16 part)."""

    vendor: str | None
    model_name: str
    family: int | None
    model: int | None
    stepping: int | None
    flags: tuple[str, ...]


def parse_cpuinfo(text: str) -> CpuInfo:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() and fields:
            break  # the first processor is enough: every core of a VM is the same part
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())

    def number(key: str) -> int | None:
        return int(fields[key]) if fields.get(key, "").isdigit() else None

    return CpuInfo(
        fields.get("vendor_id"),
        fields.get("model name") or platform.processor() or platform.machine(),
        number("cpu family"),
        number("model"),
        number("stepping"),
        tuple(fields.get("flags", "").split()),
    )


@cache
def this_cpu() -> CpuInfo:
    cpuinfo = Path("/proc/cpuinfo")
    return parse_cpuinfo(cpuinfo.read_text() if cpuinfo.exists() else "")


CACHE_ROOT = Path("/sys/devices/system/cpu")


def parse_cache_index(level: str, kind: str, size: str) -> str | None:
    """The name of one sysfs cache entry (L1d, L2, L3...; instruction caches are left out), or None."""
    if kind == "Instruction" or not level.isdigit() or not size.strip():
        return None
    return f"L{level}d" if kind == "Data" else f"L{level}"


def size_bytes(text: str) -> int:
    """sysfs writes cache sizes as 32K, 1024K, 32768K (kibibytes) or 1M."""
    text = text.strip()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KkMmGg")) * scale


@cache
def cpu_caches(root: Path = CACHE_ROOT) -> tuple[dict[str, int], dict[str, int]]:
    """Each data cache level's size per instance, and how many instances the cores this process may use
    have (two cores with a private L2 each: 2): from sysfs, where Linux publishes them; empty elsewhere."""
    sizes: dict[str, int] = {}
    instances: dict[str, set[str]] = {}
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    for cpu in cpus:
        for index in sorted((root / f"cpu{cpu}" / "cache").glob("index*")):
            try:
                level, kind, size, shared = (
                    (index / name).read_text().strip() for name in ("level", "type", "size", "shared_cpu_list")
                )
            except OSError:
                continue
            name = parse_cache_index(level, kind, size)
            if name is None:
                continue
            sizes[name] = size_bytes(size)
            instances.setdefault(name, set()).add(shared)
    return dict(sorted(sizes.items())), {name: len(shared) for name, shared in sorted(instances.items())}


def memory_levels(facts: dict, device: str) -> list[tuple[str, int]]:
    """The levels a working set can live in, smallest first, with what each holds in all (per-instance size
    times instances); the last is the device's memory, unbounded. Read from a run's facts (older runs have no
    cache sizes: memory alone)."""
    if device.startswith("cuda"):
        l2 = facts.get("gpu_l2_bytes")
        return [*([("L2", int(l2))] if l2 else []), ("HBM", 1 << 62)]
    sizes, instances = facts.get("cpu_cache_bytes") or {}, facts.get("cpu_cache_instances") or {}
    levels = [(name, int(size) * int(instances.get(name, 1))) for name, size in sizes.items()]
    return [*sorted(levels, key=lambda level: level[1]), ("DRAM", 1 << 62)]


def memory_level(working_set_bytes: float, levels: list[tuple[str, int]]) -> str:
    """The smallest level that holds the whole working set (memory, where its size is not known)."""
    return next((name for name, capacity in levels if working_set_bytes <= capacity), levels[-1][0])


def cpu_model_and_flags() -> tuple[str, list[str]]:
    cpu = this_cpu()
    return cpu.model_name, list(cpu.flags)


# The instruction-set extensions that decide which matmul kernels a CPU can run.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_fp16")
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")
NATIVE_FP16 = ("avx512_fp16", "amx_fp16")
# How a report names what a CPU without native support for the dtype lacks.
NATIVE_NEEDS = {"bfloat16": "avx512_bf16/amx", "float16": "avx512_fp16/amx_fp16"}


def kernel_flags(flags: tuple[str, ...] | list[str]) -> list[str]:
    return [f for f in KERNEL_FLAGS if f in flags]


def native_dtypes(flags: tuple[str, ...] | list[str]) -> dict[str, bool]:
    """Which reduced-precision matmuls the CPU runs in hardware; without them oneDNN emulates them,
    one to two orders of magnitude slower than float32."""
    return {"bfloat16": any(f in flags for f in NATIVE_BF16), "float16": any(f in flags for f in NATIVE_FP16)}


def isa_tag(flags: tuple[str, ...] | list[str]) -> str:
    """The widest matmul unit, for the slug: amx, avx512bf16, avx512, avx2 or noavx2; '-fp16' with native fp16."""
    if "amx_bf16" in flags or "amx_tile" in flags:
        tag = "amx"
    elif "avx512_bf16" in flags:
        tag = "avx512bf16"
    elif "avx512f" in flags:
        tag = "avx512"
    else:
        tag = "avx2" if "avx2" in flags else "noavx2"
    return tag + ("-fp16" if native_dtypes(flags)["float16"] else "")


def git_commit(path: Path | None = None) -> str | None:
    """HEAD of the checkout, with '-dirty' when tracked files outside results/ differ from it (a run updates
    results/README.md, the index, itself: the code is what a commit names)."""
    cwd = path or Path(__file__).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
        # --no-optional-locks: a status that only reads never takes the index's lock, so it cannot collide with
        # another git command in the checkout, nor leave a stale lock when it is killed or cannot write
        status = ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--"]
        status += [":(top)", ":(top,exclude)results"]
        dirty = subprocess.run(status, cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def numeric_settings() -> dict[str, object]:
    """The switches that decide how float32 (and reduced-precision) matmuls run: a float32 peak means
    nothing without them (TF32 multiplies it by about 8 on an H100)."""
    matmul = torch.backends.cuda.matmul
    return {
        "cuda_matmul_allow_tf32": matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_fp32_precision": getattr(matmul, "fp32_precision", None),
        "cuda_matmul_allow_bf16_reduced_precision_reduction": matmul.allow_bf16_reduced_precision_reduction,
        "cuda_matmul_allow_fp16_reduced_precision_reduction": matmul.allow_fp16_reduced_precision_reduction,
    }


def gpu_facts() -> dict[str, object]:
    """The GPU's name, memory and driver where torch sees one (the driver from nvidia-smi, when it answers)."""
    if not torch.cuda.is_available():
        return {"gpu_name": None, "gpu_memory_bytes": None, "gpu_driver": None}
    props = torch.cuda.get_device_properties(0)
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"]
        driver = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        driver = None
    return {"gpu_name": props.name, "gpu_memory_bytes": props.total_memory, "gpu_driver": driver}


def cache_facts() -> dict[str, object]:
    """The cache sizes the roofs' memory levels are read from (memory_levels), a part of machine_facts: each CPU
    data cache's size per instance and its instances, and the GPU's L2 where torch sees one."""
    sizes, instances = cpu_caches()
    props = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    l2 = getattr(props, "L2_cache_size", None) if props is not None else None
    return {"cpu_cache_bytes": sizes, "cpu_cache_instances": instances, "gpu_l2_bytes": l2}


def machine_facts() -> dict[str, object]:
    """Every fact recorded with a run; the fingerprint (IDENTITY) and the slug are drawn from them."""
    cpu = this_cpu()
    caches = cache_facts()
    facts: dict[str, object] = {
        "torch_version": torch.__version__,
        "torch_git_version": torch.version.git_version,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_vendor": cpu.vendor,
        "cpu_model": cpu.model_name,
        "cpu_family": cpu.family,
        "cpu_model_number": cpu.model,
        "cpu_stepping": cpu.stepping,
        "cpu_flags": kernel_flags(cpu.flags),
        "cpu_native_dtypes": native_dtypes(cpu.flags),
        "cpu_count": os.cpu_count(),
        "cpu_cache_bytes": caches["cpu_cache_bytes"],  # per instance: L1d, L2, L3 (the roofs' levels; identity)
        "cpu_cache_instances": caches["cpu_cache_instances"],
        "memory_bytes": psutil.virtual_memory().total,  # what a CPU cell may grow to (reports' memory limits)
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        **gpu_facts(),
        "gpu_l2_bytes": caches["gpu_l2_bytes"],
        "numeric_settings": numeric_settings(),
    }
    facts["machine_slug"] = slug_for(facts, "cuda" if facts["gpu_name"] else "cpu")
    return facts


# What makes two machines different machines for a measurement: the CPU part and the instruction sets
# that decide its kernels, its cores, its caches (the roofs' levels), and the GPU. Not torch (a new torch on
# the same machine is a new run of that machine) and not threads (OMP_NUM_THREADS is a setting of one run).
IDENTITY = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_flags", "cpu_count", "cpu_cache_bytes", "gpu_name")


def fingerprint(facts: dict) -> dict[str, object]:
    return {key: facts.get(key) for key in IDENTITY}


def identity_differences(recorded: dict, here: dict, fields: tuple[str, ...] = IDENTITY) -> list[str]:
    """'field: recorded vs here' for each identity field both sides record and that differs; a field one
    side lacks (a run from before fingerprints) is not held against it."""
    out = []
    for key in fields:
        a, b = recorded.get(key), here.get(key)
        if key not in recorded or key not in here or (key != "gpu_name" and None in (a, b)):
            continue
        if key == "cpu_flags":
            a, b = sorted(a), sorted(b)
        if a != b:
            out.append(f"{key}: {a} vs {b}")
    return out


def foreign_machine(folder: Path, recorded: list[tuple[str, dict]], here: dict, way_out: str) -> str | None:
    """Why this machine must not write into `folder`, in one line naming the file and the differing fields,
    or None: `recorded` holds (file name, machine facts) of what the folder already has."""
    for name, facts in recorded:
        differences = identity_differences(facts, here)
        if differences:
            return f"{folder} holds another machine's runs ({name}: {'; '.join(differences)}); {way_out}"
    return None


LATER_IDENTITY = ("gpu_name", "cpu_cache_bytes")  # optional, or recorded only since the roofs (issue 40)


def missing_identity(facts: dict) -> list[str]:
    """The fingerprint's fields a run from before fingerprints lacks."""
    return [key for key in IDENTITY if key not in LATER_IDENTITY and facts.get(key) is None]


def _words(name: str) -> list[str]:
    name = name.split("@")[0]  # "... CPU @ 2.70GHz": the clock is not the part
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in name).split()
    noise = {"r", "tm", "cpu", "processor", "nvidia", "corporation", "with", "core", "gen"}
    return [w for w in words if w not in noise and not w.endswith("ghz")]


def slug_for(facts: dict, device: str) -> str:
    """A folder name a person can read: the device, the part's name and, on a CPU, its widest matmul unit and
    cores: cpu-amd-epyc-avx2-2c, cpu-amd-epyc-avx512bf16-2c, cpu-intel-xeon-platinum-8481c-amx-fp16-2c,
    cuda-h100-80gb-hbm3."""
    if device == "cuda" and facts.get("gpu_name"):
        return "cuda-" + "-".join(_words(str(facts["gpu_name"])))[:60]
    name = "-".join(_words(str(facts.get("cpu_model") or "unknown")))[:48]
    return f"cpu-{name}-{isa_tag(facts.get('cpu_flags') or [])}-{facts.get('cpu_count')}c"


@cache
def machine_slug(device: str) -> str:
    cpu = this_cpu()
    facts = {"cpu_model": cpu.model_name, "cpu_flags": kernel_flags(cpu.flags), "cpu_count": os.cpu_count()}
    return slug_for({**facts, **gpu_facts()} if device == "cuda" else facts, device)
