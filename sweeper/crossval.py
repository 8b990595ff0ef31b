"""Cross-validated results: one row per config, the metric's aggregate over its folds and its
spread. Used by ``merge`` and ``report`` on a sweep with ``search.cross_validation``, and by
a campaign's top_k_cv stage to choose the final config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweeper.state import TrialState

__all__ = ["cv_table"]


def cv_table(results: pd.DataFrame, keys: Sequence[str], metric: str, direction: str,
             aggregation: str = "mean") -> pd.DataFrame:
    """Per config (the values of ``keys``): the ``aggregation`` of ``metric`` over its completed
    folds, their std and count; best first.

    >>> df = pd.DataFrame({"lr": [1, 1, 2, 2], "data.fold": [0, 1, 0, 1],
    ...                    "status": [TrialState.COMPLETED.value] * 4,
    ...                    "val_loss": [1.0, 3.0, 0.5, 1.5]})
    >>> cv_table(df, ["lr"], "val_loss", "minimize").to_dict("records")[0]
    {'lr': 2, 'val_loss_mean': 1.0, 'val_loss_std': 0.7071067811865476, 'folds': 2}
    """
    name = f"{metric}_{aggregation}"
    done = results[results["status"] == TrialState.COMPLETED.value] if "status" in results \
        else results
    if done.empty or metric not in done:
        return pd.DataFrame(columns=[*keys, name, f"{metric}_std", "folds"])
    grouped = done.groupby(list(keys), dropna=False)[metric]
    table = grouped.agg([aggregation, "std", "count"]).reset_index()
    table = table.rename(columns={aggregation: name, "std": f"{metric}_std", "count": "folds"})
    return table.sort_values(name, ascending=direction == "minimize", ignore_index=True)


def cv_keys(record: Any) -> list[str]:
    """The keys that make a config: the searched ones, less the fold."""
    fold = record.search.cross_validation.fold_key.lstrip("+")
    return [k for k in record.param_keys if k != fold]
