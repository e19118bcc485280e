"""Facts about the machine a result came from: recorded with every results file."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch


def cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    return model, flags


# The instruction-set extensions that decide which matmul kernels a CPU can run.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_fp16")


def git_commit(path: Path | None = None) -> str | None:
    """HEAD of the checkout, with '-dirty' when tracked files differ from it."""
    cwd = path or Path(__file__).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
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


def machine_facts() -> dict[str, object]:
    cpu, flags = cpu_model_and_flags()
    facts: dict[str, object] = {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_model": cpu,
        "cpu_flags": [f for f in KERNEL_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "gpu_name": None,
        "gpu_memory_bytes": None,
        "numeric_settings": numeric_settings(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory)
    return facts


@cache
def machine_slug(device: str) -> str:
    """A folder name for a run: device and the processor that did the work, e.g. cpu-intel-xeon-8481c-2c."""
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{cpu_model_and_flags()[0]} {os.cpu_count()}c"
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in name).split()
    noise = {"r", "tm", "cpu", "processor", "nvidia", "corporation", "with", "core", "gen"}
    return f"{device}-" + "-".join(w for w in words if w not in noise and not w.endswith("ghz"))[:60]
