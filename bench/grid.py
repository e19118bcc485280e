"""The benchmark grid: profiles from grids.toml, overrides, cells, and why a cell cannot run."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

GRIDS_FILE = Path(__file__).with_name("grids.toml")
GROUPS = ("attention", "layer", "train_step", "calibration")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
IMPLS = {"attention": ("naive", "sdpa", "torch_mha"), "layer": ("ours", "ours_naive", "torch"),
         "train_step": ("naive", "sdpa")}  # fmt: skip
PASSES = {"attention": ("forward", "train"), "layer": ("eval", "train")}
# Which axes each group varies over, beyond the shared seq_len/heads/dtype/device.
GROUP_AXES = {
    "attention": ("impl", "pass"),
    "layer": ("impl", "pass", "dropout"),
    "train_step": ("impl",),
    "calibration": (),
}
SHARED_AXES = ("seq_len", "heads", "dtype", "device")


class GridError(ValueError):
    """A bad profile, axis or value: the message lists what is accepted."""


@dataclass(frozen=True)
class Shape:
    batch: int
    d_model: int
    d_ff: int
    model_layers: int
    model_vocab: int


@dataclass(frozen=True)
class Timing:
    budget_s: float
    min_rounds: int
    max_rounds: int
    warmup_rounds: int


@dataclass(frozen=True)
class Cell:
    group: str
    device: str
    dtype: str
    seq_len: int = 0
    heads: int = 0
    impl: str = ""
    pass_: str = ""
    dropout: float = 0.0

    @property
    def id(self) -> str:
        parts = [self.device, self.dtype]
        if self.group != "calibration":
            parts += [f"n{self.seq_len}", f"h{self.heads}", self.impl]
        if self.pass_:
            parts.append(self.pass_)
        if self.group == "layer" and self.pass_ == "train":
            parts.append(f"p{self.dropout:g}")
        return "-".join(parts)

    @property
    def trace_name(self) -> str:
        """Folder of this cell's profiler trace: unique across groups."""
        return f"{self.group}.{self.id}"

    def params(self) -> dict[str, Any]:
        return {"group": self.group, "device": self.device, "dtype": self.dtype, "seq_len": self.seq_len,
                "heads": self.heads, "impl": self.impl, "pass": self.pass_, "dropout": self.dropout}  # fmt: skip


@dataclass
class Grid:
    profile: str
    description: str
    shape: Shape
    timing: Timing
    axes: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # group -> axis -> values

    def cells(self, group: str) -> list[Cell]:
        axes = self.axes[group]
        if group == "calibration":
            return [Cell(group, dev, dt) for dev, dt in itertools.product(axes["device"], axes["dtype"])]
        out = []
        names = SHARED_AXES + GROUP_AXES[group]
        for values in itertools.product(*(axes[name] for name in names)):
            v = dict(zip(names, values))
            if group == "layer" and v["pass"] == "eval" and v["dropout"] != 0.0:
                continue  # eval ignores dropout: that cell would repeat the dropout-0 one
            out.append(Cell(group, v["device"], v["dtype"], v["seq_len"], v["heads"], v["impl"],
                            v.get("pass", ""), v.get("dropout", 0.0)))  # fmt: skip
        return out


def _parse_value(axis: str, text: str) -> Any:
    try:
        return {"seq_len": int, "heads": int, "dropout": float}.get(axis, str)(text)
    except ValueError:
        raise GridError(
            f"axis {axis!r}: {text!r} is not a {'number' if axis == 'dropout' else 'whole number'}"
        ) from None


def _check_values(group: str, axis: str, values: list[Any], d_model: int) -> None:
    allowed = {"dtype": DTYPES, "device": DEVICES, "impl": IMPLS.get(group, ()), "pass": PASSES.get(group, ())}.get(
        axis
    )
    if not values:
        raise GridError(f"axis {axis!r} of group {group!r} is empty: give at least one value")
    for value in values:
        if allowed is not None and value not in allowed:
            raise GridError(f"{group}.{axis}={value!r} is not accepted; choose from {', '.join(allowed)}")
        if axis == "seq_len" and value <= 0:
            raise GridError(f"seq_len={value} must be a positive whole number")
        if axis == "heads" and (value <= 0 or d_model % value):
            ok = [h for h in range(1, d_model + 1) if d_model % h == 0]
            raise GridError(f"heads={value} must divide d_model={d_model}; choose from {ok}")
        if axis == "dropout" and not 0.0 <= value < 1.0:
            raise GridError(f"dropout={value} must be in [0, 1)")


def load_grid(profile: str, overrides: list[str] = (), path: Path = GRIDS_FILE) -> Grid:
    """The named profile with `AXIS=V1,V2` or `GROUP.AXIS=V1,V2` overrides applied."""
    data = tomllib.loads(path.read_text())
    profiles = data["profiles"]
    if profile not in profiles:
        raise GridError(f"--grid {profile!r} is not a profile; choose from {', '.join(profiles)}")
    spec = profiles[profile]
    shape, timing = Shape(**data["shape"]), Timing(**{**data["timing"], **spec.get("timing", {})})
    shared = {axis: list(spec[axis]) for axis in SHARED_AXES}
    axes = {}
    for group in GROUPS:
        table = spec.get(group, {})
        axes[group] = {**shared, **{axis: list(table.get(axis, ())) for axis in GROUP_AXES[group]}}
        axes[group].update({axis: list(table[axis]) for axis in SHARED_AXES if axis in table})
        axes[group].setdefault("dropout", [0.0])
    for item in overrides:
        key, sep, text = item.partition("=")
        group, _, axis = key.rpartition(".")
        known = SHARED_AXES + ("impl", "pass", "dropout")
        if not sep or axis not in known or (group and group not in GROUPS) or not text:
            raise GridError(f"override {item!r} is malformed; write AXIS=V1,V2 or GROUP.AXIS=V1,V2 with AXIS one of "
                            f"{', '.join(known)} and GROUP one of {', '.join(GROUPS)}")  # fmt: skip
        values = [_parse_value(axis, v.strip()) for v in text.split(",")]
        for g in [group] if group else GROUPS:
            if axis in SHARED_AXES or axis in GROUP_AXES[g]:
                axes[g][axis] = values
    for group, group_axes in axes.items():
        for axis in SHARED_AXES + GROUP_AXES[group]:
            _check_values(group, axis, group_axes[axis], shape.d_model)
    return Grid(profile, spec.get("description", ""), shape, timing, axes)
