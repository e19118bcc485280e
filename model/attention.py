"""Multi-head self-attention with a fused QKV projection and interchangeable kernels: naive (explicit
softmax), blocked (the same, a block of queries at a time), sdpa (F.scaled_dot_product_attention), a
forced SDPA backend, or auto (the measured fastest); bidirectional, or causal (each position sees itself
and the positions before it) with every kernel; grouped-query (fewer key/value heads than query heads, each
shared by a group of query heads) and a sliding window of keys, with every kernel too."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.profiler import record_function
from torch.nn.attention import SDPBackend, sdpa_kernel

from model.flex import block_mask, flex
from model.kernel_choice import KernelChooser, default_chooser
from model.kernel_tuning import time_candidates
from model.kernels import BLOCK, BLOCKED_SCOPE, FORCED_BACKENDS, KERNELS
from model.positional import NoPositionalEncoding, PositionalEncoding

NO_POSITIONS = NoPositionalEncoding()  # stateless, so one instance serves every layer


def additive_mask(
    batch: int,
    n: int,
    key_padding_mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Fold a (B, n) key-padding mask (True = ignore) and a (nh, n, n) or (B, nh, n, n) bias into
    one additive float mask that both kernels accept; None when there is neither."""
    if key_padding_mask is None and bias is None:
        return None
    # A 4-D mask keeps the CPU flash kernel eligible; a 3-D one sends SDPA to the math backend.
    mask = bias.reshape(-1, *bias.shape[-3:]) if bias is not None else torch.zeros((), dtype=dtype)
    if key_padding_mask is not None:
        check_padding(key_padding_mask, batch, n)
        padding = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
        padding = padding.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]  # (B,1,1,n)
        mask = mask.to(padding.device) + padding
    return mask.to(dtype)


def causal_mask(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, n) additive mask: 0 on and below the diagonal, -inf above it (a query never sees a later key)."""
    later = torch.ones(n, n, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(n, n, dtype=dtype, device=device).masked_fill(later, float("-inf"))


def window_mask(n: int, window: int, causal: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, n) additive mask of a sliding window: query i sees key j where |i - j| < window (causal: only
    0 <= i - j < window, the window of keys ending at the query, as Mistral's). -inf elsewhere."""
    # a band of ones from diagonal -(w - 1) to 0 (causal) or to w - 1: bools, not an (n, n) index difference
    band = torch.ones(n, n, dtype=torch.bool, device=device).tril(0 if causal else window - 1).triu(1 - window)
    return torch.zeros(n, n, dtype=dtype, device=device).masked_fill(~band, float("-inf"))


def document_mask(documents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, n) additive mask of packed sequences: `documents` (n,) gives each token's sequence, and a query sees
    only the keys of its own (-inf elsewhere): several sequences in one row, none reading another."""
    other = documents[:, None] != documents[None, :]
    return torch.zeros(other.shape, dtype=dtype, device=documents.device).masked_fill(other, float("-inf"))


def repeat_kv(k: torch.Tensor, v: torch.Tensor, query_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k and v of h_kv heads repeated to the query's h heads (head i of the query reads key/value head
    i // (h / h_kv)): what a kernel without grouped-query support computes."""
    groups = query_heads // k.shape[1]
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T / sqrt(d) + mask) V, materialising the (B, nh, n, n) probabilities. The scale is
    applied to Q (n*d work) rather than to the scores (n*n work), as fused kernels do."""
    k, v = repeat_kv(k, v, q.shape[1])
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, nh, n, n)
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    return F.dropout(weights, p=dropout_p) @ v, weights  # (B, nh, n, hs)


def blocked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float
) -> torch.Tensor:
    """naive_attention a block of BLOCK queries at a time: the same arithmetic row for row, but each
    block's scores are used while they are still in cache."""
    n = q.shape[-2]
    k, v = repeat_kv(k, v, q.shape[1])  # once, not once a block
    with record_function(BLOCKED_SCOPE):
        blocks = []
        for start in range(0, n, BLOCK):
            rows = slice(start, start + BLOCK)
            block_mask = mask[..., rows, :] if mask is not None and mask.shape[-2] == n else mask
            blocks.append(naive_attention(q[..., rows, :], k, v, block_mask, dropout_p)[0])
        return torch.cat(blocks, dim=-2)  # (B, nh, n, hs)


