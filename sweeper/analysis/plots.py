"""The report's plots, drawn with headless matplotlib (Agg). Each returns a Figure or None
when the sweep has nothing to show for it (e.g. a heatmap needs two searched keys)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeper.analysis.data import ReportData
from sweeper.state import TrialState

__all__ = ["heatmap_data", "history", "y_scale"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display needed, on a laptop or a cluster node
    import matplotlib.pyplot as plt

    return plt


def _is_log(data: ReportData, key: str) -> bool:
    return bool(data.space_of(key).get("log"))


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _binned(data: ReportData, key: str, bins: int = 6) -> pd.Series:
    """Grid values as they are; a continuous key (random search) in bins, log-spaced if log,
    each labelled by its centre (geometric for log keys)."""
    col = data.done[key]
    if not _numeric(col) or col.nunique() <= 10:
        return col
    log = _is_log(data, key) and bool((col > 0).all())
    lo, hi = float(col.min()), float(col.max())
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    labels = [float(f"{c:.3g}") for c in centres]
    return pd.cut(col, edges, labels=labels, include_lowest=True, ordered=False).astype(float)


def heatmap_data(data: ReportData, x: str, y: str) -> pd.DataFrame:
    """The best metric per (y, x) cell: the numbers the heatmap shows."""
    frame = pd.DataFrame({x: _binned(data, x), y: _binned(data, y),
                          data.metric: data.done[data.metric]})
    agg = "min" if data.direction == "minimize" else "max"
    return frame.pivot_table(index=y, columns=x, values=data.metric, aggfunc=agg, observed=True)


def heatmap(data: ReportData, x: str | None, y: str | None) -> Any:
    if x is None or y is None or data.done.empty:
        return None
    table = heatmap_data(data, x, y)
    if table.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 3, 0.8 * table.shape[0] + 2))
    cmap = "viridis_r" if data.direction == "minimize" else "viridis"
    im = ax.imshow(table.to_numpy(float), cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{v:.3g}" if isinstance(v, float) else str(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:.3g}" if isinstance(v, float) else str(v) for v in table.index])
    for (i, j), value in np.ndenumerate(table.to_numpy(float)):
        if math.isfinite(value):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="white", fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"best {data.metric} per cell")
    fig.colorbar(im, ax=ax, label=data.metric)
    return fig


def importance(data: ReportData, values: dict[str, float]) -> Any:
    if not values:
        return None
    plt = _plt()
    keys = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(keys) + 1.5))
    ax.barh(keys, [values[k] for k in keys], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA, Optuna)")
    ax.set_title(f"which keys matter for {data.metric}")
    return fig


def y_scale(values: np.ndarray) -> tuple[str, dict[str, float]]:
    """The y scale for a metric, with its options: one far-off trial on a linear axis flattens
    the differences between the good ones that matter. Log when the values are positive and
    span more than 10x; symlog (linear up to the smallest magnitude) when some are not positive
    and their magnitudes span more than 10x; else linear.

    >>> y_scale(np.array([0.01, 0.5, 3.0]))[0], y_scale(np.array([-50.0, -1.0, 0.0]))
    ('log', ('symlog', {'linthresh': 1.0}))
    """
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all():
        return ("log", {}) if finite.max() > 10 * finite.min() else ("linear", {})
    sizes = np.abs(finite[finite != 0])
    if sizes.size and sizes.max() > 10 * sizes.min():
        return "symlog", {"linthresh": float(sizes.min())}
    return "linear", {}


def history(data: ReportData) -> Any:
    if data.done.empty:
        return None
    done = data.done.sort_values("finished_at")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    values = done[data.metric].to_numpy(float)
    best = np.minimum.accumulate(values) if data.direction == "minimize" else np.maximum.accumulate(values)
    ax.scatter(range(len(values)), values, s=14, label="trial", color="tab:blue")
    ax.step(range(len(values)), best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("completed trials, in finishing order")
    ax.set_ylabel(data.metric)
    scale, options = y_scale(values)
    ax.set_yscale(scale, **options)
    ax.legend()
    ax.set_title("optimization history")
    return fig


def _axis_values(data: ReportData, key: str) -> tuple[np.ndarray, list[str] | None]:
    col = data.done[key]
    if _numeric(col):
        v = col.to_numpy(float)
        v = np.log10(v) if _is_log(data, key) and (v > 0).all() else v
        return v, None
    cats = sorted(col.astype(str).unique())
    return col.astype(str).map(cats.index).to_numpy(float), cats


def parallel(data: ReportData) -> Any:
    keys = [k for k in data.params if k in data.done]
    if not keys or len(data.done) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2 + 1.6 * (len(keys) + 1), 4.5))
    axes = [*keys, data.metric]
    cols = []
    metric = data.done[data.metric].to_numpy(float)
    skewed = (metric > 0).all() and metric.max() > 10 * metric.min()
    for key in axes:
        if key == data.metric:
            v = np.log10(metric) if skewed else metric
        else:
            v, _ = _axis_values(data, key)
        span = v.max() - v.min()
        cols.append((v - v.min()) / span if span > 0 else v * 0 + 0.5)
    # Colour by rank, so a few outliers do not wash out the rest.
    norm = pd.Series(metric).rank(pct=True).to_numpy()
    cmap = plt.get_cmap("viridis_r" if data.direction == "minimize" else "viridis")
    for i in np.argsort(-norm if data.direction == "minimize" else norm):
        ax.plot(range(len(axes)), [c[i] for c in cols], color=cmap(norm[i]), alpha=0.6, lw=1)
    labels = [f"{k}{' (log)' if _is_log(data, k) or (k == data.metric and skewed) else ''}" for k in axes]
    ax.set_xticks(range(len(axes)), labels, rotation=20)
    ax.set_yticks([])
    ax.set_title("parallel coordinates (each axis scaled to its range)")
    return fig


def slices(data: ReportData) -> Any:
    keys = [k for k in data.params if k in data.done]
    if not keys or data.done.empty:
        return None
    plt = _plt()
    fig, axs = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 1, 3.4), squeeze=False)
    for ax, key in zip(axs[0], keys, strict=True):
        v, cats = _axis_values(data, key)
        ax.scatter(v, data.done[data.metric], s=14, alpha=0.7)
        if cats is not None:
            ax.set_xticks(range(len(cats)), cats, rotation=20)
        ax.set_xlabel(f"log10 {key}" if _is_log(data, key) and cats is None else key)
        ax.set_ylabel(data.metric)
    fig.suptitle("slices: the metric against each key")
    fig.tight_layout()
    return fig


def curves(data: ReportData, top: Sequence[int]) -> Any:
    if data.curves.empty or not top:
        return None
    name = data.metric if data.metric in data.curves else next(
        (c for c in data.curves.columns if c not in ("trial_id", "epoch")), None)
    if name is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    pruned = set(data.results.loc[data.results["status"] == TrialState.PRUNED.value, "trial_id"])
    longest = data.curves["epoch"].max()
    for tid in list(top) + sorted(pruned):
        c = data.curves[data.curves["trial_id"] == tid].sort_values("epoch")
        if c.empty:
            continue
        style = {"ls": "--", "alpha": 0.5} if tid in pruned else {"lw": 1.6}
        (line,) = ax.plot(c["epoch"], c[name], label=f"trial {tid}", **style)
        if tid in pruned or c["epoch"].max() < longest:
            ax.plot(c["epoch"].iloc[-1], c[name].iloc[-1], "x", color=line.get_color())  # cut here
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    if (data.curves[name] > 0).all():
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"learning curves of the top {len(top)} (x: stopped early or pruned)")
    return fig


def failures(data: ReportData) -> Any:
    bad = data.failed
    if bad.empty:
        return None
    plt = _plt()
    reasons = bad["error"].fillna(bad["status"]).map(lambda e: str(e).splitlines()[0][:70])
    counts = reasons.value_counts()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(counts) + 1.5))
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color="tab:red")
    ax.set_xlabel("trials")
    ax.set_title(f"{len(bad)} trials failed or were stopped, by reason (pruned ones did not fail)")
    fig.tight_layout()
    return fig


def pareto(data: ReportData, a: str, b: str, mask: pd.Series) -> Any:
    plt = _plt()
    done = data.done
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(done[a], done[b], s=14, alpha=0.5, label="trials")
    front = done[mask].sort_values(a)
    ax.plot(front[a], front[b], "o-", color="tab:red", label="Pareto front")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.legend()
    ax.set_title("Pareto front")
    return fig

