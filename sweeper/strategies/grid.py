"""Grid search: the exact Cartesian product, last key varying fastest (as in Hydra)."""

from __future__ import annotations

import math

import numpy as np

from sweeper.errors import SpaceError
from sweeper.space import Param
from sweeper.strategies._base import Design, Strategy

__all__ = ["GridStrategy"]


class GridStrategy(Strategy):
    """Every combination of the parameters' values, each exactly once.

    ``max_size`` refuses bigger grids; ``limit_name`` is the setting the message tells
    the user to raise.

    >>> from sweeper.space import Param
    >>> GridStrategy().propose((Param.categorical("a", [1, 2]), Param.categorical("b", [3, 4, 5]))).n_trials
    6
    """

    def __init__(self, max_size: int = 100_000, n_trials: int | None = None,
                 allow_truncate: bool = False, limit_name: str = "search.max_trials") -> None:
        self.max_size = max_size
        self.n_trials = n_trials
        self.allow_truncate = allow_truncate
        self.limit_name = limit_name

    def propose(self, params: tuple[Param, ...]) -> Design:
        # Count before listing: a typo such as range(1,100000000) must fail here, not after
        # it has taken gigabytes.
        self._check_size([p.grid_size() for p in params])
        grid = tuple(p.grid() for p in params)
        sizes = [p.size or 0 for p in grid]
        total = math.prod(sizes)
        n = total
        if self.n_trials is not None and self.n_trials < total:
            if not self.allow_truncate:
                raise SpaceError(
                    f"search.n_trials={self.n_trials} would cut the {total}-point grid; "
                    "drop n_trials, or set search.allow_truncate=true to keep the first ones"
                )
            n = self.n_trials
        flat = np.arange(n, dtype=np.int64)
        indices = np.unravel_index(flat, sizes) if sizes else ()
        return Design(n_trials=n, columns=tuple(
            (p, np.asarray(ix, dtype=np.int64)) for p, ix in zip(grid, indices, strict=True)
        ))

    def _check_size(self, sizes: list[int]) -> None:
        total = math.prod(sizes)
        if total > self.max_size:
            raise SpaceError(
                f"the grid has {total:,} points ({' x '.join(f'{s:,}' for s in sizes)}), over "
                f"{self.limit_name}={self.max_size:,}; narrow the space, raise "
                f"{self.limit_name}, or use search.method=random with n_trials"
            )
