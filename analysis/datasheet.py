"""Datasheet peaks (dense, no sparsity) to print beside the measured ones: vendor figures, not
measurements, and labelled so wherever they appear. TFLOP/s; float32 is the non-tensor-core peak,
tf32 the tensor-core float32 path that torch uses when TF32 is allowed."""

from __future__ import annotations

# NVIDIA H100 and H200 datasheets (SXM: 989.4 bf16/fp16, 494.7 tf32, 66.9 fp32; PCIe: 756, 378, 51.2;
# NVL, the 600 W PCIe boards of both: 835.5, 417.5, 60, half the datasheets' with-sparsity figures) and the
# A100 datasheet (312, 156, 19.5).
PEAKS_TFLOPS = {
    "H100 SXM": {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9},
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0, "tf32": 378.0, "float32": 51.2},
    "H100 NVL": {"bfloat16": 835.5, "float16": 835.5, "tf32": 417.5, "float32": 60.0},
    "H200 SXM": {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9},
    "H200 NVL": {"bfloat16": 835.5, "float16": 835.5, "tf32": 417.5, "float32": 60.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5},
}


def model_of(gpu_name: str | None) -> str | None:
    name = (gpu_name or "").upper()
    for part in ("H200", "H100"):
        if part in name:
            if "NVL" in name:
                return f"{part} NVL"
            if "PCIE" in name and part == "H100":
                return "H100 PCIe"
            return f"{part} SXM"  # torch names the SXM parts "NVIDIA H100 80GB HBM3", "NVIDIA H200"
    if "A100" in name:
        return "A100"
    return None


def datasheet_flops(gpu_name: str | None, dtype: str, tf32: bool) -> float | None:
    """FLOP/s the datasheet promises for this GPU and dtype (float32 with TF32 allowed: the tf32 peak)."""
    model = model_of(gpu_name)
    if model is None:
        return None
    key = "tf32" if dtype == "float32" and tf32 else dtype
    return PEAKS_TFLOPS[model].get(key, 0.0) * 1e12 or None
