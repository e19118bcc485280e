"""Options renamed for what they mean: the old name keeps working, with one line saying the new one."""

from __future__ import annotations

import argparse
import runpy
import sys
from typing import Any


class Renamed(argparse.Action):
    """An option's old name: sets the new option's value and says, once per use, what to write instead."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 - argparse's own
        print(f"attnbench: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(add_option, new: str, old: str, **kwargs: Any) -> None:
    """`add_option(new, **kwargs)` plus the hidden deprecated `old` writing the same destination.
    `add_option` is argparse's `add_argument` or a pytest option group's `addoption`."""
    add_option(new, **kwargs)
    dest = new.lstrip("-").replace("-", "_")
    add_option(
        old,
        dest=dest,
        action=Renamed,
        new=new,
        type=kwargs.get("type"),
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def run_renamed_module(old: str, new: str) -> None:
    """`python -m OLD` under a module's old name: one line saying the new one, then the new module as __main__
    (by name, so the old package need not import the new one)."""
    print(f"attnbench: python -m {old} is deprecated; use python -m {new}", file=sys.stderr)
    sys.argv[0] = new
    runpy.run_module(new, run_name="__main__", alter_sys=True)
