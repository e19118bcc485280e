"""Grid declaration, generation, overrides, interleaved passes and skip reasons (no timing)."""

import pytest

from bench.cell import FACTS_PASS
from bench.conftest import pass_order
from bench.grid import GROUPS, Cell, GridError, load_grid
from bench.skips import skip_reason
from model.config import POS_ENCODINGS


def test_default_profile_covers_what_the_issues_ask():
    grid = load_grid("default")
    attention = grid.cells("attention")
    assert len({c.seq_len for c in attention}) >= 5 and len({c.heads for c in attention}) >= 3
    assert len({c.dtype for c in attention}) >= 2 and {"naive", "sdpa"} <= {c.impl for c in attention}
    assert {c.mode for c in attention} == {"forward", "train"}
    layer = grid.cells("layer")
    assert {(c.impl, c.mode, c.dropout) for c in layer} >= {
        ("ours", "train", 0.1),
        ("torch", "train", 0.0),
        ("torch", "eval", 0.0),
        ("ours_auto", "eval", 0.0),
    }
    assert {c.pos_encoding for c in layer} == set(POS_ENCODINGS)  # every encoding is costed
    assert {c.compile for c in layer} == {"eager", "inductor"}
    assert grid.passes == 8 and load_grid("quick").passes == 1 and load_grid("cuda").passes == 3
    # every length-scaling series (one head: the n/(n/2) comparison) keeps at least 5 lengths
    series: dict[tuple, set[int]] = {}
    for c in attention:
        if c.heads == 1 and not c.variant:
            series.setdefault((c.impl, c.mode, c.dtype), set()).add(c.seq_len)
    assert len(series) == 12 and all(len(lengths) >= 5 for lengths in series.values()), series


def test_cuda_profile_has_both_shapes_and_bf16_to_8192_at_the_large_one():
    grid = load_grid("cuda")
    large = [c for g in GROUPS for c in grid.cells(g) if c.shape == "bert_large"]
    assert {c.group for c in large} == {"attention", "layer", "train_step"}
    assert max(c.seq_len for c in large if c.dtype == "bfloat16") >= 8192
    shape = grid.shapes["bert_large"]
    assert (shape.batch, shape.d_model, shape.d_ff) == (8, 1024, 4096) and {c.heads for c in large} == {16}
    assert {c.compile for c in large} == {"eager", "inductor", "cudagraph"}
    assert max(c.seq_len for c in grid.cells("attention")) >= 8192
    assert {c.device for g in GROUPS for c in grid.cells(g)} == {"cuda"}
    assert len(grid.cells()) < 455  # the first run's size, at 3 passes


def test_full_profile_is_the_cartesian_product():
    grid = load_grid("full")
    block = grid.blocks[0]
    expected = 1
    for axis in ("seq_len", "heads", "dtype", "device", "impl", "mode"):
        expected *= len(block[axis])
    assert len(grid.cells("attention")) == expected


def test_cells_are_unique_and_inference_is_not_repeated_per_dropout():
    grid = load_grid("default")
    cells = grid.cells()
    assert len({c.trace_name for c in cells}) == len(cells)
    assert not [c for c in cells if c.mode in ("eval", "forward") and c.dropout > 0]


def test_overrides_apply_to_all_groups_or_one():
    grid = load_grid("quick", ["seq_len=64,96", "layer.impl=torch"])
    assert {c.seq_len for g in ("attention", "layer", "train_step") for c in grid.cells(g)} == {64, 96}
    assert {c.impl for c in grid.cells("layer")} == {"torch"}
    assert {c.impl for c in grid.cells("attention")} == {"naive", "sdpa", "torch_mha"}
    assert {c.group for c in grid.cells()} == {"attention", "layer", "train_step"}  # the matmul peak is no cell
    assert load_grid("quick", passes=4).passes == 4


def test_a_user_implementation_is_accepted_by_name():
    grid = load_grid("quick", ["attention.impl=sdpa,mypkg.attn:make"])
    assert {c.impl for c in grid.cells("attention")} == {"sdpa", "mypkg.attn:make"}
    assert "mypkg.attn:make" in grid.cells("attention")[-1].id


