"""Random search: seeded, log-aware, and never the same point twice in a finite space."""

from __future__ import annotations

import math

import numpy as np

from sweeper.errors import SpaceError
from sweeper.space import Param
from sweeper.strategies._base import Design, Strategy

__all__ = ["RandomStrategy"]

# Finite spaces up to this size are sampled exactly without replacement.
_EXACT_LIMIT = 10_000_000


class RandomStrategy(Strategy):
    """``n_trials`` points drawn with ``numpy.random.default_rng(seed)``.

    >>> from sweeper.space import Param
    >>> d = RandomStrategy(n_trials=4, seed=0).propose((Param.categorical("a", [1, 2, 3, 4]),))
    >>> sorted(d.columns[0][1].tolist())
    [0, 1, 2, 3]
    """

    def __init__(self, n_trials: int, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.seed = seed

    def propose(self, params: tuple[Param, ...]) -> Design:
        rng = np.random.default_rng(self.seed)
        sizes = [p.size for p in params]
        total = None if any(s is None for s in sizes) else math.prod(s or 0 for s in sizes)
        if total is not None and self.n_trials > total:
            raise SpaceError(
                f"search.n_trials={self.n_trials} exceeds the {total} distinct points of "
                "this finite space, and random search never repeats a point; lower "
                "n_trials or use search.method=grid"
            )
        if total is not None and total <= _EXACT_LIMIT and not any(
            p.log and p.kind != "categorical" for p in params
        ):
            flat = rng.choice(total, size=self.n_trials, replace=False)
            idx = np.unravel_index(flat, sizes) if sizes else ()  # type: ignore[arg-type]
            cols = [_lattice(p, np.asarray(i, dtype=np.int64)) for p, i in zip(params, idx, strict=True)]
        else:
            cols = _rejection(params, self.n_trials, rng)
        return Design(n_trials=self.n_trials, columns=tuple(zip(params, cols, strict=True)))


def _lattice(p: Param, i: np.ndarray) -> np.ndarray:
    """Map an index in 0..size-1 to the parameter's value (categoricals keep the index)."""
    if p.kind == "categorical":
        return i
    step = p.step if p.step is not None else 1
    values = p.low + i * step  # type: ignore[operator]
    return values.astype(np.int64) if p.kind == "int" else np.round(values, 12)


def _sample(p: Param, n: int, rng: np.random.Generator) -> np.ndarray:
    if p.kind == "categorical":
        return rng.integers(0, len(p.choices), size=n)
    lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.log and p.kind == "int":
        # Optuna's rule: widen by half a unit in log space so both ends are as likely.
        raw = np.exp(rng.uniform(math.log(lo - 0.5), math.log(hi + 0.5), size=n))
        return np.clip(np.rint(raw), lo, hi).astype(np.int64)
    if p.log:
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))
    if p.finite:
        return _lattice(p, rng.integers(0, p.size or 1, size=n))
    return rng.uniform(lo, hi, size=n)


def _rejection(params: tuple[Param, ...], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Draw in rounds, keeping first occurrences, until ``n`` distinct points."""
    cols: list[np.ndarray] = [np.empty(0, dtype=np.float64) for _ in params]
    for _ in range(100):
        draws = [_sample(p, n, rng) for p in params]
        cols = [np.concatenate([c, d]) if c.size else d for c, d in zip(cols, draws, strict=True)]
        if not params:
            return []
        rows = np.rec.fromarrays([c.astype(np.float64) for c in cols])
        _, first = np.unique(rows, return_index=True)
        keep = np.sort(first)
        cols = [c[keep] for c in cols]
        if len(keep) >= n:
            return [c[:n] for c in cols]
    raise SpaceError(
        f"could not draw {n} distinct points from this space after 100 rounds; lower "
        "search.n_trials or use search.method=grid"
    )
