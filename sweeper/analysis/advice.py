"""What to search next: flags for the report, and ``sweeper next``'s search file.

The rule that narrows a space lives in :mod:`sweeper.narrow`, shared with staged campaigns;
``sweeper next`` applies it as it always has: every range half as wide (in log space for log
keys), moved past the edge where the best sits at one, lists cut to the best and its
neighbours and extended past their end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from sweeper.analysis.data import ReportData
from sweeper.narrow import at_edge, narrow_space, to_yaml_space

__all__ = ["advice", "next_search"]

#: ``sweeper next``: ± this fraction of every range (in log space for log keys) around the best
NEXT_FRACTION = 0.25
#: ``sweeper next`` with a grid: this many values per range without a step
NEXT_GRID_NUM = 3


def _best_value(data: ReportData, best: pd.Series, key: str) -> Any:
    value = best[key]
    return value.item() if hasattr(value, "item") else value


def advice(data: ReportData, best: pd.Series | None) -> list[str]:
    """Plain-language hints: edges of the space, curves still improving, failures."""
    notes = []
    if best is not None:
        for key in data.params:
            spec = data.space_of(key)
            if spec.get("group") or key not in best:
                continue
            edge = at_edge(spec, _best_value(data, best, key))
            if edge is not None:
                where = "bottom" if edge == "low" else "top"
                notes.append(f"the best {key}={_best_value(data, best, key):.4g} is at the {where} of "
                             f"what was searched: widen it {'down' if edge == 'low' else 'up'}ward "
                             "(`sweeper next` does)")
        curve = data.curves[data.curves["trial_id"] == best["trial_id"]].sort_values("epoch")
        if data.metric in curve and len(curve) >= 3:
            values = curve[data.metric].to_numpy(float)
            last_is_best = values[-1] <= values.min() if data.direction == "minimize" else values[-1] >= values.max()
            if last_is_best:
                notes.append(f"the best trial's {data.metric} was still improving at its last epoch "
                             f"({int(curve['epoch'].iloc[-1])}): more epochs may pay")
    bad = data.failed
    if len(bad) and len(bad) >= 0.1 * len(data.results):
        reasons = bad["error"].fillna(bad["status"]).map(lambda e: str(e).splitlines()[0][:80])
        top = ", ".join(f"{n} x {r}" for r, n in reasons.value_counts().head(3).items())
        notes.append(f"{len(bad)} of {len(data.results)} trials failed or were stopped: {top}")
    return notes


def next_search(data: ReportData, best: pd.Series, method: str = "grid",
                keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The search section of a conf/search file narrowed around ``best``."""
    chosen = list(keys or data.params)
    values = {k: _best_value(data, best, k) for k in chosen if k in best}
    narrowed = narrow_space([data.space_of(k) for k in chosen], values, factor=None,
                            fraction=NEXT_FRACTION, int_steps=None, top=3, past_edges=True)
    space = to_yaml_space([_with_num(spec, method) for spec in narrowed])
    return {"method": method, "metric": data.metric, "direction": data.direction,
            **({"n_trials": 20, "seed": 0} if method != "grid" else {}), "space": space}


def _with_num(spec: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A grid walks NEXT_GRID_NUM values of every range without a step; random needs none."""
    out = {k: v for k, v in spec.items() if k != "num"}
    if method == "grid" and out.get("kind") in ("float", "int") and out.get("step") is None:
        out["num"] = NEXT_GRID_NUM
    return out