@pytest.mark.parametrize(
    "profile,overrides,message",
    [
        ("nosuch", [], r"--profile 'nosuch' is not a profile; choose from quick, default, full, cuda"),
        ("quick", ["seq_len"], r"override 'seq_len' is malformed; write AXIS=V1,V2"),
        ("quick", ["colour=red"], r"AXIS one of seq_len, heads, dtype"),
        ("quick", ["seq_len=12x"], r"'12x' is not a whole number"),
        ("quick", ["seq_len=-4"], r"seq_len=-4 must be a positive"),
        ("quick", ["heads=3"], r"heads=3 must divide d_model=256 of shape 'small'; choose from \[1, 2, 4"),
        ("quick", ["dtype=float8"], r"'float8' is not accepted; choose from float32, bfloat16, float16"),
        ("quick", ["device=tpu"], r"'tpu' is not accepted; choose from cpu, cuda"),
        (
            "quick",
            ["layer.impl=flash"],
            r"layer.impl='flash' is not accepted; choose from ours, ours_naive, ours_auto, ours_flex, "
            r"torch, ours_bert, hf_bert_eager, hf_bert_sdpa or a user implementation "
            r"module.path:factory",
        ),
        (
            "quick",
            ["train_step.impl=a.b:c"],
            r"train_step.impl='a.b:c' is not accepted; choose from naive, sdpa, "
            r"auto$",
        ),
        ("quick", ["layer.pos_encoding=xpos"], r"'xpos' is not accepted; choose from sinusoidal, learned"),
        ("quick", ["layer.compile=jit"], r"'jit' is not accepted; choose from eager, inductor, cudagraph"),
        ("quick", ["shape=huge"], r"'huge' is not accepted; choose from small, bert_large"),
        ("quick", ["nogroup.impl=sdpa"], r"GROUP one of attention, layer"),
        # an override its group ignores is one line naming the group's fixed axes, never a silent no-op
        ("quick", ["layer.kv_heads=2"], r"'layer.kv_heads=2' changes nothing: group 'layer' fixes kv_heads, window"),
        ("quick", ["layer.window=16"], r"'layer.window=16' changes nothing: group 'layer' fixes kv_heads, window"),
        ("quick", ["attention.dropout=0.5"], r"changes nothing: group 'attention' fixes dropout, pos_encoding"),
        ("quick", ["train_step.varlen=padded"], r"changes nothing: group 'train_step' fixes mode, kv_heads"),
    ],
)
def test_bad_grid_input_names_what_is_accepted(profile, overrides, message):
    with pytest.raises(GridError, match=message):
        load_grid(profile, overrides)


def test_bad_repeats():
    with pytest.raises(GridError, match=r"--passes 0 is not accepted; give a whole number of passes, 1 or more"):
        load_grid("quick", passes=0)


GRIDS_WITH_A_TIMED_BLOCK = """
[shapes.small]
batch = 2
d_model = 64
d_ff = 128
model_layers = 1
model_vocab = 16

[timing]
budget_s = 0.25
min_rounds = 5
max_rounds = 40
warmup_rounds = 1

[profiles.p]
seq_len = [64]
heads = [4]
dtype = ["float32"]
device = ["cpu"]
shape = ["small"]
  [[profiles.p.blocks]]
  group = "layer"
  impl = ["ours_auto"]
  mode = ["eval"]
  timing = { TIMING }
  [[profiles.p.blocks]]
  group = "layer"
  impl = ["ours", "ours_auto", "torch"]
  mode = ["eval"]
"""


def test_a_block_times_the_cells_it_declares_first_with_its_own_timing(tmp_path):
    from bench.sharding import overhead_s, pass_seconds

    path = tmp_path / "grids.toml"
    path.write_text(GRIDS_WITH_A_TIMED_BLOCK.replace("TIMING", "min_rounds = 128, max_rounds = 128"))
    grid = load_grid("p", path=path)
    by_impl = {c.impl: c for c in grid.cells()}
    assert (
        grid.timing_for(by_impl["ours_auto"]).min_rounds == 128
        and grid.timing_for(by_impl["ours_auto"]).budget_s == 0.25
    )
    assert grid.timing_for(by_impl["ours"]) == grid.timing == grid.timing_for(by_impl["torch"])
    # the cost model prices the blocks each cell will buy: 64 ABBA blocks beside torch, against at most 20
    heavy = pass_seconds(by_impl["ours_auto"], grid, 0, partner=by_impl["torch"]) - overhead_s(by_impl["ours"])
    light = pass_seconds(by_impl["ours"], grid, 0, partner=by_impl["torch"]) - overhead_s(by_impl["ours"])
    assert heavy > 2.5 * light
    for bad, message in (
        ("rounds = 3", r"block timing key 'rounds' is not accepted; choose from budget_s, min_rounds"),
        ("min_rounds = 0", r"block timing min_rounds=0 must be a positive whole number"),
        ("budget_s = -1", r"block timing budget_s=-1 must be a positive number of seconds"),
    ):
        path.write_text(GRIDS_WITH_A_TIMED_BLOCK.replace("TIMING", bad))
        with pytest.raises(GridError, match=message):
            load_grid("p", path=path)


