"""What to search next: flags for the report, and the one rule that narrows a space.

:func:`narrow` is the rule staged campaigns (coarse -> fine -> ...) will reuse: a space record
and the best value in, the next search's YAML entry out. Around an interior best it zooms in
(half the width, in log space for log keys); at an edge it moves past that edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweeper.analysis.data import ReportData

__all__ = ["advice", "narrow", "next_search"]

_EDGE = 0.05  # within 5% of the range's width from an end counts as "at the edge"


def _u(x: float, log: bool) -> float:
    return math.log(x) if log else x


def _inv(u: float, log: bool) -> float:
    return math.exp(u) if log else u


def _edge(spec: dict[str, Any], best: Any) -> str | None:
    """'low' or 'high' when the best value sits at that end of its range or ordered list."""
    if spec.get("kind") == "categorical":
        choices = spec.get("choices", [])
        if len(choices) < 3 or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                       for c in choices):
            return None
        ordered = sorted(choices)
        return "low" if best == ordered[0] else "high" if best == ordered[-1] else None
    log = bool(spec.get("log"))
    lo, hi, b = (_u(float(v), log) for v in (spec["low"], spec["high"], best))
    width = hi - lo
    if width <= 0:
        return None
    return "low" if b - lo <= _EDGE * width else "high" if hi - b <= _EDGE * width else None


def _narrow_list(choices: list[Any], best: Any, edge: str | None) -> list[Any]:
    ordered = sorted(choices)
    i = ordered.index(best)
    if edge is not None and len(ordered) >= 2:
        a, b = (ordered[0], ordered[1]) if edge == "low" else (ordered[-2], ordered[-1])
        if a > 0 and b > 0:  # extrapolate the list's own spacing, geometric when it grows so
            ratio = b / a
            step = best / ratio if edge == "low" else best * ratio
        else:
            step = best - (b - a) if edge == "low" else best + (b - a)
        step = round(step) if all(isinstance(c, int) for c in ordered) else float(f"{step:.6g}")
        beyond = [step] if step not in ordered else []
        return sorted({*ordered[max(0, i - 1): i + 2], *beyond})
    return ordered[max(0, i - 1): i + 2]


def narrow(spec: dict[str, Any], best: Any, method: str = "grid", num: int = 3) -> Any:
    """The next search's entry for one key, given its space record and the best value.

    >>> narrow({"kind": "float", "low": 1e-4, "high": 1e-2, "log": True}, 1e-2)["high"] > 1e-2
    True
    """
    kind = spec.get("kind", "categorical")
    if kind == "categorical":
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool)
                      for c in spec.get("choices", []))
        return _narrow_list(list(spec["choices"]), best, _edge(spec, best)) if numeric else [best]
    log = bool(spec.get("log"))
    lo, hi, b = (_u(float(v), log) for v in (spec["low"], spec["high"], best))
    half = (hi - lo) / 4 or abs(b) / 4 or 1.0
    edge = _edge(spec, best)
    if edge == "low":
        new = (b - 2 * half, b + half)
    elif edge == "high":
        new = (b - half, b + 2 * half)
    else:
        new = (max(lo, b - half), min(hi, b + half))
    low, high = (_inv(u, log) for u in new)
    if not log and float(spec["low"]) >= 0:
        low = max(0.0, low)  # a key that was never negative stays so
    out: dict[str, Any]
    if kind == "int":
        low, high = max(math.floor(low), 1 if log else -(2**62)), math.ceil(high)
        out = {"type": "int", "low": low, "high": high}
        if log:
            out["log"] = True
        elif spec.get("step"):
            out["step"] = int(spec["step"])
    else:
        out = {"type": "loguniform" if log else "uniform", "low": float(f"{low:.4g}"),
               "high": float(f"{high:.4g}")}
    if method == "grid" and (kind != "int" or not spec.get("step")):
        out["num"] = num
    return out


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
            edge = _edge(spec, _best_value(data, best, key))
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
    space = {}
    for key in keys or data.params:
        spec = data.space_of(key)
        prefix = spec.get("prefix", "")
        space[f"{prefix}{key}"] = narrow(spec, _best_value(data, best, key), method)
    return {"method": method, "metric": data.metric, "direction": data.direction,
            **({"n_trials": 20, "seed": 0} if method == "random" else {}), "space": space}
