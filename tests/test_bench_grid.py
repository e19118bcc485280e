"""Grid declaration, generation, overrides and skip reasons (no timing)."""

import pytest

from bench.grid import GROUPS, Cell, GridError, load_grid
from bench.skips import skip_reason


def test_default_profile_covers_what_the_issue_asks():
    grid = load_grid("default")
    attention = grid.cells("attention")
    assert len({c.seq_len for c in attention}) >= 5
    assert len({c.heads for c in attention}) >= 3
    assert len({c.dtype for c in attention}) >= 2
    assert {"naive", "sdpa"} <= {c.impl for c in attention}
    assert {c.pass_ for c in attention} == {"forward", "train"}
    layer = grid.cells("layer")
    assert {(c.impl, c.pass_, c.dropout) for c in layer} >= {
        ("ours", "train", 0.1),
        ("torch", "train", 0.0),
        ("torch", "eval", 0.0),
    }


def test_full_profile_is_the_cartesian_product():
    grid = load_grid("full")
    axes = grid.axes["attention"]
    expected = 1
    for axis in ("seq_len", "heads", "dtype", "device", "impl", "pass"):
        expected *= len(axes[axis])
    assert len(grid.cells("attention")) == expected
    assert {c.device for c in grid.cells("attention")} == {"cpu", "cuda"}


def test_eval_cells_are_not_repeated_per_dropout():
    cells = load_grid("quick").cells("layer")
    assert not [c for c in cells if c.pass_ == "eval" and c.dropout > 0]
    assert len({c.id for c in cells}) == len(cells)


def test_overrides_apply_to_all_groups_or_one():
    grid = load_grid("quick", ["seq_len=64,96", "layer.impl=torch"])
    assert {c.seq_len for g in ("attention", "layer", "train_step") for c in grid.cells(g)} == {64, 96}
    assert {c.impl for c in grid.cells("layer")} == {"torch"}
    assert {c.impl for c in grid.cells("attention")} == {"naive", "sdpa", "torch_mha"}
    assert {c.device for c in grid.cells("calibration")} == {"cpu"}


@pytest.mark.parametrize(
    "profile,overrides,message",
    [
        ("nosuch", [], r"--grid 'nosuch' is not a profile; choose from quick, default, full, cuda"),
        ("quick", ["seq_len"], r"override 'seq_len' is malformed; write AXIS=V1,V2"),
        ("quick", ["colour=red"], r"AXIS one of seq_len, heads, dtype"),
        ("quick", ["seq_len=12x"], r"'12x' is not a whole number"),
        ("quick", ["seq_len=-4"], r"seq_len=-4 must be a positive"),
        ("quick", ["heads=3"], r"heads=3 must divide d_model=256; choose from \[1, 2, 4"),
        ("quick", ["dtype=float8"], r"'float8' is not accepted; choose from float32, bfloat16, float16"),
        ("quick", ["device=tpu"], r"'tpu' is not accepted; choose from cpu, cuda"),
        ("quick", ["layer.impl=flash"], r"layer.impl='flash' is not accepted; choose from ours, ours_naive, torch"),
        ("quick", ["nogroup.impl=sdpa"], r"GROUP one of attention, layer"),
    ],
)
def test_bad_grid_input_names_what_is_accepted(profile, overrides, message):
    with pytest.raises(GridError, match=message):
        load_grid(profile, overrides)


def cell(**kw):
    return Cell(**{"group": "layer", "device": "cpu", "dtype": "float32", "seq_len": 256, "heads": 4, "impl": "ours",
                   "pass_": "train", **kw})  # fmt: skip


SHAPE = load_grid("quick").shape


def test_skip_reasons():
    big = 2**40
    assert skip_reason(cell(), SHAPE, big, cuda_available=False, cpu_flags=[]) is None
    assert skip_reason(cell(device="cuda"), SHAPE, big, cuda_available=False).startswith("no cuda")
    fp16 = skip_reason(cell(dtype="float16"), SHAPE, big, cpu_flags=["avx2", "avx512f"])
    assert fp16.startswith("unsupported: float16") and "--allow-slow-fp16" in fp16
    assert skip_reason(cell(dtype="float16"), SHAPE, big, cpu_flags=["avx512_fp16"]) is None
    assert skip_reason(cell(dtype="float16"), SHAPE, big, allow_slow_fp16=True, cpu_flags=[]) is None


def test_memory_skip_names_predicted_and_available_bytes():
    reason = skip_reason(cell(impl="ours_naive", seq_len=8192), SHAPE, 10**6, cuda_available=False, cpu_flags=[])
    assert reason.startswith("would not fit: predicted ") and "> budget 1000000 bytes" in reason


def test_every_group_has_cells_in_quick():
    grid = load_grid("quick")
    assert all(grid.cells(g) for g in GROUPS)


def test_cuda_profile_reaches_long_sequences_with_its_own_budget():
    cuda, default = load_grid("cuda"), load_grid("default")
    assert max(c.seq_len for c in cuda.cells("attention")) >= 8192
    assert {c.device for g in GROUPS for c in cuda.cells(g)} == {"cuda"}
    assert cuda.timing.budget_s < default.timing.budget_s
    assert cuda.timing.max_rounds == default.timing.max_rounds
