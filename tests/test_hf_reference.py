"""Hugging Face's BertLayer as a reference: ours configured as BERT equals it (eager and sdpa), HF cells are
checked and observed like any implementation, and a module of any parameter layout loads the reference
through its own load_reference hook."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.hf_reference import HFBertLayer
from model import EncoderLayer
from model.layers import BERT_STYLE

pytest.importorskip("transformers", reason="the hf extra: pip install -e '.[hf]' (tox installs it)")

ROOT = Path(__file__).resolve().parents[1]
D, H, F, B, N = 32, 4, 64, 3, 12


def make_pair(mode: str, dtype=torch.float32):
    torch.manual_seed(0)
    ours = EncoderLayer(D, H, F, 0.0, attention="sdpa", **BERT_STYLE)
    theirs = HFBertLayer(D, H, F, 0.0, mode)
    theirs.load_reference(ours)
    return ours.to(dtype), theirs.to(dtype)


def padding(with_mask: bool):
    """(our key_padding_mask, BERT's additive attention_mask) for the same padded keys."""
    if not with_mask:
        return None, None
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[0, -4:], mask[2, -1:] = True, True
    return mask, torch.zeros(B, 1, 1, N).masked_fill(mask[:, None, None, :], torch.finfo(torch.float32).min)


def forward_backward(layer, x, mask):
    x = x.clone().requires_grad_(True)
    out = layer(x, mask)
    torch.manual_seed(1)
    (out.float() * torch.randn(out.shape)).sum().backward()
    return out.detach(), x.grad, [p.grad for p in layer.parameters()]


def grads_in_bert_order(ours: EncoderLayer, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Our gradients laid out as BertLayer's parameters are (in_proj split into query, key, value)."""
    g = dict(zip((n for n, _ in ours.named_parameters()), grads))
    w, b = g["self_attn.in_proj.weight"].chunk(3), g["self_attn.in_proj.bias"].chunk(3)
    rest = [
        g[f"{name}.{leaf}"]
        for name in ("self_attn.out_proj", "norm1", "ff.linear1", "ff.linear2", "norm2")
        for leaf in ("weight", "bias")
    ]
    return [w[0], b[0], w[1], b[1], w[2], b[2], *rest]


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("mode", ["eager", "sdpa"])
def test_ours_as_bert_equals_bert_layer_float32(mode, with_mask):
    ours, theirs = make_pair(mode)
    x = torch.randn(B, N, D)
    key_padding, additive = padding(with_mask)
    out_o, dx_o, grads_o = forward_backward(ours, x, key_padding)
    out_t, dx_t, grads_t = forward_backward(theirs, x, additive)
    torch.testing.assert_close(out_o, out_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx_o, dx_t, atol=1e-5, rtol=1e-5)
    names = [n for n, _ in theirs.named_parameters()]
    assert len(names) == 16
    for name, got, want in zip(names, grads_in_bert_order(ours, grads_o), grads_t):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=name)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.mark.parametrize("mode", ["eager", "sdpa"])
def test_ours_as_bert_bfloat16_within_bert_layers_own_error(mode):
    # As for torch's layer (test_layer_equivalence): the bound comes from BertLayer's own bf16 error on this
    # machine against the float32 reference, 1.5x it plus 0.5% (two bf16 roundings); a wrong kernel is O(100%).
    ours, theirs = make_pair(mode, torch.bfloat16)
    reference, _ = make_pair(mode)
    x = torch.randn(B, N, D, dtype=torch.bfloat16)
    out_o, dx_o, grads_o = forward_backward(ours, x, None)
    out_t, dx_t, grads_t = forward_backward(theirs, x, None)
    out_r, dx_r, grads_r = forward_backward(reference, x.float(), None)

    def bound(theirs_error: float) -> float:
        return 1.5 * theirs_error + 0.005

    assert relative_error(out_o, out_r) <= bound(relative_error(out_t, out_r))
    assert relative_error(dx_o, dx_r) <= bound(relative_error(dx_t, dx_r))
    refs = grads_in_bert_order(reference, grads_r)
    for got, theirs_grad, ref in zip(grads_in_bert_order(ours, grads_o), grads_t, refs, strict=True):
        assert relative_error(got, ref) <= bound(relative_error(theirs_grad, ref))


def run_grid(tmp_path: Path, impls: str, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/",
        "-p",
        "no:cacheprovider",
        "-q",
        "--profile",
        "quick",
        "--set",
        "seq_len=64",
        "--set",
        f"{impls}",
        "-k",
        "layer or attention",
        f"--benchmark-json={out}",
        *extra,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return result, (json.loads(out.read_text()) if out.exists() else {})


@pytest.mark.slow
def test_hf_cells_are_checked_observed_and_measured(tmp_path):
    result, data = run_grid(
        tmp_path,
        "layer.impl=ours_bert,hf_bert_eager,hf_bert_sdpa",
        ("--set", "attention.impl=sdpa", "--set", "layer.dropout=0.0"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = {
        (b["extra_info"]["impl"], b["extra_info"]["mode"]): b["extra_info"]
        for b in data["benchmarks"]
        if b["extra_info"]["group"] == "layer"
    }
    assert set(cells) == {(i, p) for i in ("ours_bert", "hf_bert_eager", "hf_bert_sdpa") for p in ("eval", "train")}
    for (impl, _), extra in cells.items():
        assert extra["check_passed"] and extra["check_relative_error"] < 1e-5 and extra["reference"] == "bert"
        assert extra["flops_counted"] > 0 and extra["flops_analytic"] > 0 and extra["peak_mem_bytes"] > 0
        assert extra["predicted_mem_bytes"] > 0
        # HF eager runs the explicit softmax, HF sdpa SDPA's CPU backend (flash without dropout)
        assert extra["attention_kernel"] == {"hf_bert_eager": "naive"}.get(impl, "flash"), impl


@pytest.mark.slow
def test_a_module_of_any_layout_is_measured_through_its_hook(tmp_path):
    impls = "attention.impl=examples.qkv_attention:make,examples.qkv_attention:make_without_hook"
    result, data = run_grid(tmp_path, impls, ("--set", "layer.impl=ours", "--set", "attention.pass=forward"))
    measured = {b["extra_info"]["impl"] for b in data["benchmarks"] if b["extra_info"]["group"] == "attention"}
    assert measured == {"examples.qkv_attention:make"}
    assert "examples.qkv_attention:make_without_hook: cannot load the reference weights" in result.stdout
    assert "define load_reference(self, reference)" in result.stdout


@pytest.mark.slow
def test_a_run_without_hf_cells_never_imports_transformers():
    code = (
        "import sys, pytest; code = pytest.main(['bench/', '-q', '-p', 'no:cacheprovider', '--profile', 'quick', "
        "'--set', 'seq_len=64', '-k', 'layer and ours and eval', '--benchmark-disable']); "
        "print('TRANSFORMERS', 'transformers' in sys.modules); sys.exit(int(code))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "TRANSFORMERS False" in result.stdout


def test_dropout_sits_where_berts_does():
    from torch import nn

    ours = EncoderLayer(D, H, F, 0.1, **BERT_STYLE)
    theirs = HFBertLayer(D, H, F, 0.1, "eager")
    ours_p = sorted([m.p for m in ours.modules() if isinstance(m, nn.Dropout)] + [ours.self_attn.dropout])
    # BERT: attention probabilities, after the attention's output projection, after the feed-forward's
    assert ours_p == sorted(m.p for m in theirs.modules() if isinstance(m, nn.Dropout)) == [0.1] * 3
    assert isinstance(ours.ff.dropout, nn.Identity)  # none between the activation and the second linear
