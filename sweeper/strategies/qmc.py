"""Quasi-random search: a scrambled Sobol design, written into the trial table at plan time.

Static, like grid and random: every trial has a fixed index (its row), so parallel workers
never share a sequence counter. Optuna's QMCSampler keeps its index in a study attribute
that workers do not update atomically, so parallel workers would duplicate points.

Each parameter is one dimension of the unit cube, mapped to its range by random search's own
mapping (log scale, int rounding, steps, categorical index), so ``qmc`` and ``random`` read
a space the same way and differ only in where the points fall. Like random search it is
seeded, prefix-stable (the first ``n`` points of a larger ``n_trials`` are the ``n`` points),
and never proposes the same point twice in a finite space.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, cast

import numpy as np

from sweeper.errors import ConfigError, SpaceError
from sweeper.space import Param
from sweeper.strategies._base import Design, Strategy
from sweeper.strategies.random import _sample, _unseen

__all__ = ["QmcStrategy"]

# Sobol rows drawn at a time: a power of two (balanced blocks) and never derived from
# n_trials, so the rows kept do not depend on n_trials (prefix stability).
_BLOCK = 1024
# scipy's Sobol generates at most 2**30 points with its default 30 bits.
_MAX_BLOCKS = 2**30 // _BLOCK


class QmcStrategy(Strategy):
    """``n_trials`` points of a Sobol sequence scrambled with ``seed``.

    Powers of two are best: the first ``2**m`` points of a Sobol sequence are balanced, so
    each parameter's range splits into ``2**m`` equally likely slices with exactly one point
    in each (and so on for pairs of parameters, at coarser slices). Any other ``n_trials`` is
    allowed and still spreads points more evenly than random draws, but its last slices are
    unevenly filled; in a finite space, skipping repeated points also costs some balance.

    >>> from sweeper.space import Param
    >>> d = QmcStrategy(n_trials=4, seed=0).propose((Param("x", "float", low=0.0, high=1.0),))
    >>> sorted(int(x * 4) for x in d.columns[0][1])
    [0, 1, 2, 3]
    """

    def __init__(self, n_trials: int, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.seed = seed

    def propose(self, params: tuple[Param, ...]) -> Design:
        sizes = [p.size for p in params]
        total = None if any(s is None for s in sizes) else math.prod(s or 0 for s in sizes)
        if total is not None and self.n_trials > total:
            raise SpaceError(
                f"search.n_trials={self.n_trials} exceeds the {total} distinct points of "
                "this finite space, and qmc search never repeats a point; lower n_trials or "
                "use search.method=grid"
            )
        cols = _distinct_rows(params, self.n_trials, self.seed) if params else []
        return Design(n_trials=self.n_trials, columns=tuple(zip(params, cols, strict=True)))


def _distinct_rows(params: tuple[Param, ...], n: int, seed: int) -> list[np.ndarray]:
    """The first ``n`` distinct rows of the mapped Sobol sequence, column by column.

    Whether a row is kept depends only on the rows before it, so the result is a prefix of
    what a larger ``n`` gives.
    """
    engine = _sobol(len(params), seed)
    kept: list[list[np.ndarray]] = []
    seen: set[bytes] = set()
    rounds = min(_MAX_BLOCKS, max(100, math.ceil(100 * n / _BLOCK)))
    for _ in range(rounds):
        with warnings.catch_warnings():
            # Blocks are powers of two; the filter keeps the note from the user if that changes.
            warnings.filterwarnings("ignore", message="The balance properties of Sobol")
            unit = engine.random(_BLOCK)
        draws = [_sample(p, _BLOCK, cast(Any, _UnitDraws(unit[:, j])))
                 for j, p in enumerate(params)]
        fresh = _unseen(draws, seen)
        kept.append([d[fresh] for d in draws])
        if len(seen) >= n:
            return [np.concatenate(c)[:n] for c in zip(*kept, strict=True)]
    raise SpaceError(
        f"could not find {n} distinct points of this space in {rounds * _BLOCK:,} Sobol "
        "points; lower search.n_trials or use search.method=grid"
    )


def _sobol(d: int, seed: int) -> Any:
    try:
        from scipy.stats import qmc  # lazy: scipy's import is slow, and only qmc plans need it
    except ImportError:
        raise ConfigError("search.method=qmc needs scipy (its Sobol sequence), which is not "
                          "installed; pip install 'scipy>=1.15', or use search.method=random") \
            from None
    return qmc.Sobol(d=d, scramble=True, rng=seed)


class _UnitDraws:
    """Stands in for the generator random's ``_sample`` draws one column from, and hands it
    a Sobol column instead of fresh uniforms.

    This reuses random search's mapping without a second copy. It cannot be moved into a
    shared ``unit -> value`` function in random.py: random draws categoricals and lattices
    with ``integers``, not from uniforms, and changing that would change every random
    table already planned (and break growing them).
    """

    def __init__(self, unit: np.ndarray) -> None:
        self._unit: np.ndarray | None = unit

    def _take(self, size: int | None) -> np.ndarray:
        unit = self._unit
        if unit is None or size != len(unit):
            raise RuntimeError("random._sample must draw each parameter's column once")
        self._unit = None
        return unit

    def uniform(self, low: float, high: float, size: int | None = None) -> np.ndarray:
        return np.asarray(low + self._take(size) * (high - low), dtype=np.float64)

    def integers(self, low: int, high: int, size: int | None = None) -> np.ndarray:
        # unit < 1, so floor stays below high; the clip guards the float product
        index = np.floor(self._take(size) * (high - low)).astype(np.int64) + low
        return np.minimum(index, high - 1)
