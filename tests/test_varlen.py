"""Variable-length batches: padded (a key-padding mask), nested (a jagged tensor through SDPA) and packed (a
document mask), each against every sequence run alone, with gradients; as grid cells, their checks, FLOPs,
tokens, pairs and skips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.cell import Cell
from bench.grid import GridError, load_grid
from bench.pairs import declared_partners
from bench.skips import unsupported
from bench.varlen import draw_lengths
from bench.workloads import TOLERANCE, attention_workload
from model import cost
from model.attention import MultiHeadAttention, document_mask

D, H = 32, 4
LENGTHS = [7, 19, 12]


def module(kernel: str) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(D, H, 0.0, kernel).eval()


def alone(m: MultiHeadAttention, rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each sequence through the module by itself: the answer every layout must give on its real tokens."""
    return [m(r[None])[0] for r in rows]


def sequences() -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(n, D) for n in LENGTHS]


@pytest.mark.parametrize("kernel", ["naive", "blocked", "sdpa", "math"])
def test_packed_sequences_with_a_document_mask_are_each_sequence_alone(kernel):
    m, rows = module(kernel), sequences()
    packed = torch.cat(rows)[None].requires_grad_(True)
    documents = torch.repeat_interleave(torch.arange(len(LENGTHS)), torch.tensor(LENGTHS))
    out = m(packed, documents=documents)[0]
    want = torch.cat(alone(m, rows))
    assert (out - want).abs().max().item() < 1e-5
    # gradients: packed against each alone
    leaves = [r.clone().requires_grad_(True) for r in rows]
    torch.cat(alone(m, leaves)).sum().backward()
    out.sum().backward()
    assert (packed.grad[0] - torch.cat([leaf.grad for leaf in leaves])).abs().max().item() < 1e-5


def test_the_document_mask_lets_a_query_see_its_own_sequence_only():
    documents = torch.tensor([0, 0, 1, 1, 1, 2])
    seen = document_mask(documents, torch.float32) == 0
    by_hand = torch.tensor([[documents[i] == documents[j] for j in range(6)] for i in range(6)])
    assert torch.equal(seen, by_hand)
    with pytest.raises(ValueError, match=r"documents must be an integer tensor of shape \(6,\)"):
        module("naive")(torch.randn(1, 6, D), documents=torch.zeros(5, dtype=torch.long))


def test_a_nested_batch_through_sdpa_is_each_sequence_alone_with_gradients():
    m, rows = module("sdpa"), sequences()
    leaves = [r.clone() for r in rows]
    nested = torch.nested.as_nested_tensor(leaves, layout=torch.jagged).detach().requires_grad_(True)
    out = m(nested)
    got = torch.cat(out.unbind())
    want = torch.cat(alone(m, rows))
    assert (got - want).abs().max().item() < 1e-5
    got.sum().backward()
    single = [r.clone().requires_grad_(True) for r in rows]
    torch.cat(alone(m, single)).sum().backward()
    assert (torch.cat(nested.grad.unbind()) - torch.cat([s.grad for s in single])).abs().max().item() < 1e-5


def test_a_nested_batch_is_refused_where_sdpa_does_not_run_it():
    rows = torch.nested.as_nested_tensor(sequences(), layout=torch.jagged)
    with pytest.raises(ValueError, match="a nested tensor runs through SDPA's kernels"):
        module("naive")(rows)


def test_padding_masked_out_of_the_keys_leaves_each_real_token_as_alone():
    m, rows = module("sdpa"), sequences()
    n = max(LENGTHS)
    padded = torch.zeros(len(rows), n, D)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = r
    padding = torch.arange(n)[None, :] >= torch.tensor(LENGTHS)[:, None]
    out = m(padded, key_padding_mask=padding)
    got = torch.cat([out[i, :length] for i, length in enumerate(LENGTHS)])
    assert (got - torch.cat(alone(m, rows))).abs().max().item() < 1e-5


