"""Toy tasks, the training harness and the train command."""

import json

import pytest
import torch

from experiments import train
from experiments.tasks import IGNORE, TASKS, make_task
from experiments.trainer import TrainConfig, Trainer, evaluate, load_model, save_model, warmup_cosine

TINY = {"d_model": 32, "n_heads": 2, "d_ff": 64, "n_layers": 1, "batch_size": 32, "eval_examples": 128}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_is_deterministic_per_seed(name):
    task = make_task(name)
    a = task.batch(8, 6, 12, torch.Generator().manual_seed(3))
    b = task.batch(8, 6, 12, torch.Generator().manual_seed(3))
    c = task.batch(8, 6, 12, torch.Generator().manual_seed(4))
    for x, y in zip((a.inputs, a.targets, a.padding_mask), (b.inputs, b.targets, b.padding_mask)):
        assert torch.equal(x, y)
    assert not torch.equal(a.inputs, c.inputs)


def test_task_targets_are_what_they_claim():
    g = torch.Generator().manual_seed(0)
    rev = make_task("reverse").batch(4, 7, 7, g)
    assert torch.equal(rev.targets, rev.inputs.flip(-1))
    srt = make_task("sort").batch(4, 7, 7, g)
    assert torch.equal(srt.targets, srt.inputs.sort(-1).values)
    recall = make_task("recall").batch(4, 9, 9, g)
    for x, y in zip(recall.inputs, recall.targets):
        key_at = (x[:-1:2] == x[-1]).nonzero().item()
        assert y[-1] == x[2 * key_at + 1] and (y[:-1] == IGNORE).all()


def test_variable_length_batches_pad_and_mask():
    batch = make_task("copy").batch(16, 3, 9, torch.Generator().manual_seed(0))
    lengths = (~batch.padding_mask).sum(-1)
    assert lengths.min() >= 3 and lengths.max() <= 9 and batch.inputs.shape == (16, 9)
    assert (batch.inputs[batch.padding_mask] == 0).all() and (batch.targets[batch.padding_mask] == IGNORE).all()


def test_bad_lengths_and_task_names_are_named():
    with pytest.raises(ValueError, match=r"unknown task 'nosuch'; choose one of copy, reverse"):
        make_task("nosuch")
    with pytest.raises(ValueError, match=r"min_len=0, max_len=5"):
        make_task("copy").batch(2, 0, 5, torch.Generator())
    with pytest.raises(ValueError, match=r"seq_len=0 must be a positive integer"):
        TrainConfig(seq_len=0)


def test_tiny_model_learns_copy():
    trainer = Trainer(TrainConfig(task="copy", seq_len=8, steps=150, lr=3e-3, **TINY))
    before = evaluate(trainer.model, trainer.task, 8, 128, "cpu")["token_accuracy"]
    trainer.run(progress=False)
    after = evaluate(trainer.model, trainer.task, 8, 128, "cpu")
    assert before < 0.3 and after["token_accuracy"] > 0.99
    assert trainer.state.losses[-1] < trainer.state.losses[0] / 10


def test_resume_reproduces_the_loss_trajectory_exactly(tmp_path):
    config = TrainConfig(task="reverse", seq_len=8, min_len=4, steps=40, dropout=0.1, **TINY)
    straight = Trainer(config)
    straight.run(progress=False)
    first = Trainer(config)
    first.run(until=17, checkpoint=tmp_path / "ckpt.pt", progress=False)
    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore it
    resumed = Trainer.load(tmp_path / "ckpt.pt")
    resumed.run(progress=False)
    assert resumed.state.step == 40
    assert resumed.state.losses == straight.state.losses  # bit for bit, dropout included


def test_saved_model_reloads(tmp_path):
    trainer = Trainer(TrainConfig(task="sine", steps=5, **TINY))
    trainer.run(progress=False)
    save_model(trainer, tmp_path / "m.pt")
    model, config = load_model(tmp_path / "m.pt")
    x = trainer.task.batch(2, 16, 16, torch.Generator().manual_seed(0))
    trainer.model.eval()
    torch.testing.assert_close(model(x.inputs), trainer.model(x.inputs))


class _RunsWhenLoaded:
    """What a hostile checkpoint carries: an object whose unpickling calls a function of its choosing."""

    def __reduce__(self):
        return (print, ("this ran while the checkpoint loaded",))


def test_a_checkpoint_carrying_code_is_refused_and_every_one_the_project_writes_loads(tmp_path, capsys):
    trainer = Trainer(TrainConfig(task="sine", steps=3, **TINY))
    trainer.run(progress=False, checkpoint=tmp_path / "out" / "checkpoint.pt")
    save_model(trainer, tmp_path / "m.pt")
    assert Trainer.load(tmp_path / "out" / "checkpoint.pt").state.step == 3  # both kinds load as data
    load_model(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    payload["state"]["note"] = _RunsWhenLoaded()
    torch.save(payload, tmp_path / "out" / "checkpoint.pt")
    with pytest.raises(ValueError, match="is refused: loading it would run code"):
        Trainer.load(tmp_path / "out" / "checkpoint.pt")
    with pytest.raises(ValueError, match="is refused"):
        torch.save({"model": _RunsWhenLoaded()}, tmp_path / "m.pt") or load_model(tmp_path / "m.pt")
    flags = ["--task", "sine", "--steps", "3", "--d-model", "16", "--n-heads", "2", "--n-layers", "1"]
    code = train.main([*flags, "--out", str(tmp_path / "out"), "--resume", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and "this ran" not in out + err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "is refused" in err


def test_schedule_warms_up_then_decays():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_cli_trains_and_writes_metrics(tmp_path, capsys):
    code = train.main(
        [
            "--task",
            "copy",
            "--seq-len",
            "6",
            "--steps",
            "20",
            "--d-model",
            "32",
            "--n-heads",
            "2",
            "--n-layers",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--eval-lengths",
            "6",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 20 and len(metrics["losses"]) == 20 and "6" in metrics["eval"]
    assert (tmp_path / "checkpoint.pt").exists()
    assert "eval at length 6" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--task", "nosuch"], "invalid choice: 'nosuch'"),
        (["--seq-len", "0"], "--seq-len: must be a positive integer, got '0'"),
        (["--steps", "-5"], "--steps: must be a positive integer, got '-5'"),
        (["--pos-encoding", "xpos"], "invalid choice: 'xpos'"),
    ],
)
def test_cli_bad_flags_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_values_past_parsing(tmp_path, capsys):
    assert train.main(["--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "device='tpu' is not supported" in capsys.readouterr().err
    assert train.main(["--resume", "--out", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