# A forced backend runs with MATH allowed beside it, so that inputs the backend cannot take (a mask it does
# not support, say) still run, on the reference kernel.


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    kernel: str = "sdpa",
    is_causal: bool = False,
) -> torch.Tensor:
    """F.scaled_dot_product_attention, on the backend `kernel` names (sdpa: the dispatcher's choice); with
    fewer key/value heads than query heads, SDPA's own grouped-query path (enable_gqa)."""
    causal = {"is_causal": True} if is_causal else {}  # the bidirectional call stays exactly as it was
    if k.shape[1] != q.shape[1]:
        causal["enable_gqa"] = True
    if kernel == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, **causal)
    if kernel == "flash" and q.device.type == "cpu" and mask is None and not dropout_p and "enable_gqa" not in causal:
        # the op SDPA's dispatcher reaches for these inputs, called as it is: entering sdpa_kernel cost about
        # 0.1 ms a call, which made ours_auto slower than ours where both ran this kernel (issue 40)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, is_causal)[0]
    with sdpa_kernel([FORCED_BACKENDS[kernel], SDPBackend.MATH]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, **causal)


def attention_kernel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    kernel: str,
    is_causal: bool = False,
) -> torch.Tensor:
    """One named kernel (not auto) on (B, nh, n, hs) inputs. `is_causal` with no other mask: SDPA's own
    causal path (its kernels skip the masked half); the explicit kernels add the causal mask."""
    if is_causal:
        if kernel not in ("naive", "blocked"):
            return sdpa(q, k, v, mask, dropout_p, kernel, is_causal=True)
        mask = causal_mask(q.shape[-2], q.device, q.dtype)
    if kernel == "naive":
        return naive_attention(q, k, v, mask, dropout_p)[0]
    if kernel == "blocked":
        return blocked_attention(q, k, v, mask, dropout_p)
    return sdpa(q, k, v, mask, dropout_p, kernel)


def tuner(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    train: bool,
    is_causal: bool = False,
):
    """Times every candidate kernel on fresh inputs of the call's shapes (never the call's own tensors, so
    the model's autograd graph is untouched): forward, and backward too when training."""

    def tune() -> dict[str, float]:
        inputs = [torch.randn_like(t, requires_grad=train) for t in (q, k, k)]
        grad = torch.randn_like(q)

        def run(kernel: str) -> None:
            with torch.enable_grad() if train else torch.no_grad():
                out = attention_kernel(*inputs, mask, dropout_p, kernel, is_causal)
                if train:
                    out.backward(grad)

        return time_candidates(run, q.device.type)

    return tune


