"""The `auto` attention kernel: its table lookup, its use in the encoder, and the command that measures it."""

import json
import subprocess
import sys

import pytest
import torch

from bench.observe import observe
from model.attention import MultiHeadAttention
from model.kernel_choice import FALLBACK, Choice, KernelChooser, choose, matching_choices, read_table

TABLE = (
    Choice("cpu", "bfloat16", False, False, 256, "naive"),
    Choice("cpu", "bfloat16", False, False, 2048, "flash"),
    Choice("cpu", "bfloat16", True, False, 1024, "math"),
    Choice("cuda", "bfloat16", False, False, 1024, "cudnn"),
)


def test_lookup_takes_the_nearest_measured_length_in_log_space():
    def eval_kernel(device, n):
        return choose(TABLE, device, "bfloat16", n, dropout=False, train=False)

    assert eval_kernel("cpu", 256) == "naive"
    assert eval_kernel("cpu", 600) == "naive"  # log distance to 256 < to 2048
    assert eval_kernel("cpu", 900) == "flash"
    assert choose(TABLE, "cpu", "bfloat16", 64, dropout=False, train=True) == "math"  # the only train entry
    assert eval_kernel("cuda", 4096) == "cudnn"


def test_lookup_falls_back_to_sdpa_where_nothing_was_measured():
    assert choose(TABLE, "cpu", "float32", 256, dropout=False, train=False) == FALLBACK == "sdpa"
    assert choose(TABLE, "cpu", "bfloat16", 256, dropout=True, train=False) == "sdpa"  # dropout: another key
    assert choose((), "cuda", "bfloat16", 256, dropout=False, train=False) == "sdpa"


def test_table_is_read_per_machine_and_checked(tmp_path):
    path = tmp_path / "table.json"
    rows = [
        {
            "device": "cpu",
            "dtype": "float32",
            "train": False,
            "dropout": False,
            "seq_len": 128,
            "kernel": "naive",
            "seconds": {"naive": 1.0},
        }
    ]
    facts = {"cpu_flags": ["avx2"], "cpu_count": 2, "torch_version": "2.13.0"}
    other = {**facts, "cpu_flags": ["avx2", "avx512f"]}
    path.write_text(
        json.dumps(
            {"machines": {"cpu-a": {"facts": facts, "choices": rows}, "cpu-b": {"facts": other, "choices": rows}}}
        )
    )
    here = {"cpu_flags": ["avx2"], "cpu_count": 2, "gpu_name": None, "torch_minor": "2.13"}
    assert matching_choices(read_table(path), here) == (Choice("cpu", "float32", False, False, 128, "naive"),)
    assert matching_choices(read_table(path), {**here, "cpu_count": 4}) == ()
    assert read_table(tmp_path / "none.json") == {"machines": {}}
    rows[0]["kernel"] = "turbo"
    path.write_text(json.dumps({"machines": {"cpu-a": {"choices": rows}}}))
    with pytest.raises(ValueError, match="kernel 'turbo'"):
        read_table(path)


@pytest.mark.parametrize("kernel", ["naive", "flash", "math"])
def test_auto_runs_the_kernel_its_table_names(kernel):
    chooser = KernelChooser({}, (Choice("cpu", "float32", False, False, 32, kernel),))
    attn = MultiHeadAttention(64, 4, 0.0, "auto", chooser).eval()
    x = torch.randn(2, 32, 64)
    reference = MultiHeadAttention(64, 4, 0.0, "naive").eval()
    reference.load_state_dict(attn.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference(x), atol=1e-5, rtol=1e-5)
        assert observe(lambda: attn(x), "cpu").attention_kernel == kernel


@pytest.mark.slow
def test_autotune_writes_this_machines_entry_and_keeps_the_others(tmp_path):
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"machines": {"cuda-other": {"choices": []}}}))
    command = [
        sys.executable,
        "-m",
        "bench.autotune",
        "--device",
        "cpu",
        "--dtypes",
        "float32",
        "--lengths",
        "32",
        "--passes",
        "1",
        "--budget-s",
        "0.005",
        "--table",
        str(table),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    machines = json.loads(table.read_text())["machines"]
    assert "cuda-other" in machines and len(machines) == 2
    entry = next(v for k, v in machines.items() if k.startswith("cpu-"))
    assert {c["train"] for c in entry["choices"]} == {True, False} and entry["facts"]["torch_version"]
    assert all(c["kernel"] in c["seconds"] for c in entry["choices"])


def test_blocked_is_the_naive_arithmetic_a_block_of_queries_at_a_time():
    from model.attention import BLOCK
    from model.positional import ALiBiPositionalEncoding

    torch.manual_seed(0)
    n = 2 * BLOCK + 88  # three blocks, the last one short
    blocked, naive = MultiHeadAttention(64, 4, 0.0, "blocked"), MultiHeadAttention(64, 4, 0.0, "naive")
    naive.load_state_dict(blocked.state_dict())
    padding = torch.zeros(2, n, dtype=torch.bool)
    padding[1, -30:] = True
    alibi = ALiBiPositionalEncoding(4)
    outs = []
    for module in (blocked, naive):
        x = torch.randn(2, n, 64, generator=torch.Generator().manual_seed(1), requires_grad=True)
        y = module(x, padding, alibi)
        y.backward(torch.ones_like(y))
        outs.append((y, x.grad))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert observe(lambda: blocked(torch.randn(2, n, 64)), "cpu").attention_kernel == "blocked"


def test_a_forced_flash_kernel_on_a_cpu_skips_sdpa_kernel_and_matches_sdpa(monkeypatch):
    """The flash kernel without a mask or dropout is the op SDPA's dispatcher reaches, called as it is: entering
    sdpa_kernel each call cost about 0.1 ms (ours_auto slower than ours on the same kernel, issue 40)."""
    import torch.nn.functional as F

    import model.attention as attention

    q, k, v = (torch.randn(2, 4, 64, 16, requires_grad=True) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v)
    expected_grads = torch.autograd.grad(expected.sum(), (q, k, v))

    def refuse(*args, **kwargs):
        raise AssertionError("sdpa_kernel entered")

    monkeypatch.setattr(attention, "sdpa_kernel", refuse)
    out = attention.attention_kernel(q, k, v, None, 0.0, "flash")
    assert torch.equal(out, expected)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(out.sum(), (q, k, v)), expected_grads))
    with pytest.raises(AssertionError, match="sdpa_kernel entered"):  # a mask still goes through the context
        attention.attention_kernel(q, k, v, torch.zeros(64, 64), 0.0, "flash")
