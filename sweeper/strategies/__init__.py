"""Search strategies: grid and random now; Optuna-backed adaptive ones later."""

from __future__ import annotations

from sweeper.errors import SpaceError
from sweeper.schema import SEARCH_METHODS, SearchConf
from sweeper.strategies._base import Design, Strategy
from sweeper.strategies.grid import GridStrategy
from sweeper.strategies.random import RandomStrategy

__all__ = ["Design", "GridStrategy", "RandomStrategy", "Strategy", "make_strategy"]


def make_strategy(search: SearchConf) -> Strategy:
    """The strategy that ``search.method`` names, with its settings checked."""
    from sweeper.errors import closest

    if search.n_trials is not None and search.n_trials <= 0:
        raise SpaceError(
            f"search.n_trials must be a positive integer, got {search.n_trials}; "
            "e.g. search.n_trials=20"
        )
    if search.method == "grid":
        return GridStrategy(search.max_grid_size, search.n_trials, search.allow_truncate)
    if search.method == "random":
        if search.n_trials is None:
            raise SpaceError("search.method=random needs search.n_trials, e.g. search.n_trials=20")
        return RandomStrategy(search.n_trials, search.seed)
    raise SpaceError(
        f"unknown search.method {search.method!r}{closest(str(search.method), SEARCH_METHODS)}; "
        f"options: {', '.join(SEARCH_METHODS)} (tpe, cmaes and gp come with adaptive search)"
    )
