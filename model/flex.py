"""FlexAttention as a kernel of our attention: torch.compile(flex_attention) with the masks as block masks
(causal, a window of keys, key padding) and ALiBi as a score_mod computed inside the kernel.

Two ways it goes wrong silently, both guarded here:
- called without torch.compile, flex_attention runs an unfused reference that holds the n x n scores;
- once dynamo reaches its recompile limit it falls back to that same eager path without a word. attention-gym
  and tritonbench raise the limit; so does this module, and it counts the compilations so a caller can tell.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, and_masks, create_block_mask, flex_attention

from model.kernels import FLEX_SCOPE

RECOMPILE_LIMIT = 1000  # each new shape or mask function recompiles; dynamo's default (8) is reached in one grid
ScoreMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_frames_compiled = [0]  # how many times the compiled flex has been (re)compiled in this process


def _count_compile(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
    _frames_compiled[0] += 1
    from torch._inductor.compile_fx import compile_fx  # inductor, as torch.compile's default backend

    return compile_fx(gm, example_inputs)


def compilations() -> int:
    """Times the flex kernel was compiled in this process: one per shape and mask, more means recompiles."""
    return _frames_compiled[0]


@functools.cache
def compiled_flex() -> Callable:
    """flex_attention under torch.compile, once per process, with dynamo's recompile limit raised."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the limit's name in newer and older torch
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    return torch.compile(flex_attention, backend=_count_compile, dynamic=False)


def _causal(b, h, q, kv):
    return q >= kv


def _window(window: int, causal: bool) -> Callable:
    def inside(b, h, q, kv):
        offset = q - kv
        return ((offset >= 0) & (offset < window)) if causal else (offset.abs() < window)

    return inside


def _every_key(b, h, q, kv):
    return q >= 0


@functools.lru_cache(maxsize=64)
def _shared_block_mask(n: int, causal: bool, window: int | None, device: str) -> BlockMask:
    """A mask every sequence and head shares (causal, a window, or every key), built once per length on the
    cell's device (create_block_mask's default device is CUDA). Every key gets a block mask too: given none, the
    compiled CPU kernel of torch 2.13 allocates two (n, n) int64 temporaries in every call (8.4 and 8.7 MB at
    n=1024 in the profiler's memory events; 81 MB at n=2048 against 13 MB with a full block mask, and a little
    slower), so its memory would grow as n^2 without any n x n scores."""
    if window is not None:
        return create_block_mask(_window(window, causal), None, None, n, n, device=device)
    return create_block_mask(_causal if causal else _every_key, None, None, n, n, device=device)


def block_mask(
    n: int,
    causal: bool,
    window: int | None,
    key_padding_mask: torch.Tensor | None,
    device: torch.device,
    documents: torch.Tensor | None = None,
) -> BlockMask:
    """The block mask of a call (a full one where every query sees every key: flex then skips no block). `documents`
    (n,): packed sequences, a query seeing only its own sequence's keys (flex skips the blocks between them)."""
    if key_padding_mask is None and documents is None:
        return _shared_block_mask(n, causal, window, str(device))
    parts = [_window(window, causal)] if window is not None else [_causal] if causal else []
    batch = None
    if key_padding_mask is not None:
        keep = ~key_padding_mask  # (B, n): True = a real key

        def real_key(b, h, q, kv):
            return keep[b, kv]

        parts.append(real_key)
        batch = key_padding_mask.shape[0]
    if documents is not None:

        def same_document(b, h, q, kv):
            return documents[q] == documents[kv]

        parts.append(same_document)
    return create_block_mask(and_masks(*parts), batch, None, n, n, device=str(device))


def flex(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: BlockMask | None,
    score_mod: ScoreMod | None,
) -> torch.Tensor:
    """Compiled flex_attention; with fewer key/value heads than query heads, its own grouped-query path."""
    with torch.profiler.record_function(FLEX_SCOPE):
        return compiled_flex()(q, k, v, score_mod=score_mod, block_mask=mask, enable_gqa=k.shape[1] != q.shape[1])
