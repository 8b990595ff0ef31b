"""Narrowing a search space around the best trial: the rule between a campaign's stages.

A space in the format of a sweep record (the dicts of sweep.yaml ``space:``, keys ``key``,
``kind``, ``choices``, ``labels``, ``low``, ``high``, ``log``, ``step``, ``num``, ``prefix``,
``group``) and the best trial's values go in; a narrower space in the same format comes out,
ready to be frozen in the next stage's record. :func:`to_yaml_space` writes it as the
``search.space`` mapping of a ``conf/search/*.yaml`` file. Pure: no I/O, no pandas.

- log keys: ×/÷ ``factor`` around the best;
- linear floats: ± ``fraction`` of the original range around the best (with a ``step``: on
  the original grid, at least one step each side);
- ints: ± ``int_steps`` steps around the best, on the original step grid;
- categoricals and config groups: the ``top`` best choices (by ``ranked``), always with the
  best's own; without a ranking, a list of numbers keeps the best and its neighbours, any
  other list the best alone.

At an edge of the range the window is clipped to it and shifted inward to keep its width
(a campaign's narrowing), or, with ``past_edges=True`` (``sweeper next``), it reaches past
the edge the best sits at, and a list of numbers grows past its end in its own spacing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeper.errors import SpaceError

__all__ = ["EDGE_FRACTION", "at_edge", "narrow_space", "to_yaml_space", "yaml_entry"]

#: A best value within this fraction of the range's width from an end is "at the edge".
EDGE_FRACTION = 0.05


@dataclass(frozen=True)
class _Rule:
    factor: float | None
    fraction: float
    int_steps: int | None
    top: int
    past_edges: bool


def narrow_space(space: Sequence[Mapping[str, Any]], best: Mapping[str, Any], *,
                 factor: float | None = 3.0, fraction: float = 0.25,
                 int_steps: int | None = 2, top: int = 2,
                 ranked: Mapping[str, Sequence[Any]] | None = None,
                 past_edges: bool = False) -> list[dict[str, Any]]:
    """The space narrowed around ``best`` (key -> the best trial's value), as new records.

    ``factor``: log keys go to [best/factor, best*factor]; None: ± ``fraction`` of the
    range's width in log space. ``fraction``: linear floats go to best ± fraction x
    (high - low), so 0.25 halves the width. ``int_steps``: ints go to best ± int_steps x step
    (step 1 when unset); None: ± ``fraction`` of the range, rounded outward. ``top``: how many
    choices a categorical keeps. ``ranked``: per categorical key, its choices best first
    (e.g. by the best metric each reached); keys without one keep the best and its
    neighbours (a list of numbers) or the best alone. ``past_edges``: see the module doc.
    A key missing from ``best`` (or None, or NaN) and a one-point range are kept as they are.

    >>> lr = {"key": "lr", "kind": "float", "low": 1e-4, "high": 1e-1, "log": True}
    >>> narrow_space([lr], {"lr": 1e-3})[0]["low"], narrow_space([lr], {"lr": 1e-3})[0]["high"]
    (0.0003333, 0.003)
    """
    rule = _checked_rule(factor, fraction, int_steps, top, past_edges)
    out = []
    for spec in space:
        key = str(spec["key"])
        value = best.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(dict(spec))
        elif spec.get("kind", "categorical") == "categorical":
            out.append(_narrow_choices(spec, value, rule, (ranked or {}).get(key)))
        else:
            out.append(_narrow_range(spec, value, rule))
    return out


def _checked_rule(factor: float | None, fraction: float, int_steps: int | None, top: int,
                  past_edges: bool) -> _Rule:
    if factor is not None and not factor > 1:
        raise SpaceError(f"`factor` must be > 1 (log keys go to best/factor..best*factor), "
                         f"got {factor}; e.g. 3")
    if not 0 < fraction:
        raise SpaceError(f"`fraction` must be > 0 (a share of each range), got {fraction}; "
                         "e.g. 0.25")
    if int_steps is not None and int_steps < 1:
        raise SpaceError(f"`int_steps` must be >= 1, got {int_steps}; e.g. 2")
    if top < 1:
        raise SpaceError(f"`top` must be >= 1 (choices kept per categorical), got {top}")
    return _Rule(factor, fraction, int_steps, top, past_edges)


def at_edge(spec: Mapping[str, Any], best: Any) -> str | None:
    """'low' or 'high' when ``best`` sits at that end of its range, or of its list of at least
    three numbers; None inside, or for a one-point range.

    >>> at_edge({"kind": "float", "low": 0.0, "high": 1.0}, 0.99)
    'high'
    """
    if spec.get("kind", "categorical") == "categorical":
        choices = list(spec.get("choices") or [])
        if len(choices) < 3 or not _numeric(choices):
            return None
        ordered = sorted(choices)
        return "low" if best == ordered[0] else "high" if best == ordered[-1] else None
    log = bool(spec.get("log"))
    lo, hi, b = (_u(float(v), log) for v in (spec["low"], spec["high"], best))
    width = hi - lo
    if width <= 0:
        return None
    if b - lo <= EDGE_FRACTION * width:
        return "low"
    return "high" if hi - b <= EDGE_FRACTION * width else None


# ---- ranges -------------------------------------------------------------------------------

def _u(x: float, log: bool) -> float:
    return math.log(x) if log else x


def _inv(u: float, log: bool) -> float:
    return math.exp(u) if log else u


def _narrow_range(spec: Mapping[str, Any], best: Any, rule: _Rule) -> dict[str, Any]:
    log, kind = bool(spec.get("log")), spec.get("kind")
    lo, hi = float(spec["low"]), float(spec["high"])
    if lo >= hi:
        return dict(spec)  # one point: nothing to narrow
    u_lo, u_hi, b = _u(lo, log), _u(hi, log), _u(float(best), log)
    half = _half_width(spec, rule, u_hi - u_lo)
    if rule.past_edges:
        a, z = _past_edge_window(at_edge(spec, best), b, half, u_lo, u_hi)
    else:
        a, z = _clipped_window(min(max(b, u_lo), u_hi), half, u_lo, u_hi)
    low, high = _inv(a, log), _inv(z, log)
    if not rule.past_edges:  # the range's own ends, not exp(log(end)) a hair off them
        low, high = (lo if a <= u_lo else low), (hi if z >= u_hi else high)
    if rule.past_edges and not log and lo >= 0:
        low = max(0.0, low)  # a key that was never negative stays so
    if spec.get("step") is not None:
        low, high = _on_grid(spec, low, high, rule.past_edges and lo >= 0)
    elif kind == "int":
        low, high = max(math.floor(low), 1 if log else -(2**62)), math.ceil(high)
    else:
        low, high = _decimal(low, high, float(best))
    if not rule.past_edges:
        low, high = max(low, spec["low"]), min(high, spec["high"])
    return {**spec, "low": low, "high": high}


def _half_width(spec: Mapping[str, Any], rule: _Rule, width: float) -> float:
    """Half the new window's width, in the key's own scale (log units for a log key)."""
    if spec.get("log"):
        return math.log(rule.factor) if rule.factor is not None else rule.fraction * width
    step = spec.get("step")
    if spec.get("kind") == "int" and rule.int_steps is not None:
        return rule.int_steps * float(step or 1)
    # a stepped float keeps at least one step on each side of the best
    return max(rule.fraction * width, float(step or 0))


def _past_edge_window(edge: str | None, b: float, half: float, u_lo: float,
                      u_hi: float) -> tuple[float, float]:
    if edge == "low":
        return b - 2 * half, b + half
    if edge == "high":
        return b - half, b + 2 * half
    return max(u_lo, b - half), min(u_hi, b + half)


def _clipped_window(b: float, half: float, u_lo: float, u_hi: float) -> tuple[float, float]:
    """[b - half, b + half] inside [u_lo, u_hi], shifted inward to keep its width."""
    if b - half <= u_lo:
        return u_lo, min(u_lo + 2 * half, u_hi)
    if b + half >= u_hi:
        return max(u_hi - 2 * half, u_lo), u_hi
    return b - half, b + half


def _on_grid(spec: Mapping[str, Any], low: float, high: float,
             non_negative: bool) -> tuple[Any, Any]:
    """The window widened outward onto the original grid ``low + k * step``."""
    lo, hi, step = spec["low"], spec["high"], spec["step"]
    k_low = math.floor((low - lo) / step + 1e-9)
    k_high = math.ceil((high - lo) / step - 1e-9)
    if non_negative and lo + k_low * step < 0:
        k_low = math.ceil(-lo / step - 1e-9)
    if spec.get("kind") == "int":
        return int(lo + k_low * step), int(lo + k_high * step)
    k_top = math.floor((hi - lo) / step + 1e-9)  # the last grid point, within the range
    if k_high - k_low == 1 and k_top > 1:
        # one step of floats may measure a hair under `step`, which the space refuses: take two
        k_high, k_low = (k_high + 1, k_low) if k_high < k_top else (k_high, k_low - 1)
    low = lo if k_low == 0 else float(f"{lo + k_low * step:.12g}")
    high = hi if k_high == k_top and math.isclose(lo + k_top * step, hi) else \
        float(f"{lo + k_high * step:.12g}")
    return low, high


def _decimal(low: float, high: float, best: float) -> tuple[float, float]:
    """Bounds with 4 significant digits, or more where 4 would drop the best or close the
    window."""
    inside = min(max(best, low), high)
    for digits in (4, 6, 9, 12, 17):
        r_low, r_high = float(f"{low:.{digits}g}"), float(f"{high:.{digits}g}")
        if r_low < r_high and r_low <= inside <= r_high:
            return r_low, r_high
    return low, high


# ---- lists --------------------------------------------------------------------------------

def _numeric(choices: Sequence[Any]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


def _narrow_choices(spec: Mapping[str, Any], best: Any, rule: _Rule,
                    ranking: Sequence[Any] | None) -> dict[str, Any]:
    choices = list(spec.get("choices") or [])
    if not choices:  # a key the record knows nothing about: the best alone
        return {**spec, "choices": [best]}
    if best not in choices:
        raise SpaceError(f"the best value {best!r} of '{spec['key']}' is not one of its "
                         f"choices {choices}; pass the best trial's values of this space")
    best = choices[choices.index(best)]  # the record's own value (32, not 32.0)
    if ranking is not None:
        kept = _top_ranked(choices, best, ranking, rule.top)
    elif _numeric(choices):
        kept = _neighbours(sorted(choices), best, rule)
        if rule.past_edges:
            kept = sorted({*kept, *_beyond(sorted(choices), best, at_edge(spec, best))})
    else:
        kept = [best]
    return _with_choices(spec, choices, kept)


def _top_ranked(choices: list[Any], best: Any, ranking: Sequence[Any], top: int) -> list[Any]:
    """The ``top`` best-ranked choices with ``best`` among them, in the choices' own order."""
    ranked = [best]
    for c in ranking:
        if len(ranked) >= top:
            break
        if c in choices and c not in ranked:
            ranked.append(c)
    return [c for c in choices if c in ranked]


def _neighbours(ordered: list[Any], best: Any, rule: _Rule) -> list[Any]:
    start = ordered.index(best) - (rule.top - 1) // 2
    if rule.past_edges:  # cut at the end, where _beyond adds a value past it
        return ordered[max(0, start): start + rule.top]
    start = max(0, min(start, len(ordered) - rule.top))  # shifted inward to keep `top`
    return ordered[start: start + rule.top]


def _beyond(ordered: list[Any], best: Any, edge: str | None) -> list[Any]:
    """One value past the end the best sits at, in the list's own spacing (geometric when
    the list's two end values are positive)."""
    if edge is None or len(ordered) < 2:
        return []
    a, b = (ordered[0], ordered[1]) if edge == "low" else (ordered[-2], ordered[-1])
    if a > 0 and b > 0:
        ratio = b / a
        step = best / ratio if edge == "low" else best * ratio
    else:
        step = best - (b - a) if edge == "low" else best + (b - a)
    step = round(step) if all(isinstance(c, int) for c in ordered) else float(f"{step:.6g}")
    return [step] if step not in ordered else []


def _with_choices(spec: Mapping[str, Any], choices: list[Any], kept: list[Any]) -> dict[str, Any]:
    out = {**spec, "choices": kept}
    labels = spec.get("labels")
    if labels is not None and len(labels) == len(choices):
        from sweeper.space import encode_value  # Hydra, only for a value the list did not have

        out["labels"] = [labels[choices.index(c)] if c in choices else encode_value(c)
                         for c in kept]
    return out


# ---- the YAML form ------------------------------------------------------------------------

def to_yaml_space(space: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``search.space`` mapping of a conf/search file for a space in record format.

    >>> to_yaml_space([{"key": "h", "kind": "int", "low": 16, "high": 64, "step": 16},
    ...                {"key": "bs", "kind": "categorical", "choices": [32, 64]}])
    {'h': {'type': 'int', 'low': 16, 'high': 64, 'step': 16}, 'bs': [32, 64]}
    """
    return {f"{spec.get('prefix') or ''}{spec['key']}": yaml_entry(spec) for spec in space}


def yaml_entry(spec: Mapping[str, Any]) -> Any:
    """One key's entry in ``search.space``: a list, or a mapping with ``type``."""
    kind, log = spec.get("kind", "categorical"), bool(spec.get("log"))
    if kind == "categorical":
        values = list(spec.get("choices") or [])
        return {"type": "loguniform", "values": values} if log else values
    out: dict[str, Any]
    if kind == "int":
        out = {"type": "int", "low": int(spec["low"]), "high": int(spec["high"])}
        if log:
            out["log"] = True
    else:
        out = {"type": "loguniform" if log else "uniform", "low": float(spec["low"]),
               "high": float(spec["high"])}
    if spec.get("step") is not None:
        out["step"] = int(spec["step"]) if kind == "int" else spec["step"]
    if spec.get("num") is not None:
        out["num"] = int(spec["num"])
    return out
