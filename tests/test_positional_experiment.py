"""The positional-encoding experiment end to end, at a size that runs in seconds."""

import csv
import json

import pytest

from analysis.positional_summary import write_summary
from experiments import positional_experiment
from infra.machine import machine_facts

ARGS = ["--tasks", "reverse", "--encodings", "learned", "none", "--seeds", "2", "--steps", "5", "--workers", "1"]


@pytest.mark.slow
def test_experiment_writes_tidy_rows_summary_and_checkpoints(tmp_path, capsys):
    assert positional_experiment.main([*ARGS, "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(rows) == 2 * 2 * 4  # encodings x seeds x evaluation lengths
    assert {r["eval_length"] for r in rows} == {"16", "24", "32", "64"}
    untrained = {(r["pos_encoding"], r["eval_length"]) for r in rows if r["untrained_positions"] == "True"}
    assert untrained == {("learned", "24"), ("learned", "32"), ("learned", "64")}
    assert "never received a gradient" in (tmp_path / "summary.md").read_text()  # the experiment writes it
    summary = write_summary(tmp_path).read_text()  # the words come from analysis/, the data from model/
    assert "never received a gradient" in summary and "bag-of-tokens baseline" in summary
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["reverse-learned.pt", "reverse-none.pt"]
    # A second run finds every run cached and trains nothing.
    assert positional_experiment.main([*ARGS, "--out", str(tmp_path)]) == 0
    assert "0 runs to train (4 cached)" in capsys.readouterr().out


def test_a_folder_another_machine_wrote_is_refused(tmp_path, capsys):
    theirs = {**machine_facts(), "cpu_model_number": -1}
    (tmp_path / "machine.json").write_text(json.dumps(theirs))
    assert positional_experiment.main([*ARGS, "--out", str(tmp_path)]) == 2
    assert "holds another machine's runs (machine.json: cpu_model_number: -1 vs" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["machine.json"]


def test_experiment_rejects_bad_values(tmp_path, capsys):
    assert positional_experiment.main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds=0" in capsys.readouterr().err


def test_holding_past_l_is_judged_only_where_the_task_was_learned():
    import pandas as pd

    from analysis.positional_summary import holds_word

    def row(acc_l, drop, low, high):
        return pd.Series({"acc_L": acc_l, "drop": drop, "drop_low": low, "drop_high": high})

    assert holds_word(row(0.99, 0.02, 0.0, 0.05)) == "holds"
    assert holds_word(row(1.0, 0.85, 0.8, 0.9)) == "collapses"
    assert holds_word(row(0.99, 0.3, 0.2, 0.4)) == "degrades"
    assert holds_word(row(0.99, 0.2, 0.05, 0.35)) == "unclear"
    assert "did not learn the task at L" in holds_word(row(0.28, 0.05, 0.04, 0.06))


def test_a_report_finds_its_own_machines_experiment_else_another_one(tmp_path):
    from analysis.positional_summary import positional_folder

    assert positional_folder(tmp_path, "cpu-x") == tmp_path / "positional"  # none: the old name, absent
    for name in ("positional-cpu-a", "positional-cpu-b", "positional-cpu-c-empty"):
        (tmp_path / name).mkdir()
    for name in ("positional-cpu-a", "positional-cpu-b"):
        (tmp_path / name / "runs.csv").write_text("task\n")
    assert positional_folder(tmp_path, "cpu-a") == tmp_path / "positional-cpu-a"
    assert positional_folder(tmp_path, "cuda-h100") == tmp_path / "positional-cpu-b"  # the last one with runs
    assert positional_folder(tmp_path, None) == tmp_path / "positional-cpu-b"
