"""The report's section on the attention variants, each against the physics the cost model states:
- grouped-query heads (kv_heads < h): the k and v projections and their activations shrink by h / kv_heads, the
  scores do not (every query head still sees every key), so memory and the projection's FLOPs fall, and a kernel
  that repeats k and v to h heads gives part of the memory back;
- a sliding window of w keys: the pairs a query sees grow linearly in n at a fixed w, so a kernel that skips the
  masked blocks grows linearly; one that computes every score and masks after grows as the dense cell does;
- ALiBi inside flex's kernel (a score_mod): no (h, n, n) bias is held, so a layer's memory grows about linearly in
  n, where ALiBi passed to SDPA as a bias tensor grows it about quadratically.
Each comparison is a declared pair of the run (bench/pairs.py): a grouped cell beside the same cell with every
head's own, a window at n beside the window at n/2."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from analysis.fits import describe_exponent, local_exponents, physics_verdict
from analysis.markdown import link, md
from analysis.stats import MARGIN, PAIRED_METHODS, WORDS, cell_ratio, decide, family_confidence
from model.cost import (
    attention_score_flops,
    effective_score_flops,
    grouped_attention_forward_flops,
    varlen_attention_forward_flops,
)

if TYPE_CHECKING:
    from analysis.report.context import ReportContext

HEADING = "Attention variants: grouped-query heads, sliding windows, ALiBi inside the kernel"
KEYS = ["device", "dtype", "shape", "seq_len", "heads", "impl", "mode"]
MEMORY_AGREES = 0.25  # measured over predicted memory ratio within ±25% agrees with the model


def is_variant(cells: pd.DataFrame) -> pd.Series:
    """The cells of an attention variant: fewer key/value heads than query heads, a window of keys, or a
    variable-length batch."""
    return (cells["kv_heads"] > 0) | (cells["window"] > 0) | (cells["varlen"] != "none")


def effective_flops(r: dict) -> float:
    """A cell's FLOPs over the pairs its window leaves: the recorded (dense) figure less the masked pairs' share
    of the score matmuls, in the same proportion as the step's score FLOPs (forward, and backward where timed)."""
    b, n, d = int(r["batch"]), int(r["seq_len"]), int(r["d_model"])
    dense_scores = attention_score_flops(b, n, d)
    kept = effective_score_flops(b, n, d, window=int(r["window"]) or None) / dense_scores
    steps = 3 if r["mode"] == "train" else 1  # backward: two matmuls per forward one (model/cost.py)
    return float(r["flops"]) - steps * dense_scores * (1 - kept)


def _memory_word(measured: float, predicted: float) -> str:
    if math.isnan(predicted):
        return "no model"
    return "met" if abs(measured / predicted - 1) <= MEMORY_AGREES else "missed"


