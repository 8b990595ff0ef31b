"""The merged results as a table for analysis: the best trial, weighted selection, Pareto.

Works on any sweep dir, finished or not: only completed trials with the metric count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweeper.errors import ConfigError, closest
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.state import TrialState

__all__ = ["ReportData", "ended_badly", "load", "pareto_front", "selection_scores"]

_COMPLETED = TrialState.COMPLETED.value


def ended_badly(status: object) -> bool:
    """A row whose trial ended without settling (failed, timed out, cancelled, lost), or whose
    status sweeper does not know. Pruned trials stopped early on purpose: not a failure; queued
    and missing ones have not ended."""
    state = TrialState.parse(status)
    return state is None or (state.is_finished() and not state.is_settled())


@dataclass
class ReportData:
    """Everything a report is made from."""

    paths: SweepPaths
    sweep: SweepRecord
    results: pd.DataFrame
    curves: pd.DataFrame
    metric: str
    direction: str
    params: list[str]
    space: list[dict[str, Any]]
    #: (metric, direction) per objective of a multi-objective search; empty: ``metric`` alone
    objectives: tuple[tuple[str, str], ...] = ()

    @property
    def done(self) -> pd.DataFrame:
        """Completed trials that returned the metric."""
        ok = (self.results["status"] == _COMPLETED)
        if self.metric in self.results:
            ok &= self.results[self.metric].notna()
        else:
            ok &= False
        return self.results[ok]

    @property
    def failed(self) -> pd.DataFrame:
        """Trials that ended without settling (see :func:`ended_badly`)."""
        return self.results[self.results["status"].map(ended_badly).astype(bool)]

    def space_of(self, key: str) -> dict[str, Any]:
        return next((s for s in self.space if s["key"] == key), {"key": key, "kind": "categorical"})


def load(paths: SweepPaths, metric: str | None = None, direction: str | None = None) -> ReportData:
    """Merge (incrementally) and load the sweep dir's results."""
    from sweeper.merge import merge
    from sweeper.record import SweepRecord

    sweep = SweepRecord.load(paths)
    merged = merge(paths)
    results = merged.results.drop_columns(["curve"]) if "curve" in merged.results.column_names \
        else merged.results
    df = results.to_pandas(types_mapper=None)
    if "overrides" in df:
        df["overrides"] = df["overrides"].map(lambda v: list(v) if v is not None else [])
    metric = metric or sweep.search.metrics[0]
    direction = direction or sweep.search.directions[0]
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"direction must be minimize or maximize, got {direction!r}")
    space = [dict(s) for s in sweep.space]
    numeric = [c for c in df.columns if _numeric(df[c])
               and c not in ("trial_id", "variant", "seed", "attempt", "slurm_array_task_id")]
    if metric not in df.columns and (df["status"] == _COMPLETED).any():
        raise ConfigError(f"the results have no metric {metric!r}{closest(metric, numeric)}; "
                          f"metrics: {', '.join(numeric) or 'none'}")
    return ReportData(paths, sweep, df, merged.curves.to_pandas(), metric, direction,
                      sweep.param_keys, space, _objectives(sweep, metric))


def _objectives(sweep: SweepRecord, metric: str) -> tuple[tuple[str, str], ...]:
    """The search's objectives when it has several and ranks by one of them; a report ranked
    by another metric (``--metric``) looks at that metric alone."""
    goals = tuple(zip(sweep.search.metrics, sweep.search.directions, strict=False))
    return goals if len(goals) > 1 and metric in sweep.search.metrics else ()


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _check_metrics(df: pd.DataFrame, names: Sequence[str]) -> None:
    numeric = [c for c in df.columns if _numeric(df[c])]
    for name in names:
        if name not in df.columns:
            raise ConfigError(f"the results have no metric {name!r}{closest(name, numeric)}; "
                              f"metrics: {', '.join(numeric)}")


def selection_scores(df: pd.DataFrame, weights: Mapping[str, float],
                     maximize: Sequence[str] = ()) -> pd.Series:
    """Weighted score of min-max normalised metrics; lower is better.

    >>> t = pd.DataFrame({"val_loss": [1.0, 2.0, 3.0], "train_time_s": [30.0, 10.0, 20.0]})
    >>> int(selection_scores(t, {"val_loss": 0.8, "train_time_s": 0.2}).idxmin())
    0
    """
    _check_metrics(df, list(weights))
    score = pd.Series(0.0, index=df.index)
    for name, weight in weights.items():
        col = df[name].astype(float)
        span = col.max() - col.min()
        norm = (col - col.min()) / span if span > 0 else col * 0.0
        if name in maximize:
            norm = 1.0 - norm
        score += float(weight) * norm
    return score


def pareto_front(df: pd.DataFrame, a: str, b: str, maximize: Sequence[str] = ()) -> pd.Series:
    """True for the trials no other trial beats on both metrics."""
    _check_metrics(df, [a, b])
    x = df[a].to_numpy(float) * (-1 if a in maximize else 1)
    y = df[b].to_numpy(float) * (-1 if b in maximize else 1)
    dominated = np.zeros(len(df), dtype=bool)
    for i in range(len(df)):
        better = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        dominated[i] = bool(better.any())
    return pd.Series(~dominated, index=df.index)
