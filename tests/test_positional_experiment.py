"""The positional-encoding experiment end to end, at a size that runs in seconds."""

import csv

from analysis.positional_summary import write_summary
from experiments import positional_experiment

ARGS = ["--tasks", "reverse", "--encodings", "learned", "none", "--seeds", "2", "--steps", "5", "--workers", "1"]


def test_experiment_writes_tidy_rows_summary_and_checkpoints(tmp_path, capsys):
    assert positional_experiment.main([*ARGS, "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(rows) == 2 * 2 * 4  # encodings x seeds x evaluation lengths
    assert {r["eval_length"] for r in rows} == {"16", "24", "32", "64"}
    untrained = {(r["pos_encoding"], r["eval_length"]) for r in rows if r["untrained_positions"] == "True"}
    assert untrained == {("learned", "24"), ("learned", "32"), ("learned", "64")}
    summary = write_summary(tmp_path).read_text()  # the words come from analysis/, the data from model/
    assert "never received a gradient" in summary and "bag-of-tokens baseline" in summary
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["reverse-learned.pt", "reverse-none.pt"]
    # A second run finds every run cached and trains nothing.
    assert positional_experiment.main([*ARGS, "--out", str(tmp_path)]) == 0
    assert "0 runs to train (4 cached)" in capsys.readouterr().out


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
