"""Who every implementation is: the declarative half of bench's registry, which analysis reads too.

An entry says what an implementation is (its group, the attention kernel of ours it runs, the family it
is expected to run, whether it is its group's baseline, the layer it is checked against, how it takes
positions, what it needs); `bench/implementations.py` adds how to build each one. Analysis asks this
module, never an implementation's name, which cells are the baseline, which a user's is held against,
and which are ours. A user implementation (`module.path:factory`) gets an entry from its name alone,
without importing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Groups whose impl may also be a user implementation, named `module.path:factory`.
USER_GROUPS = ("attention", "layer")
USER_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Entry:
    name: str
    group: str
    kernel: str | None = None  # the attention kernel of ours (model.attention's names); None for others'
    # the family it is expected to run before it runs: "kernel" (its kernel's), "sdpa" (SDPA's dispatcher),
    # "torch_mha" (nn.MultiheadAttention's fast path in inference), or a family name
    family_rule: str = "kernel"
    baseline: bool = False  # what the group's other implementations are held against (verdicts)
    user: bool = False
    reference: str = "torch"  # the layer it must equal: "torch" (pre-norm, ReLU) or "bert" (BERT_STYLE)
    positional: str = "ours"  # how it takes positions: "ours" (positional=), "torch" (src_mask), "hf", "none"
    requires: str | None = None  # an optional package it needs (skipped with how to install it, where missing)
    title: str = ""  # how skip lines name it (default: its name)
    training_copies: int = 0  # activations of (batch, n, d_model) it keeps in training beyond the cost model's

    @property
    def label(self) -> str:
        return self.title or self.name


# The names analysis asks for by role: the layer comparisons the report makes.
OURS_LAYER, OURS_AUTO_LAYER, OURS_BERT_LAYER = "ours", "ours_auto", "ours_bert"
HF_BERT_EAGER, HF_BERT_SDPA = "hf_bert_eager", "hf_bert_sdpa"

ENTRIES = (
    Entry("naive", "attention", "naive"),
    Entry("sdpa", "attention", "sdpa"),
    Entry("auto", "attention", "auto"),
    Entry("sdpa_math", "attention", "math"),
    Entry("flex", "attention", "flex", title="flex (torch.compile(flex_attention))"),
    # nn.MultiheadAttention keeps its own copies of q, k and v's projections in training
    Entry("torch_mha", "attention", family_rule="torch_mha", baseline=True, positional="none", training_copies=2),
    Entry(OURS_LAYER, "layer", "sdpa"),
    Entry("ours_naive", "layer", "naive"),
    Entry(OURS_AUTO_LAYER, "layer", "auto"),
    Entry("ours_flex", "layer", "flex", title="ours with flex attention"),
    Entry(
        "torch", "layer", family_rule="torch_mha", baseline=True, positional="torch", title="nn.TransformerEncoderLayer"
    ),
    # BERT's layer: ours configured as BERT beside Hugging Face's, each checked against ours-as-BERT in float32
    Entry(OURS_BERT_LAYER, "layer", "sdpa", reference="bert"),
    Entry(
        HF_BERT_EAGER,
        "layer",
        family_rule="materialised",
        reference="bert",
        positional="hf",
        requires="transformers",
        title="transformers' BertLayer (eager)",
    ),
    Entry(
        HF_BERT_SDPA,
        "layer",
        family_rule="sdpa",
        reference="bert",
        positional="hf",
        requires="transformers",
        title="transformers' BertLayer (sdpa)",
    ),
    # the full model's training step: our encoder with the named attention kernel
    *(Entry(k, "train_step", k) for k in ("naive", "sdpa", "auto")),
)
_BY_KEY = {(e.group, e.name): e for e in ENTRIES}
# The built-ins a user implementation of each group is held against, in the report's column order.
USER_YARDSTICKS = {"attention": ("sdpa", "naive"), "layer": (OURS_LAYER, "ours_naive")}


def is_user(name: str) -> bool:
    return bool(USER_NAME.match(name))


def names(group: str) -> tuple[str, ...]:
    """The built-in implementations of a group, in declaration order."""
    return tuple(name for g, name in _BY_KEY if g == group)


def builtin(group: str, name: str) -> Entry | None:
    return _BY_KEY.get((group, name))


def lookup(group: str, name: str) -> Entry:
    """The entry of implementation `name` in `group`: a built-in's, or a user's made from its name (not
    imported). KeyError for a name that is neither."""
    entry = builtin(group, name)
    if entry is not None:
        return entry
    if group in USER_GROUPS and is_user(name):
        return Entry(name, group, family_rule="sdpa", user=True, positional="none", title=f"user {group} {name}")
    raise KeyError(f"{name!r} is not an implementation of group {group!r}")


def yardsticks(group: str) -> tuple[str, ...]:
    """The built-ins a user implementation of `group` is held against in the report, in its column order."""
    return USER_YARDSTICKS.get(group, ())


def running_auto(group: str, name: str) -> bool:
    """Whether the implementation runs the auto kernel (its choice is made per cell)."""
    entry = builtin(group, name)
    return entry is not None and entry.kernel == "auto"
