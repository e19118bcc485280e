"""Seaborn figures, each saved as PNG and SVG; every function takes tidy data and returns the PNG path,
or None when the run has no cells for that figure."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
plt.rcParams["svg.hashsalt"] = "attnbench"  # stable ids: regenerating a figure from the same data gives the same file


def save(fig: plt.Figure, out: Path, name: str) -> Path:
    """The figure as PNG and SVG, each written whole or not at all; a failed write (a full disk) names its file."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                fig.savefig(
                    tmp, format=ext, dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None
                )
                os.replace(tmp, path)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        plt.close(fig)
    return out / f"{name}.png"


def _log_axes(grid: sns.FacetGrid, base: int = 2) -> None:
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=base)
        ax.set_yscale("log")


def time_vs_length(cells: pd.DataFrame, out: Path) -> Path | None:
    """Attention kernels: median step time vs sequence length, hue heads, facets dtype x implementation."""
    data = cells[(cells["group"] == "attention") & (cells["shape"] == cells["shape"].iloc[0])]
    if data.empty:
        return None
    g = sns.relplot(
        data=data,
        x="seq_len",
        y="median_s",
        hue="heads",
        style="mode",
        col="impl",
        row="dtype",
        kind="line",
        marker="o",
        palette="viridis",
        height=3,
        aspect=1.2,
    )
    _log_axes(g)
    g.set_axis_labels("sequence length", "median device time (s)")
    g.figure.suptitle("Attention: device time vs sequence length", y=1.02)
    return save(g.figure, out, "time_vs_seq_len")


def memory_vs_length(cells: pd.DataFrame, out: Path) -> Path | None:
    """Measured peak memory (points) and the analytic prediction (dashed) vs length, training passes."""
    data = cells[
        (cells["mode"] == "train")
        & (cells["group"] == "layer")
        & (cells["pos_encoding"] == "none")
        & (cells["compile"] == "eager")
    ]
    data = data[(data["dtype"] == data["dtype"].min()) & (data["shape"] == data["shape"].min())]
    if data.empty:
        return None
    data = data.assign(series=data["impl"] + " p=" + data["dropout"].astype(str))
    order = sorted(data["series"].unique())
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.lineplot(
        data=data,
        x="seq_len",
        y="peak_mem_bytes",
        hue="series",
        hue_order=order,
        palette=palette,
        marker="o",
        errorbar=None,
        ax=ax,
    )
    for name, series in data.groupby("series"):
        series = series.groupby("seq_len")["predicted_mem_bytes"].mean()
        ax.plot(series.index, series.values, "--", color=palette[name], alpha=0.7)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="sequence length",
        ylabel="peak bytes of one step",
        title="Encoder layer training step: measured (solid) vs model (dashed)",
    )
    ax.set_xscale("log", base=2)
    return save(fig, out, "memory_vs_seq_len")


def heads_length_heatmap(cells: pd.DataFrame, out: Path) -> Path | None:
    """Attention training step time (ms) over heads x length, one panel per kernel (float32)."""
    data = cells[(cells["group"] == "attention") & (cells["mode"] == "train") & (cells["shape"] == "small")]
    data = data[data["dtype"] == data["dtype"].min()]  # float32 where it ran, else the one dtype there is
    if data.empty:
        return None
    impls = sorted(data["impl"].unique())
    fig, axes = plt.subplots(1, len(impls), figsize=(4.2 * len(impls), 3.4), squeeze=False)
    for ax, impl in zip(axes[0], impls):
        table = data[data["impl"] == impl].pivot_table(index="heads", columns="seq_len", values="median_s") * 1e3
        sns.heatmap(table, annot=True, fmt=".3g", cmap="rocket_r", ax=ax, cbar=False)
        ax.set(title=f"{impl}: train step, {data['dtype'].iloc[0]} (ms)", xlabel="sequence length", ylabel="heads")
    return save(fig, out, "heads_x_length_heatmap")


