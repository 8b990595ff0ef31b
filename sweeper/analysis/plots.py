"""The report's PNG plots that Optuna has no equivalent for (the heatmap, the top trials'
curves, failures, a Pareto front of any two metrics), drawn with headless matplotlib (Agg).
Each returns a Figure or None when the sweep has nothing to show for it (e.g. a heatmap needs
two searched keys). Optuna draws the rest: :mod:`sweeper.analysis.optuna_plots`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeper.analysis.data import ReportData
from sweeper.state import TrialState

__all__ = ["curves", "failures", "heatmap", "heatmap_data", "pareto", "pyplot",
           "y_scale"]


def pyplot() -> Any:
    """matplotlib.pyplot, headless."""
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
    plt = pyplot()
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


def curves(data: ReportData, top: Sequence[int]) -> Any:
    if data.curves.empty or not top:
        return None
    name = data.metric if data.metric in data.curves else next(
        (c for c in data.curves.columns if c not in ("trial_id", "epoch")), None)
    if name is None:
        return None
    plt = pyplot()
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
    plt = pyplot()
    reasons = bad["error"].fillna(bad["status"]).map(lambda e: str(e).splitlines()[0][:70])
    counts = reasons.value_counts()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(counts) + 1.5))
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color="tab:red")
    ax.set_xlabel("trials")
    ax.set_title(f"{len(bad)} trials failed or were stopped, by reason (pruned ones did not fail)")
    fig.tight_layout()
    return fig


def pareto(data: ReportData, a: str, b: str, mask: pd.Series) -> Any:
    plt = pyplot()
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

