"""Variable-length batches: the batch's sequence lengths drawn from a stated distribution, and the same tokens run
in one of three layouts (the cell's `varlen`):
- padded: every sequence padded to n, the padding masked out of the keys (a key-padding mask): the kernel still
  computes every padded query and key;
- nested: a nested (jagged) tensor through SDPA, each sequence its own length: no padding at all;
- packed: the sequences end to end in one row, a document mask keeping each to its own keys (flex skips the
  blocks between sequences; an explicit kernel computes them and masks them).
Each layout is checked on every real token (and its input gradient, in training) against our explicit softmax
on the padded batch, in float32."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from bench.cell import Cell, Shape
from bench.implementations import Implementation, ImplementationError
from bench.workloads import Workload, predicted_peak_bytes, relative_error, training_flops, uses_flex
from model import cost
from model.kernels import attention_family

DISTRIBUTION = "whole numbers uniform between n/4 and n (torch.Generator seed 0)"  # the lengths, as reports say


def draw_lengths(batch: int, n: int, seed: int = 0) -> list[int]:
    """The batch's sequence lengths (DISTRIBUTION): the same for every cell of one batch and n."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(max(1, n // 4), n + 1, (batch,), generator=generator).tolist()


class Layout:
    """The batch in one layout: the module's input made from a (b, n, d) padded tensor, the keywords it takes,
    and the real tokens (T, d) of an output or a gradient in that layout."""

    def __init__(self, varlen: str, lengths: list[int], n: int, device: str) -> None:
        self.varlen, self.lengths = varlen, lengths
        self.padding = torch.arange(n, device=device)[None, :] >= torch.tensor(lengths, device=device)[:, None]
        self.real = ~self.padding  # (b, n): True = a real token
        self.documents = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(device)

    def make(self, padded: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if self.varlen == "padded":
            return padded, {"key_padding_mask": self.padding}
        if self.varlen == "nested":
            rows = [padded[i, :length] for i, length in enumerate(self.lengths)]
            return torch.nested.as_nested_tensor(rows, layout=torch.jagged), {}
        return padded[self.real][None], {"documents": self.documents}  # (1, T, d)

    def tokens(self, out: torch.Tensor) -> torch.Tensor:
        if self.varlen == "padded":
            return out[self.real]
        if self.varlen == "nested":
            return torch.cat(out.unbind())
        return out[0]


def varlen_workload(
    cell: Cell,
    impl: Implementation,
    module: nn.Module,
    reference: nn.Module,
    shape: Shape,
    device: str,
    dtype: torch.dtype,
) -> Workload:
    b, n, d, h = shape.batch, cell.seq_len, shape.d_model, cell.heads
    kv = cell.kv_heads or h
    train = cell.mode == "train"
    lengths = draw_lengths(b, n)
    layout = Layout(cell.varlen, lengths, n, device)
    module = module.to(device, dtype).train(train)
    reference = reference.to(device).train(train)
    padded = torch.randn(b, n, d, device=device).masked_fill(layout.padding[..., None], 0.0)
    grad_tokens = torch.randn(sum(lengths), d, generator=torch.Generator().manual_seed(0)).to(device)

    def leaf(kind: torch.dtype) -> tuple[torch.Tensor, dict]:
        """The layout's input (a leaf that takes a gradient, in training) and its keywords."""
        x, kw = layout.make(padded.to(kind))
        return (x.detach().requires_grad_(train) if train else x), kw

    def backward(tokens: torch.Tensor) -> None:
        """The same gradient on every real token, in every layout (a nested output's own ragged shape too)."""
        (tokens * grad_tokens.to(tokens.dtype)).sum().backward()

    x, kw = leaf(dtype)

    def step() -> None:
        if train:
            x.grad = None
            out = module(x, **kw)
            backward(layout.tokens(out))
        else:
            with torch.no_grad():
                module(x, **kw)

    def check() -> float:
        """Relative error on the real tokens against our explicit softmax on the padded batch, in float32."""
        mine, mine_kw = leaf(dtype)
        want = padded.clone().requires_grad_(train)
        with torch.set_grad_enabled(train):
            got = layout.tokens(module(mine, **mine_kw))
            expected = reference(want, key_padding_mask=layout.padding)[layout.real]
        if got.shape != expected.shape:
            raise ImplementationError(f"{impl.name} returned {tuple(got.shape)} real tokens at {cell.id}")
        errors = [relative_error(got, expected)]
        if train:
            backward(got)
            backward(expected)
            errors.append(relative_error(layout.tokens(mine.grad), want.grad[layout.real]))
        return max(errors)

    def computed(label: str) -> list[int]:
        """The sequences the kernel computes: padded, every one at n; nested, each its own; packed, one row of all
        the tokens, every pair computed and masked by an explicit kernel, the blocks between sequences skipped by
        flex (counted as each sequence its own)."""
        if cell.varlen == "padded":
            return [n] * b
        if cell.varlen == "packed" and attention_family(label) != "flex":
            return [sum(lengths)]
        return lengths

    def flops(label: str) -> int:
        forward = cost.varlen_attention_forward_flops(computed(label), d, h, kv)
        return training_flops(forward.total, forward.attention_scores, label) if train else forward.total

    def memory(family: str) -> int | None:
        """Padded: the dense cell's model; packed: one row of the real tokens; nested: no model (its kernel
        runs sequence by sequence)."""
        if cell.varlen == "padded":
            return predicted_peak_bytes(replace(cell, varlen="none"), shape, family)
        if cell.varlen == "packed":
            return predicted_peak_bytes(
                replace(cell, varlen="none", seq_len=sum(lengths)), replace(shape, batch=1), family
            )
        return None

    countable = cell.varlen != "nested" and not uses_flex(cell)
    return Workload(step, step, check, flops, memory, sum(lengths), lengths, countable)