class Item:
    def __init__(self, cell: Cell, repeat: int) -> None:
        self.callspec = type("CallSpec", (), {"params": {"cell": cell, "pass_index": repeat}})()


def test_passes_interleave_each_groups_facts_come_first_and_compiled_cells_come_last():
    a, b = (
        Cell("layer", "cpu", "float32", "small", 64, 4, "ours", "train"),
        Cell("layer", "cpu", "float32", "small", 64, 4, "torch", "train"),
    )
    s = Cell("attention", "cpu", "float32", "small", 64, 4, "sdpa", "train")
    c = Cell("layer", "cpu", "float32", "small", 64, 4, "ours", "train", compile="inductor")
    f = FACTS_PASS
    # collection: cell-major, each cell's untimed facts pass before its timed ones
    items = [Item(c, f), Item(c, 0), Item(s, f), Item(s, 0), Item(s, 1), Item(a, f), Item(a, 0), Item(a, 1)]
    items += [Item(b, f), Item(b, 0), Item(b, 1), Item(c, 1)]
    ordered = sorted(items, key=pass_order)
    params = [i.callspec.params for i in ordered]
    order = [(p["cell"].impl, p["cell"].compile, p["pass_index"]) for p in params]
    assert order == [
        ("sdpa", "eager", f),  # the attention group's facts, then its first timed pass
        ("sdpa", "eager", 0),
        ("ours", "eager", f),  # the layer group's facts after the attention group's first timed pass
        ("torch", "eager", f),
        ("ours", "eager", 0),
        ("torch", "eager", 0),
        ("sdpa", "eager", 1),
        ("ours", "eager", 1),
        ("torch", "eager", 1),
        ("ours", "inductor", f),
        ("ours", "inductor", 0),
        ("ours", "inductor", 1),
    ]


def cell(**kw):
    return Cell(
        **{
            "group": "layer",
            "device": "cpu",
            "dtype": "float32",
            "seq_len": 256,
            "heads": 4,
            "impl": "ours",
            "mode": "train",
            **kw,
        }
    )


SHAPE = load_grid("quick").shapes["small"]


def test_skip_reasons():
    big = 2**40
    assert skip_reason(cell(), SHAPE, big, cuda_available=False, cpu_flags=[]) is None
    assert skip_reason(cell(device="cuda"), SHAPE, big, cuda_available=False).startswith("no cuda")
    fp16 = skip_reason(cell(dtype="float16"), SHAPE, big, cpu_flags=["avx2", "avx512f"])
    assert fp16.startswith("unsupported: float16") and "--allow-slow-fp16" in fp16
    assert skip_reason(cell(dtype="float16"), SHAPE, big, cpu_flags=["avx512_fp16"]) is None
    assert skip_reason(cell(dtype="float16"), SHAPE, big, allow_slow_fp16=True, cpu_flags=[]) is None
    assert "no hook to rotate" in skip_reason(cell(impl="torch", pos_encoding="rope"), SHAPE, big, cpu_flags=[])
    assert skip_reason(cell(impl="torch", pos_encoding="alibi"), SHAPE, big, cpu_flags=[]) is None
    assert "needs a CUDA device" in skip_reason(cell(compile="cudagraph"), SHAPE, big, cpu_flags=[])
    assert "takes no positional" in skip_reason(cell(impl="a.b:c", pos_encoding="rope"), SHAPE, big, cpu_flags=[])
    # a variant that is the dense cell under another name is said to be so, never timed as a variant
    same = skip_reason(cell(heads=4, kv_heads=4), SHAPE, big, cpu_flags=[])
    assert "kv_heads=4 equals heads=4, the dense cell" in same
    assert skip_reason(cell(heads=4, kv_heads=2), SHAPE, big, cpu_flags=[]) is None
    wide = skip_reason(cell(seq_len=128, window=1000), SHAPE, big, cpu_flags=[])
    assert "window=1000 at n=128 sees every key, the dense cell" in wide
    assert skip_reason(cell(seq_len=512, window=128), SHAPE, big, cpu_flags=[]) is None


def test_memory_skip_names_predicted_and_available_bytes():
    reason = skip_reason(cell(impl="ours_naive", seq_len=8192), SHAPE, 10**6, cuda_available=False, cpu_flags=[])
    assert reason.startswith("would not fit: predicted ") and "> budget 1000000 bytes" in reason


def test_every_group_has_cells_in_quick():
    grid = load_grid("quick")
    assert all(grid.cells(g) for g in GROUPS)