def grouped_table(variants: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
    """Every grouped-query cell beside its cell with every head's own: time ratio with its interval (simultaneous
    over the rows) and word, memory ratio measured and predicted, FLOPs ratio, the kernels observed."""
    grouped = variants[(variants["kv_heads"] > 0) & (variants["window"] == 0) & (variants["varlen"] == "none")]
    dense = dense[(dense["window"] == 0) & (dense["kv_heads"] == 0) & (dense["varlen"] == "none")]
    # the same group too: a training step of the same shape is not the attention cell's dense twin
    merged = grouped.merge(dense, on=[*KEYS, "group"], suffixes=("", "_dense"))
    if merged.empty:
        return pd.DataFrame()
    level = family_confidence(len(merged))
    rows = []
    for r in merged.to_dict("records"):
        interval = cell_ratio(r, "", "_dense", level)
        predicted = (
            r["predicted_mem_bytes"] / r["predicted_mem_bytes_dense"]
            if r.get("predicted_mem_bytes") and r.get("predicted_mem_bytes_dense")
            else math.nan
        )
        measured = r["peak_mem_bytes"] / r["peak_mem_bytes_dense"]
        rows.append(
            {
                **{k: r[k] for k in KEYS},
                "kv_heads": int(r["kv_heads"]),
                "time_vs_dense": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "word": decide(interval),
                "paired": interval.method in PAIRED_METHODS,
                "memory_vs_dense": measured,
                "memory_predicted": predicted,
                "memory_model": _memory_word(measured, predicted),
                "flops_vs_dense": r["flops"] / r["flops_dense"],
                "kernel": r["attention_kernel"],
            }
        )
    return pd.DataFrame(rows).sort_values([*KEYS, "kv_heads"])


def _exponent(a: float, b: float, span: float) -> float:
    return math.log(b / a) / span


def window_table(variants: pd.DataFrame) -> pd.DataFrame:
    """Per window series, between its two longest lengths: the local exponent of time (interval from the in-run
    pairs of n against n/2) judged against the physics (linear where the kernel skips the blocks outside the
    window: flex's block mask; quadratic where it computes every score and masks after), beside the exponents of
    the dense and the window's FLOPs, and memory's (exact) beside the model's."""
    windows = variants[(variants["window"] > 0) & (variants["varlen"] == "none")]
    if windows.empty:
        return pd.DataFrame()
    local = local_exponents(windows)
    if local.empty:
        return local
    series = ["device", "dtype", "shape", "heads", "impl", "mode", "kv_heads", "window"]
    local = local[local["seq_len_to"] == local.groupby(series)["seq_len_to"].transform("max")]
    by_length = {(*(c[k] for k in series), int(c["seq_len"])): c for c in windows.to_dict("records")}
    rows = []
    for r in local.to_dict("records"):
        ends = [by_length[(*(r[k] for k in series), int(n))] for n in (r["seq_len_from"], r["seq_len_to"])]
        span = math.log(r["seq_len_to"] / r["seq_len_from"])
        dense = _exponent(ends[0]["flops"], ends[1]["flops"], span)
        effective = _exponent(effective_flops(ends[0]), effective_flops(ends[1]), span)
        model = (
            _exponent(ends[0]["predicted_mem_bytes"], ends[1]["predicted_mem_bytes"], span)
            if ends[0].get("predicted_mem_bytes") and ends[1].get("predicted_mem_bytes")
            else math.nan
        )
        low, high = r["time_low"], r["time_high"]
        skips = ends[1]["attention_family"] == "flex"  # a block mask: the blocks outside the window are skipped
        expected = "linear" if skips else "quadratic"
        rows.append(
            {
                **{k: r[k] for k in series},
                "seq_len_from": r["seq_len_from"],
                "seq_len_to": r["seq_len_to"],
                "time_exponent": r["time_exponent"],
                "time_low": low,
                "time_high": high,
                "paired": r["paired"],
                "dense_flops_exponent": dense,
                "effective_flops_exponent": effective,
                "physics": expected,
                "verdict": physics_verdict(low, high, expected),
                "memory_exponent": r["memory_exponent"],
                "memory_model_exponent": model,
                "kernel": ends[1]["attention_kernel"],
                "effective_flops_share": effective_flops(ends[1]) / ends[1]["flops"],
                # at the longest length: the rate of the FLOPs every kernel counts (dense) and of those the window
                # leaves (effective), so masking neither inflates nor deflates a kernel's TFLOP/s
                "dense_flops_per_s": ends[1]["flops"] / ends[1]["median_s"],
                "effective_flops_per_s": effective_flops(ends[1]) / ends[1]["median_s"],
            }
        )
    return pd.DataFrame(rows).sort_values(series)


ALIBI = ("alibi", "alibi_directional")


def alibi_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Every layer series with ALiBi, where a run has one whose kernel computes it inside (flex), between its two
    longest lengths: memory's local exponent (exact) against the physics (linear inside the kernel, quadratic
    with an (h, n, n) bias), and time's with its 95% interval."""
    alibi = cells[(cells["group"] == "layer") & cells["pos_encoding"].isin(ALIBI)]
    if alibi.empty or not (alibi["attention_family"] == "flex").any():
        return pd.DataFrame()
    local = local_exponents(alibi)
    series = ["device", "dtype", "shape", "heads", "impl", "mode", "pos_encoding"]
    local = local[local["seq_len_to"] == local.groupby(series)["seq_len_to"].transform("max")]
    family = {tuple(c[k] for k in series): c["attention_family"] for c in alibi.to_dict("records")}
    by_length = {(*(c[k] for k in series), int(c["seq_len"])): c for c in alibi.to_dict("records")}
    rows = []
    for r in local.to_dict("records"):
        inside = family[tuple(r[k] for k in series)] == "flex"
        ends = [by_length[(*(r[k] for k in series), int(n))] for n in (r["seq_len_from"], r["seq_len_to"])]
        predicted = [e.get("predicted_mem_bytes") for e in ends]
        expected = "linear" if inside else "quadratic"
        rows.append(
            {
                **{k: r[k] for k in series},
                "bias": "inside the kernel (score_mod)" if inside else "an (h, n, n) tensor",
                "seq_len_from": r["seq_len_from"],
                "seq_len_to": r["seq_len_to"],
                "memory_exponent": r["memory_exponent"],
                "physics": expected,
                "memory_word": physics_verdict(r["memory_exponent"], r["memory_exponent"], expected),
                "memory_model_exponent": (
                    _exponent(*predicted, math.log(r["seq_len_to"] / r["seq_len_from"])) if all(predicted) else math.nan
                ),
                "time_exponent": r["time_exponent"],
                "time_low": r["time_low"],
                "time_high": r["time_high"],
            }
        )
    return pd.DataFrame(rows).sort_values(series)


