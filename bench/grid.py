"""The benchmark grid: profiles from grids.toml, overrides, and the cells they generate."""

from __future__ import annotations

import itertools
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from bench.cell import Cell, Shape
from infra.registry import USER_GROUPS, is_user, names
from model.config import POS_ENCODINGS

GRIDS_FILE = Path(__file__).with_name("grids.toml")
GROUPS = ("attention", "layer", "train_step")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
MODES = {"attention": ("forward", "train"), "layer": ("eval", "train"), "train_step": ("train",)}
COMPILE_MODES = ("eager", "inductor", "cudagraph")
SHARED_AXES = ("seq_len", "heads", "dtype", "device", "shape")
BLOCK_AXES = ("impl", "mode", "dropout", "pos_encoding", "compile", "kv_heads", "window", "varlen")
# What a block gets for an axis it does not name (kv_heads 0: as many as heads; window 0: every key).
BLOCK_DEFAULTS = {
    "dropout": [0.0],
    "pos_encoding": ["none"],
    "compile": ["eager"],
    "kv_heads": [0],
    "window": [0],
    "varlen": ["none"],
}
# Axes a group cannot vary: its only value. The attention variants (grouped key/value heads, a window of keys)
# are cells of the attention group alone so far.
DENSE = {"kv_heads": [0], "window": [0], "varlen": ["none"]}
# A variable-length batch's layouts (bench/varlen.py): padded to n with a key-padding mask, a nested (jagged)
# tensor through SDPA, or packed into one sequence with a document mask; none: every sequence n tokens long.
VARLEN = ("none", "padded", "nested", "packed")
FIXED = {
    "attention": {"dropout": [0.0], "pos_encoding": ["none"]},
    "layer": DENSE,
    "train_step": {"mode": ["train"], **DENSE},
}
INTEGER_AXES = ("seq_len", "heads", "kv_heads", "window")


class GridError(ValueError):
    """A bad profile, axis or value: the message lists what is accepted."""


@dataclass(frozen=True)
class Timing:
    budget_s: float  # per cell and pass
    min_rounds: int
    max_rounds: int
    warmup_rounds: int
    common_mode: bool = False  # CPU: a fixed reference matmul timed after every round (bench ab's passes)


@dataclass
class Grid:
    profile: str
    description: str
    shapes: dict[str, Shape]
    timing: Timing
    passes: int
    blocks: list[dict[str, Any]] = field(default_factory=list)  # each: group and its axis -> values
    time_budget_min: float | None = None  # the profile's budget for the pytest part on a CPU, if it has one
    _block_timing: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def cells(self, group: str | None = None) -> list[Cell]:
        """Every cell of the grid (or of one group) once, in declaration order."""
        seen: dict[str, Cell] = {}
        for block in self.blocks:
            if group is None or block["group"] == group:
                for cell in block_cells(block):
                    seen.setdefault(cell.trace_name, cell)
        return list(seen.values())

    def timing_for(self, cell: Cell) -> Timing:
        """The profile's timing, with the `timing` of the first block that declares the cell over it, where
        that block has its own (the cells a report's verdicts rest on may buy more blocks than the rest)."""
        if self._block_timing is None:
            self._block_timing = {}
            for block in self.blocks:
                for c in block_cells(block):
                    self._block_timing.setdefault(c.trace_name, block.get("timing", {}))
        return replace(self.timing, **self._block_timing.get(cell.trace_name, {}))

    def describe(self) -> dict[str, Any]:
        """What the results JSON records of the grid."""
        return {
            "profile": self.profile,
            "passes": self.passes,
            "timing": asdict(self.timing),
            "time_budget_min": self.time_budget_min,
            "shapes": {name: asdict(s) for name, s in self.shapes.items()},
            "blocks": self.blocks,
        }


