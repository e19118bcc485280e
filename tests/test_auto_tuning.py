"""Auto on a machine with no measured table: it tunes on first use, keeps the choice in a cache under this
machine's fingerprint, never tunes where timing would be wrong, and never uses another machine's cache."""

import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.observe import observe
from model.attention import MultiHeadAttention
from model.kernel_choice import TUNE_ENV, KernelChooser
from model.kernel_tuning import time_candidates

HERE = {"cpu_flags": ["avx2"], "cpu_count": 2, "gpu_name": None, "torch_minor": "2.13"}


def fake_tune(seconds: dict[str, float], calls: list):
    def tune():
        calls.append(1)
        return seconds

    return tune


def test_first_use_tunes_once_and_the_cache_serves_the_next_process(tmp_path):
    cache = tmp_path / "kernel_choices.json"
    chooser, calls = KernelChooser(HERE, (), cache), []
    assert chooser.lookup("cpu", "bfloat16", 1024, False, False) == ("sdpa", "fallback")
    tune = fake_tune({"naive": 2.1, "blocked": 2.3, "flash": 0.45}, calls)
    assert chooser.choose("cpu", "bfloat16", 1024, False, False, tune) == "flash"
    assert chooser.choose("cpu", "bfloat16", 1000, False, False, tune) == "flash" and len(calls) == 1  # same bucket
    again = KernelChooser(HERE, (), cache)  # a later process on this machine
    assert again.lookup("cpu", "bfloat16", 1024, False, False) == ("flash", "cache")
    assert again.lookup("cpu", "bfloat16", 1024, False, True) == ("sdpa", "fallback")  # another pass: not tuned
    elsewhere = KernelChooser({**HERE, "cpu_flags": ["avx2", "avx512_bf16"]}, (), cache)
    assert elsewhere.lookup("cpu", "bfloat16", 1024, False, False) == ("sdpa", "fallback")
    assert json.loads(cache.read_text())["machines"][chooser.cache_key]["facts"] == HERE


def test_no_tuning_inside_a_measurement_or_when_switched_off(tmp_path, monkeypatch):
    chooser, calls = KernelChooser(HERE, (), tmp_path / "c.json"), []
    with FlopCounterMode(display=False):
        assert chooser.choose("cpu", "float32", 64, False, False, fake_tune({"naive": 1.0}, calls)) == "sdpa"
    monkeypatch.setenv(TUNE_ENV, "0")
    assert chooser.choose("cpu", "float32", 64, False, False, fake_tune({"naive": 1.0}, calls)) == "sdpa"
    assert calls == [] and not (tmp_path / "c.json").exists()


def test_a_clear_loser_is_timed_by_its_first_call_alone():
    calls: dict[str, int] = {}

    def run(kernel: str) -> None:
        calls[kernel] = calls.get(kernel, 0) + 1
        if kernel == "math":
            raise RuntimeError("No available kernel")
        x = torch.randn(256, 256)
        for _ in range(40 if kernel == "naive" else 1):
            x @ x

    seconds = time_candidates(run, "cpu")
    assert calls["naive"] == 1 and calls["flash"] > 1  # 40x the work of the first candidate: one call
    assert "math" not in seconds and set(seconds) == {"flash", "blocked", "naive"}
    assert min(seconds, key=seconds.get) != "naive"


def test_auto_in_a_model_tunes_on_the_calls_shapes_and_runs_its_choice(tmp_path):
    chooser = KernelChooser(HERE, (), tmp_path / "c.json")
    attn = MultiHeadAttention(64, 4, 0.0, "auto", chooser).train()
    x = torch.randn(2, 96, 64, requires_grad=True)
    attn(x).sum().backward()  # training: the tuning times forward and backward, outside this graph
    kernel, source = chooser.lookup("cpu", "float32", 96, False, True)
    row = json.loads((tmp_path / "c.json").read_text())["machines"][chooser.cache_key]["choices"][0]
    assert source == "cache" and row["kernel"] == kernel == min(row["seconds"], key=row["seconds"].get)
    assert {"flash", "naive", "blocked"} <= set(row["seconds"]) and x.grad is not None
    assert observe(lambda: attn(x).sum().backward(), "cpu").attention_kernel == kernel
