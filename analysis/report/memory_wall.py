"""The memory wall: what the explicit softmax needs against flash attention at the longest lengths, in the form
people quote ("x at 1K, y at 2K"), and the accounting of the n² tensors behind the explicit kernel's peak
(model/cost.py's explicit_training_terms), set against the measured peak."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from analysis.markdown import md
from model import cost

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

HEADING = "The memory wall: the explicit softmax against flash attention"
EXPLICIT_IMPL, FUSED_IMPL = "naive", "sdpa"
MIB = 2**20


def memory_shape(cell: Mapping, seq_len: int | None = None) -> cost.MemoryShape:
    """The cost model's shape of a run's cell (at another length, given one)."""
    return cost.MemoryShape(
        int(cell["batch"]),
        int(cell["seq_len"] if seq_len is None else seq_len),
        int(cell["d_model"]),
        int(cell["heads"]),
        int(cell["d_ff"]),
        cost.dtype_bytes(cell["dtype"]),
        "cpu" if cell["device"] == "cpu" else "cuda",
    )


def heads_phrase(heads: int) -> str:
    return f"{heads} head" + ("" if heads == 1 else "s")


def wall_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per device, dtype, mode and head count: the explicit kernel's peak over the fused one's at each length
    both ran, with the fused kernel observed."""
    attention = cells[(cells["group"] == "attention") & (cells["compile"] == "eager")]
    keys = ["device", "dtype", "mode", "heads", "seq_len"]
    explicit = attention[attention["impl"] == EXPLICIT_IMPL]
    fused = attention[attention["impl"] == FUSED_IMPL]
    merged = explicit.merge(fused, on=keys, suffixes=("", "_fused"))
    if merged.empty:
        return pd.DataFrame()
    merged["ratio"] = merged["peak_mem_bytes"] / merged["peak_mem_bytes_fused"]
    merged["explicit_mib"] = merged["peak_mem_bytes"] / MIB
    merged["fused_mib"] = merged["peak_mem_bytes_fused"] / MIB
    columns = [*keys, "explicit_mib", "fused_mib", "ratio", "attention_kernel", "attention_kernel_fused"]
    return merged[columns].sort_values(keys).reset_index(drop=True)


def quoted(table: pd.DataFrame) -> tuple[str, dict] | None:
    """'x3.1 at n=2048, x5.9 at n=4096' for the series that reached furthest (the mode with the longest length,
    training where both reach it; one head, float32 where it ran), and the series' keys."""
    if table.empty:
        return None
    reach = table.groupby("mode")["seq_len"].max()
    pick = table[table["mode"] == max(reach[reach == reach.max()].index)]  # furthest; train before forward
    pick = pick[pick["heads"] == pick["heads"].min()]
    pick = pick[pick["dtype"] == ("float32" if "float32" in set(pick["dtype"]) else sorted(pick["dtype"])[0])]
    series = pick[pick["device"] == pick["device"].iloc[0]].sort_values("seq_len").tail(2)
    text = ", ".join(f"x{r['ratio']:.1f} at n={int(r['seq_len'])}" for r in series.to_dict("records"))
    r0 = series.iloc[-1]
    return text, {k: r0[k] for k in ("device", "dtype", "mode", "heads", "seq_len")}


def accounting(cells: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The explicit kernel's peak in `where`'s mode (forward or training), term by term, beside the measured
    peak, at `where`."""
    row = cells[
        (cells["group"] == "attention")
        & (cells["impl"] == EXPLICIT_IMPL)
        & (cells["compile"] == "eager")
        & (cells["device"] == where["device"])
        & (cells["dtype"] == where["dtype"])
        & (cells["mode"] == where["mode"])
        & (cells["heads"] == where["heads"])
        & (cells["seq_len"] == where["seq_len"])
    ]
    if row.empty or where["mode"] not in ("forward", "train"):
        return pd.DataFrame()
    r = row.iloc[0]
    m = memory_shape(r)
    explicit_terms = cost.explicit_training_terms if where["mode"] == "train" else cost.explicit_inference_terms
    terms = [{"what": w, "count": str(c), "MiB each": e / MIB, "MiB": c * e / MIB} for w, c, e in explicit_terms(m)]
    model = sum(t["MiB"] for t in terms)
    terms.append({"what": "the cost model's peak (the sum)", "count": "", "MiB each": None, "MiB": model})
    measured = r["peak_mem_bytes"] / MIB
    terms.append({"what": "measured peak (bench/memory.py)", "count": "", "MiB each": None, "MiB": measured})
    return pd.DataFrame(terms)


def memory_wall_section(ctx: ReportContext) -> list[str]:
    table = wall_table(ctx.cells)
    found = quoted(table)
    if found is None:
        return []
    text, where = found
    lead = (
        f"Peak memory of {EXPLICIT_IMPL} over {FUSED_IMPL}'s ({where['device']} {where['dtype']} {where['mode']}, "
        f"{heads_phrase(int(where['heads']))}): {text}. The explicit softmax keeps (b, h, n, n) tensors, so its memory "
        "grows as n²; flash attention keeps a log-sum-exp per row, so its memory grows as n."
    )
    # the quoted series' longest cell, and a training step's where the quoted series is the forward
    train = table[
        (table["mode"] == "train")
        & (table["device"] == where["device"])
        & (table["dtype"] == where["dtype"])
        & (table["heads"] == where["heads"])
    ]
    places = [where] + (
        [{**where, "mode": "train", "seq_len": train["seq_len"].max()}]
        if where["mode"] != "train" and len(train)
        else []
    )
    shown, said = [], []
    for place in places:
        terms = accounting(ctx.cells, place)
        if terms.empty:
            continue
        n2 = terms.loc[terms["what"].str.startswith("(b, h, n, n)"), "MiB"].sum()
        measured = float(terms["MiB"].iloc[-1])
        step = "a training step" if place["mode"] == "train" else "the forward"
        said.append(
            f"{step} at n={int(place['seq_len'])}: the n² tensors hold {n2:.1f} MiB, {n2 / measured:.0%} of "
            "its measured peak"
        )
        shown.append(terms.assign(step=f"{place['mode']}, n={int(place['seq_len'])}")[["step", *terms.columns]])
    if not shown:
        return [f"## {HEADING}", "", lead, "", md(table, ".2f"), ""]
    lead += f" The accounting (model/cost.py), {'; '.join(said)}."
    return [f"## {HEADING}", "", lead, "", md(pd.concat(shown, ignore_index=True), ".2f"), "", md(table, ".2f"), ""]
