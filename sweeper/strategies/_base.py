"""The strategy extension point.

A strategy turns a :class:`~sweeper.space.SearchSpace` into trials. Grid and random
propose every trial at once, before anything runs. Adaptive strategies (TPE, CMA-ES,
GP through Optuna) will propose in rounds and ``observe`` finished trials, so the
trial table accepts rows added while a sweep runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sweeper.space import Param

__all__ = ["Design", "Strategy"]


@dataclass(frozen=True)
class Design:
    """Proposed trials, column by column.

    For a categorical parameter the array holds indices into ``param.choices``;
    for a ranged one it holds the values themselves.
    """

    n_trials: int
    columns: tuple[tuple[Param, np.ndarray], ...]


class Strategy(ABC):
    """Proposes trials for a search space; adaptive ones also learn from results."""

    @abstractmethod
    def propose(self, params: tuple[Param, ...]) -> Design:
        """Return the trials to run next (all of them, for non-adaptive strategies)."""

    def observe(self, trial_id: int, metrics: dict[str, float]) -> None:  # noqa: B027
        """Learn from a finished trial. Grid and random ignore results."""
