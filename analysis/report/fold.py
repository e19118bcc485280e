"""A report a learner reads in five minutes: each section keeps its question (the heading), its answer (the first
paragraph) and, where it is short, its one table in view; the rest of it, full tables and methods, goes into a
collapsed block. REPORT.md shows at most VISIBLE_LIMIT lines outside collapsed blocks."""

from __future__ import annotations

VISIBLE_LIMIT = 200
# A section's first table stays in view where it has at most this many rows: a longer one is a full table.
MAX_VISIBLE_ROWS = 14
SUMMARY = "<details><summary>The full section: every table, and how it was computed</summary>"


def visible_lines(text: str) -> int:
    """Non-blank lines outside <details> blocks: what a reader sees without opening anything (a collapsed
    block's summary line counts)."""
    depth, count = 0, 0
    for line in text.splitlines():
        stripped = line.strip()
        opens, closes = stripped.count("<details"), stripped.count("</details>")
        if stripped and depth == 0:  # a block's opening line, with its summary, is in view
            count += 1
        depth += opens - closes
    return count


def _blocks(lines: list[str]) -> list[list[str]]:
    """The section's lines as blocks separated by blank lines at the top level (a <details> block is one)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    depth = 0
    for line in lines:
        stripped = line.strip()
        depth += stripped.count("<details") - stripped.count("</details>")
        if not stripped and depth == 0:
            if current:
                blocks.append(current)
                current = []
            continue
        current.append(line)
    if current:
        blocks.append(current)
    return blocks


def _is_table(block: list[str]) -> bool:
    return block[0].lstrip().startswith("|")


def fold(lines: list[str], keep_table: bool) -> list[str]:
    """Each `## ` section of `lines` folded alike (fold_one)."""
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    if len(starts) <= 1:
        return fold_one(lines, keep_table)
    out = fold_one(lines[: starts[0]], keep_table) if starts[0] else []
    for begin, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        out += fold_one(lines[begin:end], keep_table)
    return out


def fold_one(lines: list[str], keep_table: bool) -> list[str]:
    """The heading and the first paragraph in view, then (keep_table) the first table where it is short and comes
    next; everything after in one collapsed block. A section with nothing more is returned as it was."""
    if not lines or not lines[0].startswith("## "):
        return lines
    blocks = _blocks(lines[1:])
    shown = 0
    if blocks and not _is_table(blocks[0]) and not blocks[0][0].lstrip().startswith("<details"):
        shown = 1
    if keep_table and shown < len(blocks) and _is_table(blocks[shown]) and len(blocks[shown]) - 2 <= MAX_VISIBLE_ROWS:
        shown += 1
    rest = blocks[shown:]
    out = [lines[0], ""]
    for block in blocks[:shown]:
        out += [*block, ""]
    if rest:
        out += [SUMMARY, ""]
        for block in rest:
            out += [*block, ""]
        out += ["</details>", ""]
    return out
