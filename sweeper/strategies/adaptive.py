"""What an adaptive sweep plans up front: its config variants, not its trials.

Adaptive methods (tpe, gp, cmaes) ask Optuna for each trial as a worker frees up
(:mod:`sweeper.asking`), so the planned trial table has no rows. The config groups in the
space are still composed once each at plan time, as for grid and random (which also checks
them): this design lists every combination of group options, one row each, for the planner
to compose; the values of the other keys are placeholders and never run.
"""

from __future__ import annotations

import math

import numpy as np

from sweeper.errors import SpaceError
from sweeper.space import Param
from sweeper.strategies._base import Design, Strategy

__all__ = ["VariantsOnly"]


class VariantsOnly(Strategy):
    """Every combination of config-group options (see the module docstring).

    >>> from sweeper.space import with_group_flag
    >>> g = with_group_flag(Param.categorical("model", ["a", "b"]), True)
    >>> VariantsOnly(100).propose((g, Param("lr", "float", low=0.1, high=1.0))).n_trials
    2
    """

    def __init__(self, max_variants: int) -> None:
        self.max_variants = max_variants

    def propose(self, params: tuple[Param, ...]) -> Design:
        groups = [p for p in params if p.group]
        n = math.prod(len(p.choices) for p in groups)
        if n > self.max_variants:
            raise SpaceError(
                f"the config groups in the space make {n:,} combinations, each composed at "
                f"plan time, over search.max_trials={self.max_variants:,}; search fewer groups")
        grid = np.indices([len(p.choices) for p in groups]).reshape(len(groups), -1) \
            if groups else np.zeros((0, 1), dtype=np.int64)
        columns = []
        row = 0
        for p in params:
            if p.group:
                columns.append((p, grid[row].astype(np.int64)))
                row += 1
            elif p.kind == "categorical":
                columns.append((p, np.zeros(n, dtype=np.int64)))
            else:
                dtype = np.int64 if p.kind == "int" else np.float64
                columns.append((p, np.full(n, p.low, dtype=dtype)))
        return Design(n, tuple(columns))
