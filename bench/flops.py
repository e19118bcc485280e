"""FLOPs as torch.utils.flop_counter counts them, with formulas for the kernels it cannot see.

FlopCounterMode counts 0 for the CPU flash SDPA kernels and for the fused eval fast paths of
nn.MultiheadAttention and nn.TransformerEncoderLayer (they are single aten ops). We register
formulas for them so every CPU cell is counted; ADDED_FORMULAS lists which.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

from model.cost import attention_forward_flops

aten = torch.ops.aten


def _fused_attention_flops(b: int, n: int, d: int) -> int:
    return attention_forward_flops(b, n, d).total


@register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu, get_raw=False)
def _cpu_flash_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=False)
def _cpu_flash_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


@register_flop_formula(aten._native_multi_head_attention, get_raw=False)
def _native_mha(query_shape, *args, out_shape=None, **kwargs) -> int:
    b, n, d = query_shape
    return _fused_attention_flops(b, n, d)


@register_flop_formula(aten._transformer_encoder_layer_fwd, get_raw=False)
def _encoder_layer_fast_path(src_shape, *args, out_shape=None, **kwargs) -> int:
    # args follow aten's schema: embed_dim, num_heads, 4 attention weights, use_gelu, norm_first, eps,
    # 4 norm weights, then the first feed-forward weight (d_ff, d).
    b, n, d = src_shape
    f = args[13][0]
    return _fused_attention_flops(b, n, d) + 2 * b * n * 2 * d * f


ADDED_FORMULAS = (
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_flash_attention_for_cpu_backward",
    "aten._native_multi_head_attention",
    "aten._transformer_encoder_layer_fwd",
)


def count_flops(fn: Callable[[], object]) -> tuple[int, list[str]]:
    """Total FLOPs of one call, and which of the added formulas contributed."""
    with FlopCounterMode(display=False) as counter:
        fn()
    ops = {str(op).replace(".default", "") for op in counter.get_flop_counts().get("Global", {})}
    return counter.get_total_flops(), sorted(name for name in ADDED_FORMULAS if name in ops)