def alibi_lines(table: pd.DataFrame) -> list[str]:
    return [
        f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, {r['pos_encoding']} {r['bias']}, "
        f"n={r['seq_len_from']}→{r['seq_len_to']}: memory n^{r['memory_exponent']:.2f} (physics: "
        f"{r['physics']}; {r['memory_word']}; the cost model n^{r['memory_model_exponent']:.2f}); time "
        + describe_exponent(r["time_exponent"], r["time_low"], r["time_high"])
        + "."
        for r in table.to_dict("records")
    ]


VARLEN_KEYS = [*KEYS, "kv_heads", "window"]


def padding_waste(r: dict) -> float:
    """The share of a padded batch's attention FLOPs spent on padding: 1 - real tokens' FLOPs / padded FLOPs."""
    d, h = int(r["d_model"]), int(r["heads"])
    kv = int(r["kv_heads"]) or h
    real = varlen_attention_forward_flops(list(r["sequence_lengths"]), d, h, kv).total
    return 1 - real / grouped_attention_forward_flops(int(r["batch"]), int(r["seq_len"]), d, h, kv).total


def varlen_table(variants: pd.DataFrame) -> pd.DataFrame:
    """Every variable-length cell: its real tokens per second and the padding's share of the padded FLOPs; nested
    or packed, its time against the same tokens padded (an in-run pair where the run timed one; interval
    simultaneous over the rows) beside the ratio of the FLOPs each computes: the physics says a layout that skips
    the padding saves about its share."""
    cells = variants[variants["varlen"] != "none"]
    if cells.empty:
        return pd.DataFrame()
    padded = cells[cells["varlen"] == "padded"]
    merged = cells.merge(padded, on=VARLEN_KEYS, how="left", suffixes=("", "_padded"))
    level = family_confidence(max(int((merged["varlen"] != "padded").sum()), 1))
    rows = []
    for r in merged.to_dict("records"):
        row = {
            **{k: r[k] for k in VARLEN_KEYS},
            "varlen": r["varlen"],
            "real_tokens": int(sum(r["sequence_lengths"])),
            "padding_flops_share": padding_waste(r),
            "tokens_per_s": r["tokens_per_s"],
            "kernel": r["attention_kernel"],
            "memory_over_model": (
                r["peak_mem_bytes"] / r["predicted_mem_bytes"] if r.get("predicted_mem_bytes") else math.nan
            ),
        }
        if r["varlen"] != "padded" and isinstance(r.get("id_padded"), str):
            interval = cell_ratio(r, "", "_padded", level)
            flops_ratio = r["flops"] / r["flops_padded"]
            row.update(
                time_vs_padded=interval.estimate,
                low=interval.low,
                high=interval.high,
                word=decide(interval),
                paired=interval.method in PAIRED_METHODS,
                flops_vs_padded=flops_ratio,
                # the physics: skipping the padding saves its share of the FLOPs, so the time falls to their ratio
                physics="met" if interval.low <= flops_ratio <= interval.high else "missed",
            )
        rows.append(row)
    return pd.DataFrame(rows).sort_values([*VARLEN_KEYS, "varlen"])