def block_cells(block: dict[str, Any]) -> list[Cell]:
    group = block["group"]
    names = SHARED_AXES + BLOCK_AXES
    cells = []
    for values in itertools.product(*(block[name] for name in names)):
        v = dict(zip(names, values))
        if v["mode"] in ("eval", "forward") and v["dropout"] != 0.0:
            continue  # inference ignores dropout: that cell would repeat the dropout-0 one
        cells.append(
            Cell(
                group,
                v["device"],
                v["dtype"],
                v["shape"],
                v["seq_len"],
                v["heads"],
                v["impl"],
                v["mode"],
                v["dropout"],
                v["pos_encoding"],
                v["compile"],
                kv_heads=v["kv_heads"],
                window=v["window"],
                varlen=v["varlen"],
            )
        )
    return cells


def _parse_value(axis: str, text: str) -> Any:
    try:
        return {**dict.fromkeys(INTEGER_AXES, int), "dropout": float}.get(axis, str)(text)
    except ValueError:
        raise GridError(
            f"axis {axis!r}: {text!r} is not a {'number' if axis == 'dropout' else 'whole number'}"
        ) from None


def _allowed(group: str, axis: str, shapes: dict[str, Shape]) -> tuple[str, ...] | None:
    return {
        "dtype": DTYPES,
        "device": DEVICES,
        "shape": tuple(shapes),
        "impl": names(group),  # the registry's (infra/registry.py)
        "mode": MODES.get(group, ()),
        "pos_encoding": tuple(FIXED.get(group, {}).get("pos_encoding", POS_ENCODINGS)),
        "compile": COMPILE_MODES,
        "varlen": tuple(FIXED.get(group, {}).get("varlen", VARLEN)),
    }.get(axis)


def check_block(block: dict[str, Any], shapes: dict[str, Shape]) -> None:
    group = block["group"]
    axes = ("shape", *SHARED_AXES[:-1], *BLOCK_AXES)
    for axis in axes:  # shape first: heads are checked against its d_model
        values, allowed = block[axis], _allowed(group, axis, shapes)
        if not values:
            raise GridError(f"axis {axis!r} of group {group!r} is empty: give at least one value")
        for value in values:
            user_impl = axis == "impl" and group in USER_GROUPS and is_user(str(value))
            if allowed is not None and value not in allowed and not user_impl:
                user_ok = axis == "impl" and group in USER_GROUPS
                extra = " or a user implementation module.path:factory" if user_ok else ""
                raise GridError(f"{group}.{axis}={value!r} is not accepted; choose from {', '.join(allowed)}{extra}")
            if axis == "seq_len" and value <= 0:
                raise GridError(f"seq_len={value} must be a positive whole number")
            if axis == "dropout" and not 0.0 <= value < 1.0:
                raise GridError(f"dropout={value} must be in [0, 1)")
            if axis in ("kv_heads", "window") and value < 0:
                raise GridError(f"{axis}={value} must be 0 (off) or a positive whole number")
        if axis == "heads":
            for name in block["shape"]:
                d_model = shapes[name].d_model
                for value in values:
                    if value <= 0 or d_model % value:
                        ok = [h for h in range(1, d_model + 1) if d_model % h == 0]
                        raise GridError(
                            f"heads={value} must divide d_model={d_model} of shape {name!r}; choose from {ok}"
                        )
        if axis == "kv_heads":
            for heads in block["heads"]:
                for value in values:
                    if value and heads % value:
                        ok = [k for k in range(1, heads + 1) if heads % k == 0]
                        raise GridError(f"kv_heads={value} must divide heads={heads}; choose 0 (all) or one of {ok}")