def test_lengths_are_drawn_as_stated_and_the_same_every_time():
    lengths = draw_lengths(64, 1024)
    assert lengths == draw_lengths(64, 1024)
    assert min(lengths) >= 256 and max(lengths) <= 1024 and len(set(lengths)) > 10


@pytest.mark.parametrize(
    ("varlen", "mode"), [("padded", "forward"), ("padded", "train"), ("nested", "forward"), ("nested", "train")]
)
def test_a_varlen_cell_checks_on_every_real_token_and_counts_what_its_layout_computes(varlen, mode):
    shape = load_grid("variants").shapes["small"]
    cell = Cell("attention", "cpu", "float32", "small", 64, 8, "sdpa", mode, varlen=varlen)
    work = attention_workload(cell, shape, "cpu", torch.float32)
    assert work.check() < TOLERANCE["float32"]
    work.step()
    lengths = draw_lengths(shape.batch, 64)
    assert work.tokens == sum(lengths) and work.lengths == lengths
    computed = [64] * shape.batch if varlen == "padded" else lengths
    forward = cost.varlen_attention_forward_flops(computed, shape.d_model, 8, 8)
    want = forward.total if mode == "forward" else 3 * forward.total + forward.attention_scores // 2
    assert work.flops("flash") == want
    if varlen == "padded":  # the padded batch computes the dense cell's FLOPs
        assert forward == cost.grouped_attention_forward_flops(shape.batch, 64, shape.d_model, 8, 8)


def test_varlen_cells_pair_with_the_same_tokens_padded_and_skip_what_cannot_run():
    cells = load_grid("variants").cells()
    ids = {c.id for c in cells}
    assert "cpu-float32-small-n1024-h8-sdpa-train-nested" in ids
    assert "cpu-float32-small-n1024-h8-flex-forward-packed" in ids
    pairs = declared_partners(cells)
    nested = next(c for c in cells if c.varlen == "nested")
    assert pairs[nested.id] == replace(nested, varlen="padded")
    assert all(c.id not in pairs for c in cells if c.varlen == "padded")
    base = Cell("attention", "cpu", "float32", "small", 64, 8, "naive", "forward", varlen="nested")
    assert unsupported(base).startswith("unsupported: a nested tensor runs through SDPA's kernels")
    assert "takes no variable-length batch (padded)" in unsupported(replace(base, impl="torch_mha", varlen="padded"))
    assert unsupported(replace(base, impl="sdpa")) is None


def test_a_bad_layout_is_refused_in_one_line():
    with pytest.raises(GridError) as err:
        load_grid("variants", ["attention.varlen=ragged"])
    assert str(err.value) == "attention.varlen='ragged' is not accepted; choose from none, padded, nested, packed"


def test_a_committed_varlen_runs_tokens_per_second_count_real_tokens_only():
    """Two cells of the committed variants run (schema 5, which wrote no tokens_per_step): its tokens/s are the
    batch's real tokens over the cell's time, recomputed here from the raw JSON (it printed padded tokens/s, 1.5x
    too high at n=512 and 2.4x at n=1024)."""
    import json
    import math
    import statistics

    from analysis.load import load_run

    path = Path(__file__).parent / "fixtures" / "varlen-run" / "benchmarks.json"
    cells, _, _ = load_run(path)
    passes: dict[str, list[dict]] = {}
    for bench in json.loads(path.read_text())["benchmarks"]:
        passes.setdefault(bench["extra_info"]["id"], []).append(bench["extra_info"])
    assert set(cells["id"]) == set(passes) and len(passes) == 2
    for row in cells.itertuples():
        records = passes[row.id]
        real = sum(records[0]["sequence_lengths"])
        assert real < records[0]["batch"] * records[0]["seq_len"]  # padding there, not counted
        seconds = math.exp(statistics.fmean(math.log(statistics.median(r["device_samples_s"])) for r in records))
        assert row.tokens_per_s == pytest.approx(real / seconds, rel=1e-9)
