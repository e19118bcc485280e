"""Markdown helpers shared by the report's sections and compare's report."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd


def md(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt) if len(frame) else "_(none)_"


def rel(path: Path, run_dir: Path) -> str:
    """A link target relative to the report's folder."""
    return os.path.relpath(path, run_dir)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def link(text: str, heading: str) -> str:
    return f"{text} ([more]({anchor(heading)}))"
