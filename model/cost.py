"""Analytic cost model of the encoder: matmul FLOPs and bytes, as functions of the shape.

Notation: b batch, n sequence length, d width (d_model), h heads, f feed-forward width (d_ff),
p bytes per element of the compute dtype. A matmul of (M, K) by (K, N) costs 2*M*K*N FLOPs;
only matmuls are counted (softmax, norms and element-wise ops are O(b*n*d) and left out), which is
also what torch.utils.flop_counter counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.kernels import (
    BLOCK,
    EXPLICIT,
    EXPLICIT_SOFTMAX,
    MATERIALISING,
    attention_family,  # noqa: F401 - the memory model's families are read by this name too
)


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


def attention_forward_flops(b: int, n: int, d: int) -> Flops:
    """One multi-head attention's forward: the score matmuls, and the fused QKV and output projections
    (2*b*n*4d^2)."""
    return Flops(attention_score_flops(b, n, d), 2 * b * n * 4 * d * d)


def visible_pairs(n: int, causal: bool = False, window: int | None = None) -> int:
    """How many (query, key) pairs a mask leaves: n² dense, n(n+1)/2 causal; a window w of keys either side
    (|i - j| < w) leaves n(2w - 1) - w(w - 1), a causal one (0 <= i - j < w) wn - w(w - 1)/2."""
    w = n if window is None else min(window, n)
    if causal:
        return w * n - w * (w - 1) // 2
    return n * (2 * w - 1) - w * (w - 1)


def effective_score_flops(b: int, n: int, d: int, causal: bool = False, window: int | None = None) -> int:
    """The score matmuls' FLOPs over the pairs a mask leaves: what a kernel that skips masked blocks can
    approach. The dense figure (attention_score_flops) is what a kernel that masks after computing does."""
    return 4 * b * d * visible_pairs(n, causal, window)


def grouped_attention_forward_flops(b: int, n: int, d: int, h: int, h_kv: int) -> Flops:
    """attention_forward_flops with h_kv key/value heads for h query heads: the k and v projections shrink by
    h / h_kv (d -> d * h_kv / h each); the scores do not (every query head still sees n keys)."""
    kv = d * h_kv // h
    return Flops(attention_score_flops(b, n, d), 2 * b * n * (2 * d * d + 2 * d * kv))


def varlen_attention_forward_flops(lengths: list[int], d: int, h: int, h_kv: int) -> Flops:
    """A variable-length batch's attention over its real tokens only: each sequence's own projections and
    scores (a padded batch of b sequences of n computes grouped_attention_forward_flops(b, n, ...) instead)."""
    parts = [grouped_attention_forward_flops(1, n, d, h, h_kv) for n in lengths]
    return Flops(sum(p.attention_scores for p in parts), sum(p.linear for p in parts))


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


# Ivanov et al.'s operator classes (Data Movement Is All You Need, 2021): FLOPs per element of what each op
# touches. Softmax: 5 forward (max, subtract, exp, sum, divide), 4 backward (P·dP, its row sum, subtract,
# multiply); LayerNorm: 8 forward (mean, centre, square, variance, rsqrt, normalise, scale, shift), twice that
# backward; the rest, element-wise: the biases (3d + d + d_ff + d per token), two residual adds (2d), the
# activation (d_ff) and the query's scale (d) forward, and their gradients (bias sums, the activation's and the
# residuals' backward) as many again.
SOFTMAX_FLOPS = (5, 4)  # per score, forward and backward
LAYERNORM_FLOPS = (8, 16)  # per element, forward and backward


def layer_class_flops(b: int, n: int, d: int, h: int, f: int, train: bool) -> dict[str, int]:
    """One pre-norm layer's FLOPs by operator class: tensor contractions (every matmul), normalisation (softmax
    and LayerNorm) and the rest (element-wise), forward and, in training, backward."""
    contraction = layer_forward_flops(b, n, d, f).total
    softmax, norm = SOFTMAX_FLOPS[0], LAYERNORM_FLOPS[0]
    rest = b * n * (8 * d + 2 * f)
    if train:
        contraction += layer_backward_flops(b, n, d, f).total
        softmax, norm, rest = softmax + SOFTMAX_FLOPS[1], norm + LAYERNORM_FLOPS[1], 2 * rest
    return {
        "contraction": contraction,
        "normalisation": softmax * b * h * n * n + 2 * norm * b * n * d,
        "rest": rest,
    }


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


def score_intensity(d_head: int, bytes_per_element: int) -> float:
    """FLOPs per byte of a kernel that writes its scores to memory: per head, QK^T and PV cost 4·n²·d_head FLOPs
    while the n² scores and probabilities are written and read back about four times, 4·n²·bytes, so about
    d_head / bytes per element, whatever n. At a fixed d_model more heads mean a smaller d_head: the same FLOPs
    over more bytes moved."""
    return d_head / bytes_per_element


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


# Peak memory of a step, above what was allocated when it began. Attention kernels fall in families
# that differ in what they keep:
#   flash / efficient / cudnn: no score matrix (a log-sum-exp per row); cudnn's backward accumulates
#     dQ, dK and dV in float32;
#   blocked: the explicit softmax a block of queries at a time: in inference only a block's scores exist,
#     in training every block's probabilities are kept for backward, as materialised keeps them;
#   materialised: naive, inductor's bmm + softmax: scores and probabilities; math: SDPA's math backend,
#     the same, except that on CPU with dropout it computes the scores in float32;
#   fused_explicit: torch's CPU fast path (bmm + masked softmax in place): one score matrix;
#   fused_sdpa: torch's CUDA fast path, an SDPA kernel inside.
# The counts below are the buffers live at each phase's peak, read from the allocation events of real
# steps (CPU: the profiler, bench/memory.py; CUDA: the allocator, in the H100 run whose cells are
# tests/fixtures/h100/cells.csv): u is one (b, n, d) activation, F one (b, n, d_ff) hidden, s one score
# matrix in the compute dtype, s32 one in float32. A step's peak is the largest of its phases.
@dataclass(frozen=True)
class MemoryShape:
    b: int
    n: int
    d: int
    h: int
    f: int
    p: int  # bytes per element of the compute dtype
    device: str  # cpu or cuda

    @property
    def u(self) -> int:
        return self.b * self.n * self.d * self.p

    @property
    def F(self) -> int:
        return self.b * self.n * self.f * self.p

    @property
    def s(self) -> int:
        return attention_score_bytes(self.b, self.n, self.h, self.p)

    @property
    def s32(self) -> int:
        return self.b * self.h * self.n**2 * 4


def explicit_inference_terms(m: MemoryShape) -> list[tuple[str, int, int]]:
    """What an explicit softmax (not blocked) holds at its forward's peak, without grad, as (what, how many, bytes
    of one): the n² terms apart from the rest."""
    return [
        ("(b, n, d) activations: the input, the fused q, k, v and the scaled q", 5, m.u),
        ("(b, h, n, n) score-sized: the scores and the probabilities", 2, m.s),
    ]


def attention_inference_bytes(m: MemoryShape, family: str) -> int:
    """Fused QKV, attention, output projection, no grad."""
    if family in MATERIALISING:
        return sum(count * each for _, count, each in explicit_inference_terms(m))
    if family == "blocked":
        return 5 * m.u + 2 * m.s * min(BLOCK, m.n) // m.n
    if family == "fused_explicit":
        return 3 * m.u + m.s
    return 5 * m.u


def kernel_workspace_bytes(m: MemoryShape, family: str) -> int:
    """What a fused attention kernel holds through a training step beyond its inputs and outputs: cuDNN
    accumulates dQ, dK and dV in float32; the others keep smaller float32 buffers."""
    return {"cudnn": 3 * m.u * 4 // m.p + 2 * m.u, "efficient": 2 * m.u, "flash": m.u * 2 // m.p}.get(family, 0)


def _explicit_training(m: MemoryShape, family: str) -> int:
    """Explicit softmax, forward and backward: the probabilities kept for backward and the score-sized
    gradients of backward (for the blocked kernel, of one block at a time; autograd then holds every
    block's share of dK and dV until it sums them)."""
    if family == "blocked":
        blocks = -(-m.n // BLOCK)
        return 4 * m.u + m.s + 2 * m.s * min(BLOCK, m.n) // m.n + 2 * m.u * (blocks - 1)
    return sum(count * each for _, count, each in explicit_training_terms(m))


def explicit_training_terms(m: MemoryShape) -> list[tuple[str, int, int]]:
    """What an explicit softmax (not blocked) holds at its training step's peak, as (what, how many, bytes of
    one): the accounting behind its peak, the n² terms apart from the rest."""
    if m.device == "cpu":
        return [
            ("(b, n, d) activations and their gradients", 4, m.u),
            ("(b, h, n, n) score-sized: the probabilities kept for backward and two gradients of backward", 3, m.s),
        ]
    return [
        ("(b, n, d) activations and their gradients", 3, m.u),
        ("(b, h, n, n) score-sized: the probabilities kept for backward and the gradients of backward", 4, m.s),
    ]


def attention_training_bytes(m: MemoryShape, family: str) -> int:
    """Forward and backward of attention alone (the layer's attention block without norm or FFN)."""
    if family in EXPLICIT:
        return _explicit_training(m, family)
    return 8 * m.u + kernel_workspace_bytes(m, family)


def attention_variant_bytes(m: MemoryShape, family: str, kv_heads: int, window: int | None, train: bool) -> int:
    """What grouped key/value heads and a window change in attention's peak, against the dense cell's:
    - kv_heads < h: the projection's k and v (and in training their gradients) shrink by h / kv_heads; a kernel
      in an explicit family (ours, SDPA's math) repeats them back to h heads first, and keeps the copies (and
      their gradients) as the dense cell keeps its k and v; the CPU flash kernel reads the grouped heads as
      they are.
    - a window: its (n, n) additive mask in the compute dtype, held through the kernel (the explicit kernels and
      SDPA compute every score and mask after); flex holds none (its block mask, built once per length, skips the
      blocks outside the window)."""
    r = kv_heads / m.h
    shrink = -(4 if train else 2) * int(m.u * (1 - r))
    repeat = (4 if train else 2) * m.u if family in EXPLICIT and kv_heads < m.h else 0
    mask = m.n * m.n * m.p if window and family != "flex" else 0
    return shrink + repeat + mask


def layer_inference_bytes(m: MemoryShape, family: str) -> int:
    """Pre-norm layer, eval: the larger of the attention phase and the feed-forward phase."""
    if family == "fused_explicit":
        return max(4 * m.u + m.s, 2 * m.u + m.F)
    if family == "fused_sdpa":
        return 3 * m.u + m.F
    return max(2 * m.u + 2 * m.F, attention_inference_bytes(m, family) + m.u)


def layer_training_bytes(m: MemoryShape, family: str, dropout: bool) -> int:
    """Forward and backward of one pre-norm layer: the larger of the feed-forward phase (its saved hidden,
    relu output and hidden gradient) and the attention phase (its buffers, plus the residual stream), plus
    the attention kernel's workspace, which lives through the step. Dropout adds its masks and dropped
    copies; on CPU it also forces SDPA's math path, which computes the scores in float32."""
    feed_forward = 7 * m.u + 3 * m.F + (m.F // m.p + 2 * m.u if dropout else 0)
    if dropout and m.device == "cpu" and family in EXPLICIT:
        scores = m.s32 if family == "math" else m.s
        return feed_forward + 3 * scores + scores // 4
    attention = _explicit_training(m, family) if family in EXPLICIT else 8 * m.u
    return max(feed_forward, attention + 2 * m.u) + kernel_workspace_bytes(m, family)


def layer_saved_bytes(m: MemoryShape, family: str) -> int:
    """What one layer keeps from its forward for its backward (inside a deeper model)."""
    return 7 * m.u + 2 * m.F + (m.s if family in EXPLICIT else 0)


# What a step moves through memory, the roofline's denominator, phase by phase: each tensor counted once per time a
# kernel writes or reads it whole (compulsory traffic; what stays in a kernel's registers or tiles is not counted,
# nor the caches' help).
# - The linear phase, forward: the QKV projection reads x and its weights and writes q, k, v (1 + 3 activations),
#   attention reads them and writes its output (3 + 1), the output projection reads it and writes y (1 + 1):
#   10 (b, n, d) activations and 4·d² weights. Backward: each linear reads its input and its output's gradient and
#   writes two gradients, twice the forward's traffic.
# - The score phase: an explicit softmax passes its (b, h, n, n) scores through memory 4 times forward (QK^T
#   writes S, the softmax reads it and writes P, PV reads P; a blocked kernel the same, a block of rows at a time)
#   and 7 more in backward (P read twice, for dV and the softmax's backward; dP written and read; dS written and
#   read twice, for dQ and dK); a fused kernel (flash, efficient, cudnn, flex) keeps its scores in its tiles.
# FLOPs per phase: the forward's (attention_forward_flops); backward twice each, and a recomputing kernel's
# backward computes QK^T again (half the forward's score FLOPs).
FORWARD_ACTIVATION_PASSES = 10
FORWARD_SCORE_PASSES = 4
BACKWARD_SCORE_PASSES = 7


@dataclass(frozen=True)
class Phase:
    name: str
    flops: int
    bytes: int


def attention_phases(m: MemoryShape, family: str, train: bool) -> tuple[Phase, Phase]:
    """The linear and the score phase of one attention step (projections included): FLOPs and bytes moved."""
    forward = attention_forward_flops(m.b, m.n, m.d)
    linear_bytes = FORWARD_ACTIVATION_PASSES * m.u + 4 * m.d * m.d * m.p
    explicit = family in EXPLICIT_SOFTMAX
    score_bytes = FORWARD_SCORE_PASSES * m.s if explicit else 0
    if not train:
        return Phase("linear", forward.linear, linear_bytes), Phase("scores", forward.attention_scores, score_bytes)
    recompute = 0 if explicit else forward.attention_scores // 2
    return (
        Phase("linear", 3 * forward.linear, 3 * linear_bytes),
        Phase(
            "scores",
            3 * forward.attention_scores + recompute,
            score_bytes + (BACKWARD_SCORE_PASSES * m.s if explicit else 0),
        ),
    )


# Korthikanti et al. (2022), "Reducing Activation Recomputation in Large Transformer Models": one layer keeps
# s·b·h·(34 + 5·a·s/h) bytes for backward (16-bit activations, dropout masks), so its n² part passes its linear
# part where 5·a·s/h = 34, at s = 6.8·h/a = 6.8·d_head.
KORTHIKANTI_CROSSOVER_D_HEADS = 34 / 5


def saved_memory_crossover(d: int, h: int, f: int) -> float:
    """The length where what an explicit-softmax layer keeps for backward (layer_saved_bytes) has as many bytes
    in its n² term (the probabilities) as in its linear ones: read off the formula itself, B(n) = a·n + c·n²."""
    at = [layer_saved_bytes(MemoryShape(1, n, d, h, f, 1, "cpu"), "materialised") for n in (1, 2)]
    c = (at[1] - 2 * at[0]) / 2
    return (at[0] - c) / c


def train_step_bytes(m: MemoryShape, family: str, dropout: bool, n_layers: int, vocab: int, params: int) -> int:
    """Forward, backward and AdamW step of the token model: the deeper layers' saved activations, the
    peak of the layer being differentiated, and the float32 logits with their log-softmax and gradient;
    less the previous step's parameter gradients, which zero_grad(set_to_none=True) frees first."""
    logits = 3 * m.b * m.n * vocab * 4
    saved = (n_layers - 1) * layer_saved_bytes(m, family)
    return max(saved + layer_training_bytes(m, family, dropout) + logits - params * m.p, 0)


def positional_extra_bytes(m: MemoryShape, encoding: str, train: bool, family: str | None = None) -> int:
    """What an encoding adds to a layer's step: ALiBi's (h, n, n) bias (float distance, scaled bias and
    its expansion to a 4-D mask; none in the flex family, where it is a score_mod computed inside the kernel),
    RoPE's rotated q and k with their rotate-half copies, an absolute table's sum with the input."""
    if encoding in ("alibi", "alibi_directional"):
        if family == "flex":
            return 0
        per_matrix = m.h * m.n**2 * 4
        return per_matrix * (4 if encoding == "alibi_directional" else 3)
    if encoding == "rope":
        return (6 if train else 4) * m.u
    if encoding in ("sinusoidal", "learned"):
        return m.u
    return 0