def op_share_vs_length(breakdown: pd.DataFrame, out: Path) -> Path:
    """Share of each component in a traced step (kernel time on CUDA, op time on CPU), ordered by length."""
    data = breakdown.copy()
    table = data.pivot_table(index=["impl", "seq_len"], columns="category", values="share", aggfunc="mean")
    impls = table.index.get_level_values(0).unique()
    fig, axes = plt.subplots(1, len(impls), figsize=(5 * len(impls), 3.8), squeeze=False, sharey=True)
    for ax, impl in zip(axes[0], impls):
        table.loc[impl].plot.bar(stacked=True, ax=ax, legend=False, colormap="tab10", width=0.8)
        ax.set(title=f"{impl}", xlabel="sequence length", ylabel="share of the step")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Where a training step's time goes (traced cells)", y=1.02)
    return save(fig, out, "op_share_vs_seq_len")


def roofline(cells: pd.DataFrame, peaks: pd.DataFrame, roofs: pd.DataFrame, out: Path) -> Path | None:
    """One point per attention kernel x mode x length x head count (marker) at its intensity and achieved FLOP/s,
    under the run's measured roofs: a flat line per dtype's matmul peak, a slope per memory level's bandwidth;
    one panel per device and dtype."""
    if cells.empty or roofs.empty:
        return None
    data = cells.assign(series=cells["impl"] + " " + cells["mode"])
    panels = sorted(set(zip(data["device"], data["dtype"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (device, dtype) in zip(axes[0], panels):
        here = data[(data["device"] == device) & (data["dtype"] == dtype)]
        x = np.logspace(-1, np.log10(max(here["intensity"].max(), 10) * 4), 200)
        peak = peaks[(peaks["device"] == device) & (peaks["dtype"] == dtype)]["peak_flops_per_s"]
        top = float(peak.iloc[0]) if len(peak) else float("inf")
        for level in roofs[roofs["device"] == device].itertuples():
            ax.plot(x, np.minimum(x * level.median_bytes_per_s, top), lw=1, ls="--", label=f"{level.level} roof")
        if np.isfinite(top):
            ax.axhline(top, color="black", lw=1.2, label=f"{dtype} matmul peak")
        sns.scatterplot(
            data=here, x="intensity", y="achieved_flops_per_s", hue="series", size="seq_len", style="heads", ax=ax
        )
        ax.set(xscale="log", yscale="log", title=f"{device} {dtype}")
        ax.set(xlabel="intensity (FLOP per byte moved, model/cost.py)", ylabel="achieved FLOP/s (device time)")
        if ax is axes[0][-1]:  # one legend, outside the last panel, so that it hides no point
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            ax.get_legend().remove()
    fig.suptitle("Attention cells under the roofs measured in this run", y=1.02)
    return save(fig, out, "roofline")


def mfu_vs_length(cells: pd.DataFrame, out: Path) -> Path | None:
    """MFU from device time vs length, mean over heads; line style by shape where there are several."""
    data = cells[
        cells["group"].isin(["attention", "layer", "train_step"])
        & (cells["pos_encoding"] == "none")
        & (cells["compile"] == "eager")
    ]
    if data.empty:
        return None
    several = data["shape"].nunique() > 1
    data = data.assign(series=data["impl"] + " " + data["mode"]) if several else data
    g = sns.relplot(
        data=data,
        x="seq_len",
        y="mfu",
        hue="series" if several else "impl",
        style="shape" if several else "mode",
        col="group",
        row="dtype",
        kind="line",
        marker="o",
        errorbar=None,
        height=3,
        aspect=1.2,
    )
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
    g.set_axis_labels("sequence length", "fraction of measured matmul peak")
    g.figure.suptitle("Model FLOP utilisation (device time) vs length, mean over heads", y=1.02)
    return save(g.figure, out, "mfu_vs_seq_len")


def positional_accuracy(runs: pd.DataFrame, out: Path) -> Path:
    g = sns.relplot(
        data=runs,
        x="eval_length",
        y="token_accuracy",
        hue="pos_encoding",
        col="task",
        kind="line",
        marker="o",
        errorbar="sd",
        height=3.2,
        aspect=1.1,
    )
    train_length = runs["train_length"].iloc[0]
    for ax in g.axes.flat:
        ax.axvline(train_length, color="grey", ls=":", lw=1)
        ax.set_xscale("log", base=2)
    g.set_axis_labels("evaluation length (dotted: longest training length)", "token accuracy")
    g.figure.suptitle("Positional encodings: accuracy vs evaluation length (mean ± sd over seeds)", y=1.03)
    return save(g.figure, out, "positional_accuracy_vs_length")


def attention_maps(maps: dict[str, np.ndarray], out: Path) -> Path:
    """Last-layer attention (mean over heads) of each trained reverse model on one sequence."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.2), squeeze=False)
    for ax, (name, weights) in zip(axes[0], maps.items()):
        sns.heatmap(weights, ax=ax, cmap="mako", cbar=False, square=True, xticklabels=False, yticklabels=False)
        ax.set(title=name, xlabel="key position", ylabel="query position")
    fig.suptitle("Reverse task: what each encoding's model attends to (last layer)", y=1.04)
    return save(fig, out, "attention_maps_reverse")


def compare_ratios(table: pd.DataFrame, out: Path) -> Path:
    """Device-time ratio new/base per cell with its interval (simultaneous or per cell, as compare made it),
    one panel per benchmark group."""
    groups = sorted(table["group"].unique())
    level = float(table["confidence"].iloc[0]) if "confidence" in table else 0.95
    interval_words = f"95% simultaneous over {len(table)} cells" if level > 0.95 else "95% interval"
    heights = [max(2.0, 0.22 * (table["group"] == g).sum()) for g in groups]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(7.5, sum(heights) + 1), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, group in zip(axes[:, 0], groups):
        data = table[table["group"] == group].sort_values("device_time")
        y = np.arange(len(data))
        err = [data["device_time"] - data["device_time_low"], data["device_time_high"] - data["device_time"]]
        colors = np.where(data["device_time_flag"], "tab:red", "tab:blue")
        ax.errorbar(data["device_time"], y, xerr=err, fmt="none", ecolor=colors, elinewidth=1)
        ax.scatter(data["device_time"], y, c=colors, s=12, zorder=3)
        ax.axvline(1.0, color="grey", lw=1, ls=":")
        ax.set_yticks(y, data["id"], fontsize=6)
        ax.set(title=group, xlabel=f"device time, new / base ({interval_words}; red: flagged)")
    fig.tight_layout()
    return save(fig, out, "compare")


def ddp_scaling(table: pd.DataFrame, out: Path) -> Path:
    """Step time and efficiency (95% interval) against world size, per strategy and scaling mode."""
    fig, (time_ax, eff_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (impl, scaling), data in table.groupby(["impl", "scaling"]):
        data = data.sort_values("world")
        label = f"{impl}, {scaling}"
        time_ax.plot(data["world"], data["step_s"] * 1e3, marker="o", label=label)
        if "efficiency" in data:
            err = [data["efficiency"] - data["efficiency_low"], data["efficiency_high"] - data["efficiency"]]
            eff_ax.errorbar(data["world"], data["efficiency"], yerr=err, marker="o", capsize=3, label=label)
    time_ax.set(xlabel="world size (ranks)", ylabel="step time (ms)", title="Training step")
    eff_ax.axhline(1.0, color="grey", ls=":", lw=1)
    eff_ax.set(xlabel="world size (ranks)", ylabel="efficiency vs 1 rank", title="Scaling efficiency (95% interval)")
    for ax in (time_ax, eff_ax):
        ax.set_xticks(sorted(table["world"].unique()))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out, "ddp_scaling")


def perplexity_vs_length(table: pd.DataFrame, train_length: int, out: Path) -> Path:
    """The language-model experiment's Figure 1: held-out perplexity against evaluation length, an
    encoding a line, intervals over seeds (analysis/extrapolation_summary.py's table)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for pos, group in table.dropna(subset=["perplexity"]).groupby("pos_encoding"):
        group = group.sort_values("eval_length")
        ax.errorbar(
            group["eval_length"],
            group["perplexity"],
            marker="o",
            capsize=3,
            label=pos,
            yerr=[group["perplexity"] - group["low"], group["high"] - group["perplexity"]],
        )
    ax.axvline(train_length, color="grey", linestyle=":", label=f"training length L={train_length}")
    lengths = sorted(table["eval_length"].unique())
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="evaluation length (characters)",
        ylabel="perplexity per character (held-out)",
        title="Train short, test long, on our toy text",
    )
    ax.set_xticks(lengths, labels=[str(n) for n in lengths])
    ax.xaxis.set_minor_locator(plt.NullLocator())  # only the evaluated lengths label the axis
    ax.yaxis.set_major_formatter(plt.ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.ScalarFormatter())
    ax.legend(fontsize=8)
    return save(fig, out, "perplexity_vs_length")