class MultiHeadAttention(nn.Module):
    """Parameter layout mirrors nn.MultiheadAttention (in_proj, out_proj) so weights copy across."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        kernel: str = "sdpa",
        chooser: KernelChooser | None = None,
        causal: bool = False,
        kv_heads: int | None = None,
        window: int | None = None,
    ) -> None:
        super().__init__()
        if kernel not in ("auto", *KERNELS):
            raise ValueError(f"attention kernel {kernel!r} is not supported; choose one of auto, {', '.join(KERNELS)}")
        kv_heads = n_heads if kv_heads is None else kv_heads
        if kv_heads < 1 or n_heads % kv_heads:
            divisors = [h for h in range(1, n_heads + 1) if n_heads % h == 0]
            raise ValueError(f"kv_heads={kv_heads} must divide n_heads={n_heads}: one of {divisors}")
        if window is not None and window < 1:
            raise ValueError(f"window={window} must be a positive number of keys, or None for no window")
        self.n_heads, self.dropout, self.kernel, self.causal = n_heads, dropout, kernel, causal
        self.kv_heads, self.window = kv_heads, window
        # q, then k and v of kv_heads heads each: nn.MultiheadAttention's (3 * d_model) layout when kv_heads = h
        self.in_proj = nn.Linear(d_model, d_model + 2 * kv_heads * (d_model // n_heads))
        self.out_proj = nn.Linear(d_model, d_model)
        # The auto kernel's measured choices are handed in (default: this machine's cache, tuned on first use).
        self.chooser = (chooser or default_chooser()) if kernel == "auto" else None
        self.keep_weights = False  # set to record attention probabilities (naive kernel only)
        self.last_weights: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        positional: PositionalEncoding = NO_POSITIONS,
        documents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, n, d), or a nested jagged tensor of B sequences of their own lengths (SDPA's kernels only).
        `key_padding_mask` (B, n): True = a key to ignore. `documents` (n,): packed sequences, each token's
        sequence index; a query sees only its own sequence's keys."""
        if x.is_nested:
            return self._nested(x, key_padding_mask, positional, documents)
        B, n, d = x.shape
        hs = d // self.n_heads
        if self.kv_heads == self.n_heads:
            q, k, v = self.in_proj(x).view(B, n, 3, self.n_heads, hs).permute(2, 0, 3, 1, 4)  # (B, nh, n, hs)
        else:
            q, kv = self.in_proj(x).split([d, 2 * self.kv_heads * hs], dim=-1)
            q = q.view(B, n, self.n_heads, hs).transpose(1, 2)  # (B, nh, n, hs)
            k, v = kv.view(B, n, 2, self.kv_heads, hs).permute(2, 0, 3, 1, 4)  # (B, h_kv, n, hs)
        q, k = positional.rotate(q, k)
        if self.kernel == "flex" and not self.keep_weights:  # masks as block masks, ALiBi inside the kernel
            y = self._flex(q, k, v, key_padding_mask, positional, documents)
            return self.out_proj(y.transpose(1, 2).reshape(B, n, d))
        bias = positional.attention_bias(n, x.device, x.dtype)
        mask = additive_mask(B, n, key_padding_mask, bias, x.dtype)
        if documents is not None:
            check_documents(documents, n)
            packed = document_mask(documents, x.dtype)
            mask = packed if mask is None else mask + packed
        if self.window is not None:  # the window's mask holds the causal half as well
            band = window_mask(n, self.window, self.causal, x.device, x.dtype)
            mask, is_causal = (band if mask is None else mask + band), False
        else:
            # causal alone: the kernel's own causal path; with a bias or padding: folded into the one mask
            is_causal = self.causal and mask is None
            if self.causal and mask is not None:
                mask = mask + causal_mask(n, x.device, x.dtype)
        dropout_p = self.dropout if self.training else 0.0
        kernel = self.kernel
        if kernel == "auto":
            dtype = str(x.dtype).removeprefix("torch.")
            chooser = self.chooser or default_chooser()  # the kernel may have been switched to auto after init
            kernel = chooser.choose(
                x.device.type,
                dtype,
                n,
                dropout_p > 0,
                self.training,
                tuner(q, k, mask, dropout_p, self.training, is_causal),
            )
        if self.keep_weights:
            y, weights = naive_attention(q, k, v, causal_mask(n, x.device, x.dtype) if is_causal else mask, dropout_p)
            self.last_weights = weights.detach()
        else:
            y = attention_kernel(q, k, v, mask, dropout_p, kernel, is_causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, n, d))  # (B, n, d)

    def _flex(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        positional: PositionalEncoding,
        documents: torch.Tensor | None,
    ) -> torch.Tensor:
        """The flex kernel: causal, window, padding and packed sequences as one block mask, ALiBi as a score_mod."""
        if self.training and self.dropout > 0:
            raise ValueError(f"the flex kernel has no attention dropout; got dropout={self.dropout}: use 0, or sdpa")
        B, _, n, _ = q.shape
        if key_padding_mask is not None:
            check_padding(key_padding_mask, B, n)
        if documents is not None:
            check_documents(documents, n)
        blocks = block_mask(n, self.causal, self.window, key_padding_mask, q.device, documents)
        return flex(q, k, v, blocks, positional.score_mod())

    def _nested(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        positional: PositionalEncoding,
        documents: torch.Tensor | None,
    ) -> torch.Tensor:
        """A nested jagged batch (B, j, d), each sequence its own length, through SDPA (as torch's nested-tensor
        tutorial writes it): no padding is computed, so there is none to mask."""
        plain = self.kv_heads == self.n_heads and self.window is None and not self.causal
        if self.kernel not in ("sdpa", *FORCED_BACKENDS) or not plain or self.keep_weights:
            raise ValueError(
                f"a nested tensor runs through SDPA's kernels with every key and head only; got kernel "
                f"{self.kernel!r}, kv_heads={self.kv_heads}, window={self.window}, causal={self.causal}"
            )
        if key_padding_mask is not None or documents is not None or not isinstance(positional, NoPositionalEncoding):
            raise ValueError("a nested tensor takes no key_padding_mask, documents or positional encoding")
        hs = x.size(-1) // self.n_heads
        q, k, v = (
            t.contiguous().unflatten(-1, [self.n_heads, hs]).transpose(1, 2) for t in self.in_proj(x).chunk(3, dim=-1)
        )  # (B, nh, j, hs); SDPA takes a nested tensor only contiguous before the transpose
        y = sdpa(q, k, v, None, self.dropout if self.training else 0.0, self.kernel)
        return self.out_proj(y.transpose(1, 2).flatten(-2))  # (B, j, d)


def check_padding(key_padding_mask: torch.Tensor, batch: int, n: int) -> None:
    if key_padding_mask.shape != (batch, n) or key_padding_mask.dtype != torch.bool:
        raise ValueError(
            f"key_padding_mask must be a bool tensor of shape ({batch}, {n}), "
            f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )


def check_documents(documents: torch.Tensor, n: int) -> None:
    if documents.shape != (n,) or documents.dtype.is_floating_point or documents.dtype == torch.bool:
        raise ValueError(
            f"documents must be an integer tensor of shape ({n},), each token's sequence; "
            f"got {documents.dtype} {tuple(documents.shape)}"
        )


def hand_chooser(module: nn.Module, chooser: KernelChooser) -> nn.Module:
    """Hand `chooser` to every auto-kernel attention inside `module` (a layer or a whole encoder)."""
    for sub in module.modules():
        if isinstance(sub, MultiHeadAttention) and sub.kernel == "auto":
            sub.chooser = chooser
    return module
