"""Analytic cost model of the encoder: matmul FLOPs and bytes, as functions of the shape.

Notation: b batch, n sequence length, d width (d_model), h heads, f feed-forward width (d_ff),
p bytes per element of the compute dtype. A matmul of (M, K) by (K, N) costs 2*M*K*N FLOPs;
only matmuls are counted (softmax, norms and element-wise ops are O(b*n*d) and left out), which is
also what torch.utils.flop_counter counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Flops:
    attention_scores: int  # QK^T and PV
    linear: int  # QKV, output projection, feed-forward, embedding projection, head

    @property
    def total(self) -> int:
        return self.attention_scores + self.linear

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.attention_scores + other.attention_scores, self.linear + other.linear)

    def __mul__(self, k: int) -> Flops:
        return Flops(self.attention_scores * k, self.linear * k)


def attention_score_flops(b: int, n: int, d: int) -> int:
    """QK^T and PV: 2 matmuls of 2*b*n*n*d each (heads cancel: h * d/h = d). This is
    FlashAttention's forward count 4*b*n^2*h*hs, with h*hs = d."""
    return 4 * b * n * n * d


def layer_forward_flops(b: int, n: int, d: int, f: int) -> Flops:
    """One encoder layer: fused QKV (d -> 3d), output projection (d -> d), feed-forward d -> f -> d:
    2*b*n*(3d^2 + d^2 + 2*d*f) = 2*b*n*(4d^2 + 2df)."""
    return Flops(attention_score_flops(b, n, d), 2 * b * n * (4 * d * d + 2 * d * f))


def layer_backward_flops(b: int, n: int, d: int, f: int, recompute_scores: bool = False) -> Flops:
    """Backward of every matmul costs two matmuls of the forward's size: one for the gradient of each
    operand (dX = dY W^T, dW = X^T dY; dQ, dK, dP, dV for attention). Assumes the layer input requires
    grad, as it does inside a model with a trainable embedding. A flash-style kernel keeps no scores
    and recomputes QK^T in backward (Dao et al. 2022: attention backward is 2.5x its forward)."""
    recompute = Flops(attention_score_flops(b, n, d) // 2, 0) if recompute_scores else Flops(0, 0)
    return layer_forward_flops(b, n, d, f) * 2 + recompute


def model_forward_flops(
    b: int, n: int, d: int, f: int, n_layers: int, input_size: int | None, output_size: int | None
) -> Flops:
    """Layers, plus the continuous-input projection (input_size -> d; a token embedding is a lookup,
    0 FLOPs) and the head (d -> output_size)."""
    extra = 2 * b * n * d * ((input_size or 0) + (output_size or 0))
    return layer_forward_flops(b, n, d, f) * n_layers + Flops(0, extra)


def model_backward_flops(
    b: int,
    n: int,
    d: int,
    f: int,
    n_layers: int,
    input_size: int | None,
    output_size: int | None,
    recompute_scores: bool = False,
) -> Flops:
    """As the forward, times two, except the input projection: its input is data, so only dW runs."""
    head = 2 * 2 * b * n * d * (output_size or 0) + 2 * b * n * d * (input_size or 0)
    return layer_backward_flops(b, n, d, f, recompute_scores) * n_layers + Flops(0, head)


def dtype_bytes(dtype: torch.dtype | str) -> int:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return torch.empty((), dtype=dtype).element_size()


def layer_parameter_count(d: int, f: int) -> int:
    """QKV (3d^2 + 3d), output projection (d^2 + d), feed-forward (2df + f + d), two LayerNorms (4d)."""
    return 4 * d * d + 2 * d * f + f + 9 * d


def attention_score_bytes(b: int, n: int, h: int, p: int) -> int:
    """One (b, h, n, n) score or probability matrix: what a flash kernel never materialises."""
    return b * h * n * n * p


def layer_activation_bytes(
    b: int, n: int, d: int, h: int, f: int, p: int, dropout: bool, materialises_scores: bool
) -> int:
    """Bytes one layer saves for backward, after Korthikanti et al. 2022 ("Reducing Activation
    Recomputation in Large Transformer Models", sec. 4.1), generalised from fp16 to p bytes and
    from f = 4d to any f:
      attention: LayerNorm input, QKV input, Q, K, V, output-projection input: 6*b*n*d*p;
        materialised softmax output b*h*n^2*p; with dropout, its 1-byte mask and the dropped
        probabilities (b*h*n^2*(1+p)) and the 1-byte residual dropout mask b*n*d;
        a flash kernel instead saves its output (already counted as the projection input) and a
        float32 log-sum-exp per row: 4*b*h*n.
      feed-forward: LayerNorm input, first-linear input b*n*d*p, activation input and output
        2*b*n*f*p; with dropout, masks b*n*f + b*n*d.
    With p=2, f=4d and dropout this is Korthikanti's 34*s*b*h + 5*a*s^2*b plus the 1-byte mask
    of the dropout between the two feed-forward linears (b*n*f), which torch's layer has and
    Megatron's does not."""
    bnd = b * n * d
    attention = 6 * bnd * p
    if materialises_scores:
        attention += attention_score_bytes(b, n, h, p) + (attention_score_bytes(b, n, h, 1 + p) if dropout else 0)
    else:
        attention += 4 * b * h * n
    feed_forward = 2 * bnd * p + 2 * b * n * f * p
    masks = (bnd + b * n * f + bnd) if dropout else 0
    return attention + feed_forward + masks


def layer_training_peak_bytes(
    b: int, n: int, d: int, h: int, f: int, p: int, dropout: bool, materialises_scores: bool
) -> int:
    """Predicted extra memory at the peak of one layer's forward+backward: saved activations, the
    parameter gradients, and the largest transient of backward (the gradients of scores and
    probabilities when they are materialised, else the feed-forward's hidden gradient)."""
    transient = 2 * attention_score_bytes(b, n, h, p) if materialises_scores else 2 * b * n * f * p
    gradients = layer_parameter_count(d, f) * p
    return layer_activation_bytes(b, n, d, h, f, p, dropout, materialises_scores) + gradients + transient


def layer_inference_peak_bytes(b: int, n: int, d: int, h: int, f: int, p: int, materialises_scores: bool) -> int:
    """Predicted extra memory at the peak of one layer's eval forward: input-sized buffers for QKV
    (3*b*n*d) and the residual stream, plus scores and probabilities when materialised, else the
    feed-forward hidden b*n*f."""
    scores = 2 * attention_score_bytes(b, n, h, p) if materialises_scores else 0
    return (5 * b * n * d + b * n * f) * p + scores