# why a nested cell's memory has no model (torch/nested/_internal/sdpa.py, its MATH branch)
NESTED_MEMORY = "not modelled (on a CPU, SDPA copies a nested batch into a strided nested tensor for its math backend)."


def compared_layouts(table: pd.DataFrame) -> pd.DataFrame:
    """The nested and packed rows that were compared with the same tokens padded."""
    if "time_vs_padded" not in table:
        return pd.DataFrame()
    return table.dropna(subset=["time_vs_padded"])


def varlen_lines(table: pd.DataFrame) -> list[str]:
    out = []
    for r in compared_layouts(table).to_dict("records"):
        out.append(
            f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, n={r['seq_len']} ({r['real_tokens']} real "
            f"tokens, padding {r['padding_flops_share']:.0%} of the padded FLOPs): {r['varlen']} takes "
            f"x{r['time_vs_padded']:.2f} [{r['low']:.2f}, {r['high']:.2f}] the padded time ({r['word']}) for "
            f"x{r['flops_vs_padded']:.2f} its FLOPs (physics: the time falls with the FLOPs; {r['physics']}); "
            f"{r['tokens_per_s']:.3g} real tokens/s; kernel {r['kernel']}; memory "
            + (
                f"x{r['memory_over_model']:.2f} the cost model's ({_memory_word(r['memory_over_model'], 1.0)})."
                if not math.isnan(r["memory_over_model"])
                else NESTED_MEMORY
            )
        )
    return out


def compiled_kernels(cells: pd.DataFrame) -> pd.DataFrame:
    """Every cell whose attention compiles its own kernel (flex): its first call (the compile, or 0 compilations
    where a cell of the same shape and mask compiled it before) and how often it compiled again while timed."""
    own = cells[cells["kernel_compilations"].notna()] if "kernel_compilations" in cells else pd.DataFrame()
    if own.empty:
        return own
    columns = ["id", "first_call_s", "compile_s", "kernel_compilations", "kernel_recompilations", "attention_kernel"]
    return own[columns].sort_values("id")


def grouped_lines(table: pd.DataFrame) -> list[str]:
    """At the longest length, the fewest key/value heads per kernel and mode: what grouping changed."""
    if table.empty:
        return []
    longest = table[table["seq_len"] == table.groupby(["impl", "mode"])["seq_len"].transform("max")]
    fewest = longest[longest["kv_heads"] == longest.groupby(["impl", "mode"])["kv_heads"].transform("min")]
    return [
        f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, n={r['seq_len']}: {r['heads']} query heads over "
        f"{r['kv_heads']} key/value head{'s' if r['kv_heads'] > 1 else ''} take x{r['time_vs_dense']:.2f} "
        f"[{r['low']:.2f}, {r['high']:.2f}] the time of {r['heads']} ({r['word']}), FLOPs x{r['flops_vs_dense']:.3f}; "
        f"memory x{r['memory_vs_dense']:.3f} against the model's x{r['memory_predicted']:.3f} "
        f"(model {r['memory_model']}); kernel {r['kernel']}."
        for r in fewest.sort_values(["device", "dtype", "impl", "mode"]).to_dict("records")
    ]


def window_lines(table: pd.DataFrame) -> list[str]:
    return [
        f"- {r['device']} {r['dtype']} {r['impl']} {r['mode']}, window {r['window']}, "
        f"n={r['seq_len_from']}→{r['seq_len_to']}: time "
        f"{describe_exponent(r['time_exponent'], r['time_low'], r['time_high'])} (physics: {r['physics']}; "
        f"{r['verdict']}); the dense FLOPs grow n^{r['dense_flops_exponent']:.2f}, the window's "
        f"n^{r['effective_flops_exponent']:.2f}. Memory n^{r['memory_exponent']:.2f} (model "
        f"n^{r['memory_model_exponent']:.2f}); "
        f"kernel {r['kernel']}; {r['effective_flops_share']:.0%} of the dense FLOPs are in the window: at "
        f"n={r['seq_len_to']} {r['dense_flops_per_s'] / 1e9:.3g} GFLOP/s counted dense, "
        f"{r['effective_flops_per_s'] / 1e9:.3g} GFLOP/s of the window's."
        for r in table.to_dict("records")
    ]


def variants_section(ctx: ReportContext) -> list[str]:
    grouped = grouped_table(ctx.variants, ctx.cells) if not ctx.variants.empty else pd.DataFrame()
    windows = window_table(ctx.variants) if not ctx.variants.empty else pd.DataFrame()
    alibi = alibi_table(ctx.cells)
    varlen = varlen_table(ctx.variants) if not ctx.variants.empty else pd.DataFrame()
    compiled = compiled_kernels(pd.concat([ctx.cells, ctx.variants]))
    if grouped.empty and windows.empty and alibi.empty and varlen.empty and compiled.empty:
        return []
    lines = [f"## {HEADING}", ""]
    if not grouped.empty:
        words, paired = grouped["word"].value_counts(), int(grouped["paired"].sum())
        lines += [
            f"Grouped-query heads, each cell against the same cell with every head's own ({paired}"
            f" of {len(grouped)} timed as in-run pairs; simultaneous 95% intervals, margin {MARGIN:.0%}: "
            + ", ".join(f"{w} {words.get(w, 0)}" for w in WORDS)
            + "). The physics: k and v shrink by h / kv_heads, the scores do not; a kernel that repeats k and v "
            "to every head (ours, SDPA's math) holds the copies. Memory is exact, and judged against the cost "
            f"model within ±{MEMORY_AGREES:.0%}.",
            "",
            *grouped_lines(grouped),
            "",
            "<details><summary>Every grouped comparison</summary>",
            "",
            md(grouped, ".3f"),
            "",
            "</details>",
            "",
        ]
    if not windows.empty:
        lines += [
            "A sliding window, between each series' two longest lengths (time's 95% interval from the in-run pairs "
            "of n against n/2 where the run timed them). At a fixed window the pairs a query sees stop growing, "
            "so a kernel that skips the blocks outside it (flex's block mask) grows about linearly, as the window's "
            "FLOPs do; one that computes every score and masks after (the explicit softmax, SDPA with an explicit "
            "mask) grows about quadratically, as the dense FLOPs do at long lengths. The word says whether the "
            "time's interval lies in the physics' range (linear 0.85-1.15, quadratic 1.85-2.15).",
            "",
            *window_lines(windows),
            "",
        ]
    if not alibi.empty:
        lines += [
            "ALiBi inside flex's kernel (a score_mod, computed per block) against ALiBi passed as an (h, n, n) "
            "bias tensor, between each series' two longest lengths: the bias held grows a layer's memory about "
            "quadratically, the score_mod only with the activations (about linearly). Memory is exact; the word "
            "says whether its exponent falls in the physics' range (linear 0.85-1.15, quadratic 1.85-2.15); the "
            "cost model's exponent is beside it.",
            "",
            *alibi_lines(alibi),
            "",
        ]
    if not varlen.empty:
        lines += [
            f"Variable-length batches: each batch's lengths are {varlen_distribution(ctx)}; the same tokens run "
            "padded to n (a key-padding mask: every padded query and key is still computed), nested (a jagged "
            "tensor through SDPA) or packed (one row, a document mask). Each nested or packed cell against the same "
            "tokens padded, with its interval (simultaneous 95%) and word, beside the ratio of the FLOPs each "
            "computes: a layout that skips the padding should save about the padding's share.",
            "",
            *varlen_lines(varlen),
            "",
            "<details><summary>Every variable-length cell</summary>",
            "",
            md(varlen, ".3g"),
            "",
            "</details>",
            "",
        ]
    if not compiled.empty:
        again = int(compiled["kernel_recompilations"].fillna(0).sum())
        compiling = compiled[compiled["kernel_compilations"] > 0]["first_call_s"]
        lines += [
            f"{len(compiled)} cells ran flex, which torch.compile compiles on the first call of each shape and mask "
            f"(outside the timing, in the cell's untimed pass): {len(compiling)} of them compiled it, their first "
            f"call taking {compiling.min():.1f}-{compiling.max():.1f} s"
            + ("; the others found it compiled by a cell before them. " if len(compiling) < len(compiled) else ". ")
            + f"In the timed passes flex compiled again {again} times"
            + (
                " (dynamo's guards failed for a pass's new module: the compile falls in the pass's first call, "
                "which sizes the pass and is not timed)."
                if again
                else ": every call ran a kernel compiled before."
            )
            + " A cell whose profile showed flex's unfused eager path instead would have failed, not been timed.",
            "",
            "<details><summary>Every flex cell's compilation</summary>",
            "",
            md(compiled, ".3g"),
            "",
            "</details>",
            "",
        ]
    return lines


def varlen_distribution(ctx: ReportContext) -> str:
    """How the run drew its lengths, as it recorded it."""
    return ctx.facts.get("varlen_distribution") or "drawn at random (the run did not record how)"


def variant_findings(ctx: ReportContext) -> list[str]:
    """Bullets for the report's opening, each linking here: ALiBi inside the kernel, grouping at its fewest
    key/value heads, the window's growth, and the layouts of a variable-length batch."""
    out = []
    alibi = alibi_table(ctx.cells)
    if not alibi.empty:
        parts = [
            f"{r['impl']} ({r['bias']}) memory n^{r['memory_exponent']:.2f}, {r['physics']}: {r['memory_word']}"
            for r in alibi.to_dict("records")
        ]
        r0 = alibi.iloc[0]
        out.append(
            link(f"ALiBi in a layer, n={r0['seq_len_from']}→{r0['seq_len_to']}: " + "; ".join(parts) + ".", HEADING)
        )
    if ctx.variants.empty:
        return out
    grouped = grouped_table(ctx.variants, ctx.cells)
    if not grouped.empty:
        longest = grouped[grouped["seq_len"] == grouped["seq_len"].max()]
        fewest = longest[longest["kv_heads"] == longest["kv_heads"].min()]
        parts = [
            f"{r['impl']} {r['mode']} x{r['time_vs_dense']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['word']}), "
            f"memory x{r['memory_vs_dense']:.2f} (model x{r['memory_predicted']:.2f})"
            for r in fewest.sort_values(["impl", "mode"]).to_dict("records")
        ]
        r0 = fewest.iloc[0]
        out.append(
            link(
                f"Grouped-query heads at n={r0['seq_len']}, {r0['heads']} query heads over {r0['kv_heads']} "
                "key/value, against every head's own: " + "; ".join(parts) + ".",
                HEADING,
            )
        )
    windows = window_table(ctx.variants)
    if not windows.empty:
        parts = [
            f"{r['impl']} {r['mode']} n^{r['time_exponent']:.2f} [{r['time_low']:.2f}, {r['time_high']:.2f}] "
            f"({r['physics']}: {r['verdict']})"
            for r in windows.to_dict("records")
        ]
        r0 = windows.iloc[0]
        out.append(
            link(
                f"A window of {r0['window']} keys, n={r0['seq_len_from']}→{r0['seq_len_to']} (dense FLOPs "
                f"n^{r0['dense_flops_exponent']:.2f}, the window's n^{r0['effective_flops_exponent']:.2f}): "
                + "; ".join(parts)
                + ".",
                HEADING,
            )
        )
    varlen = compared_layouts(varlen_table(ctx.variants))
    if not varlen.empty:
        longest = varlen[varlen["seq_len"] == varlen["seq_len"].max()]
        parts = [
            f"{r['impl']} {r['mode']} {r['varlen']} x{r['time_vs_padded']:.2f} [{r['low']:.2f}, {r['high']:.2f}] "
            f"({r['word']}; FLOPs x{r['flops_vs_padded']:.2f})"
            for r in longest.to_dict("records")
        ]
        r0 = longest.iloc[0]
        out.append(
            link(
                f"Variable-length batches at n={r0['seq_len']} (padding {r0['padding_flops_share']:.0%} of the padded "
                "FLOPs), against the same tokens padded: " + "; ".join(parts) + ".",
                HEADING,
            )
        )
    return out
