"""The toy-text language model: the corpus is the pinned text and its split keeps validation apart, the
measures have known answers, the CLI trains and samples, and the extrapolation experiment writes its
runs (learned positions past L as not applicable) and a judged summary."""

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.corpus import (
    CORPUS_FILE,
    CORPUS_SHA256,
    MODULE_HEADER,
    Corpus,
    CorpusError,
    bigram_bits,
    load_corpus,
    unigram_bits,
)
from experiments.language_model import NotApplicable, validation_bits
from model import Encoder, EncoderConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_corpus_is_the_pinned_text_and_validation_is_held_out():
    corpus = load_corpus()
    assert corpus.sha256 == CORPUS_SHA256 == hashlib.sha256(CORPUS_FILE.read_bytes()).hexdigest()
    train_modules = set(MODULE_HEADER.findall(corpus.train))
    held_out = set(MODULE_HEADER.findall(corpus.validation))
    assert held_out and train_modules and not train_modules & held_out
    assert len(corpus.train) + len(corpus.validation) == corpus.size_bytes
    assert 0.05 < len(corpus.validation) / corpus.size_bytes < 0.2
    assert corpus.decode(corpus.encode("Return the value.")) == "Return the value."


def test_a_missing_or_different_corpus_trains_nothing(tmp_path):
    with pytest.raises(CorpusError, match="the corpus is missing"):
        load_corpus(tmp_path / "nothing.txt")
    changed = tmp_path / "changed.txt"
    changed.write_bytes(CORPUS_FILE.read_bytes().replace(b"Return", b"Yield", 1))
    with pytest.raises(CorpusError, match="differs from the pinned .*refusing to train on different text"):
        load_corpus(changed)


def test_a_uniform_model_scores_log2_of_its_outputs():
    corpus = load_corpus()
    model = Encoder(
        EncoderConfig(
            d_model=16,
            n_heads=2,
            d_ff=32,
            n_layers=1,
            pos_encoding="alibi",
            vocab_size=len(corpus.vocab) + 1,
            output_size=len(corpus.vocab) + 1,
            causal=True,
        )
    )
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    bits = validation_bits(model, corpus, 64, chars=2048)
    assert bits == pytest.approx(math.log2(len(corpus.vocab) + 1), rel=1e-6)


def test_learned_positions_past_their_table_are_not_a_number():
    corpus = load_corpus()
    model = Encoder(
        EncoderConfig(
            d_model=16,
            n_heads=2,
            d_ff=32,
            n_layers=1,
            pos_encoding="learned",
            max_len=32,
            vocab_size=len(corpus.vocab) + 1,
            output_size=len(corpus.vocab) + 1,
            causal=True,
        )
    )
    assert validation_bits(model, corpus, 32, chars=512) > 0
    with pytest.raises(NotApplicable, match="learned positions are defined up to 32, not 64"):
        validation_bits(model, corpus, 64, chars=512)


def test_baselines_on_known_answers():
    even = Corpus(train="abab" * 100, validation="abba", vocab=("a", "b"), sha256="", size_bytes=0)
    assert unigram_bits(even) == pytest.approx(1.0)  # two characters, equally frequent
    # after 'a' training always saw 'b' (200 of 200, smoothed 201/202); after 'b', 'a' 199 of 200 (200/202)
    want = -(math.log2(201 / 402) + math.log2(201 / 202) + math.log2(1 / 201) + math.log2(200 / 201)) / 4
    assert bigram_bits(even) == pytest.approx(want)


@pytest.mark.slow
def test_the_cli_trains_reports_bits_beside_the_baselines_and_samples(tmp_path):
    command = [
        sys.executable,
        "-m",
        "experiments.lm",
        "--steps",
        "20",
        "--seq-len",
        "32",
        "--d-model",
        "32",
        "--n-layers",
        "1",
        "--batch-size",
        "8",
        "--sample-chars",
        "40",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out bits per character at L=32" in result.stdout
    assert "baselines from the training text: unigram" in result.stdout and "sample: Return the " in result.stdout
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.slow
def test_the_extrapolation_experiment_writes_runs_and_a_judged_summary(tmp_path):
    out = tmp_path / "lm"
    command = [
        sys.executable,
        "-m",
        "experiments.extrapolation",
        "--out",
        str(out),
        "--encodings",
        "alibi",
        "learned",
        "--seeds",
        "2",
        "--steps",
        "4",
        "--seq-len",
        "16",
        "--workers",
        "2",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * 2 * 4 and set(runs["eval_length"]) == {16, 32, 64, 128}
    learned = runs[runs["pos_encoding"] == "learned"]
    assert (learned["applicable"] == (learned["eval_length"] == 16)).all()
    assert learned.loc[~learned["applicable"], "bits_per_char"].isna().all()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "0 runs to train (4 cached)" in again.stdout
    summary = subprocess.run(
        [sys.executable, "-m", "analysis", "extrapolation", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert summary.returncode == 0, summary.stderr[-2000:]
    text = (out / "summary.md").read_text()
    assert "ALiBi's claim" in text and any(f"**{w}**" in text for w in ("met", "missed", "inconclusive"))
    assert "n/a (past its table)" in text and (out / "figures" / "perplexity_vs_length.png").is_file()


@pytest.mark.slow
def test_the_extrapolation_experiment_refuses_another_machines_folder(tmp_path):
    out = tmp_path / "lm"
    out.mkdir()
    (out / "machine.json").write_text('{"cpu_flags": ["avx2", "fma"], "cpu_count": 64}')
    command = [sys.executable, "-m", "experiments.extrapolation", "--out", str(out), "--seeds", "1", "--steps", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "holds another machine's runs" in result.stderr, result.stderr
    assert not (out / "runs").exists()