def _block_timing(profile: str, timing: dict[str, Any]) -> dict[str, Any]:
    """A block's own timing keys, checked: only the per-cell knobs, as positive whole numbers or seconds."""
    allowed = ("budget_s", "min_rounds", "max_rounds", "warmup_rounds")
    for key, value in timing.items():
        if key not in allowed:
            raise GridError(
                f"grid {profile!r}: block timing key {key!r} is not accepted; choose from {', '.join(allowed)}"
            )
        least = 0 if key == "warmup_rounds" else 1e-9
        if not isinstance(value, (int, float)) or value < least or (key != "budget_s" and not isinstance(value, int)):
            kind = "number of seconds" if key == "budget_s" else "whole number"
            raise GridError(f"grid {profile!r}: block timing {key}={value!r} must be a positive {kind}")
    return dict(timing)


RENAMED_AXES = {"pass": "mode"}  # an axis's old name: still accepted, with one line saying the new one


def _apply_override(blocks: list[dict[str, Any]], item: str) -> None:
    key, sep, text = item.partition("=")
    group, _, axis = key.rpartition(".")
    if axis in RENAMED_AXES:
        print(f"attnbench: the axis {axis!r} is deprecated; use {RENAMED_AXES[axis]!r}", file=sys.stderr)
        axis = RENAMED_AXES[axis]
    known = SHARED_AXES + BLOCK_AXES
    if not sep or axis not in known or (group and group not in GROUPS) or not text:
        raise GridError(
            f"override {item!r} is malformed; write AXIS=V1,V2 or GROUP.AXIS=V1,V2 with AXIS one of "
            f"{', '.join(known)} and GROUP one of {', '.join(GROUPS)}"
        )
    values = [_parse_value(axis, v.strip()) for v in text.split(",")]
    named = [block for block in blocks if not group or block["group"] == group]
    takers = [block for block in named if axis not in FIXED.get(block["group"], {})]
    if not named:
        present = sorted({block["group"] for block in blocks})
        raise GridError(f"override {item!r} changes nothing: this profile has no {group} cells; its groups: {present}")
    if not takers:  # every group it reaches holds the axis fixed: one line, never a silent no-op
        fixes = "; ".join(
            f"group {g!r} fixes {', '.join(FIXED[g])}" for g in sorted({b["group"] for b in named}) if g in FIXED
        )
        raise GridError(f"override {item!r} changes nothing: {fixes} (each at one value)")
    for block in takers:
        block[axis] = list(values)


def load_grid(profile: str, overrides: list[str] = (), passes: int | None = None, path: Path = GRIDS_FILE) -> Grid:
    """The named profile with `AXIS=V1,V2` or `GROUP.AXIS=V1,V2` overrides applied to its blocks."""
    data = tomllib.loads(path.read_text())
    profiles = data["profiles"]
    if profile not in profiles:
        raise GridError(f"--profile {profile!r} is not a profile; choose from {', '.join(profiles)}")
    spec = profiles[profile]
    shapes = {name: Shape(name, **values) for name, values in data["shapes"].items()}
    timing = Timing(**{**data["timing"], **spec.get("timing", {})})
    shared = {axis: list(spec[axis]) for axis in SHARED_AXES}
    blocks = []
    for declared in spec["blocks"]:
        group = declared["group"]
        if group not in GROUPS:
            raise GridError(f"grid {profile!r} has a block of group {group!r}; choose from {', '.join(GROUPS)}")
        block = {"group": group, **shared, **BLOCK_DEFAULTS}
        block.update({axis: list(v) for axis, v in declared.items() if axis not in ("group", "timing")})
        if "timing" in declared:
            block["timing"] = _block_timing(profile, declared["timing"])
        block.update(FIXED.get(group, {}))
        block.setdefault("mode", list(MODES[group]))
        blocks.append(block)
    for item in overrides:
        _apply_override(blocks, item)
    for block in blocks:
        check_block(block, shapes)
    passes = spec.get("passes", 1) if passes is None else passes
    if not isinstance(passes, int) or passes < 1:
        raise GridError(f"--passes {passes!r} is not accepted; give a whole number of passes, 1 or more")
    return Grid(profile, spec.get("description", ""), shapes, timing, passes, blocks, spec.get("time_budget_min"))
