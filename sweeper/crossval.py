"""Cross-validated results: one row per config, the metric's aggregate over its folds and its
spread. Used by ``merge`` and ``report`` on a sweep with ``search.cross_validation``, and by
a campaign's top_k_cv stage to choose the final config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweeper.schema import fold_key
from sweeper.state import TrialState

__all__ = ["cv_table"]


#: the CV table's column of how many of a config's folds were pruned
CUT = "folds_cut"


def cv_table(results: pd.DataFrame, keys: Sequence[str], metric: str, direction: str,
             aggregation: str = "mean") -> pd.DataFrame:
    """Per config (the values of ``keys``): the ``aggregation`` of ``metric`` over its completed
    folds, their std and count, and how many of its folds were pruned (``folds_cut``); best first, configs
    with a pruned fold (judged clearly worse on the folds they ran) after every other.

    >>> df = pd.DataFrame({"lr": [1, 1, 2, 2], "data.fold": [0, 1, 0, 1],
    ...                    "status": [TrialState.COMPLETED.value] * 4,
    ...                    "val_loss": [1.0, 3.0, 0.5, 1.5]})
    >>> cv_table(df, ["lr"], "val_loss", "minimize").to_dict("records")[0]
    {'lr': 2, 'val_loss_mean': 1.0, 'val_loss_std': 0.7071067811865476, 'folds': 2, 'folds_cut': 0}
    """
    name = f"{metric}_{aggregation}"
    status = results["status"] if "status" in results else None
    done = results[status == TrialState.COMPLETED.value] if status is not None else results
    if done.empty or metric not in done:
        return pd.DataFrame(columns=[*keys, name, f"{metric}_std", "folds", CUT])
    grouped = done.groupby(list(keys), dropna=False)[metric]
    table = grouped.agg([aggregation, "std", "count"]).reset_index()
    table = table.rename(columns={aggregation: name, "std": f"{metric}_std", "count": "folds"})
    pruned = results[status == TrialState.PRUNED.value] if status is not None else results[:0]
    cut = pruned.groupby(list(keys), dropna=False).size().rename(CUT).reset_index()
    table = table.merge(cut, on=list(keys), how="left") if len(cut) else \
        table.assign(**{CUT: 0})
    table[CUT] = table[CUT].fillna(0).astype(int)
    table = table.assign(_cut=table[CUT] > 0)
    table = table.sort_values(["_cut", name], ascending=[True, direction == "minimize"],
                              ignore_index=True)
    return table.drop(columns="_cut")


def cv_keys(record: Any) -> list[str]:
    """The keys that make a config: the searched ones, less the fold."""
    fold = fold_key(record.search.cross_validation)
    return [k for k in record.param_keys if k != fold]
