"""One vocabulary for attention kernels, imported by the model, bench and analysis alike: the names a user
picks, the SDPA backend each forced name stands for, the aten ops each one shows the profiler, the
families the memory model knows, and the op names a trace's components are told by."""

from __future__ import annotations

from torch.nn.attention import SDPBackend

# The kernels of model.attention.MultiHeadAttention; "auto" picks one of them per call (never flex: model/flex.py).
KERNELS = ("naive", "blocked", "sdpa", "flash", "efficient", "cudnn", "math", "flex")
# The SDPA backend each forced kernel name stands for.
FORCED_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
# What auto chooses among, by device, likeliest winner first (tuning drops a clear loser after one call).
CANDIDATES = {
    "cpu": ("flash", "math", "blocked", "naive"),
    "cuda": ("cudnn", "flash", "efficient", "math", "blocked", "naive"),
}
BLOCK = 256  # queries per block of the blocked kernel: a (256 x n) score block per head stays in cache
BLOCKED_SCOPE = "attnbench::blocked_attention"  # the blocked kernel's profiler scope, so it is observed

# The aten ops the profiler shows for each SDPA backend, and for torch's fused fast paths.
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}
FUSED_OPS = ("aten::_transformer_encoder_layer_fwd", "aten::_native_multi_head_attention")
SOFTMAX_OPS = (
    "aten::_softmax",
    "aten::_softmax_backward_data",
    "aten::softmax",
    "aten::_safe_softmax",
    "aten::_masked_softmax",
    "aten::_masked_softmax_backward",
)
SCORE_OPS = ("aten::bmm", "aten::baddbmm")  # only attention multiplies batched matrices in this model

# Families of what an attention kernel keeps in memory (model/cost.py counts each): flash, efficient, cudnn,
# blocked, materialised, math, fused_explicit, fused_sdpa.
MATERIALISING = ("materialised", "math")
EXPLICIT = (*MATERIALISING, "blocked")  # every probability is kept for backward
SCORES_IN_MEMORY = (*MATERIALISING, "fused_explicit")  # the whole h·n² score matrix is written to memory
EXPLICIT_SOFTMAX = (*EXPLICIT, "fused_explicit")  # the scores go through an explicit softmax
RECOMPUTING = ("flash", "efficient", "cudnn", "flex")  # no score matrix kept: QK^T again in backward
FLEX_SCOPE = "attnbench::flex_attention"  # the flex kernel's profiler scope, so it is observed (model/flex.py)
FLEX_UNFUSED = "flex:eager (unfused)"  # the label of flex_attention run without its compiled kernel


def attention_family(label: str) -> str:
    """The family of an observed attention-kernel label (bench/observe.py writes the labels)."""
    if label.startswith("flex"):
        return "flex" if label != FLEX_UNFUSED else "materialised"  # unfused flex holds the n x n scores
    if label.startswith("fused:"):
        return "fused_sdpa" if any(k in label for k in RECOMPUTING) else "fused_explicit"
    for family in ("cudnn", "efficient", "flash"):
        if family in label:
            return family
    if label in ("math", "blocked"):
        return label
    return "materialised" if label == "naive" or "softmax" in label else "flash"
