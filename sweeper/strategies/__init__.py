"""Search strategies: grid, random and qmc plan every trial up front; the adaptive ones
(tpe, gp, cmaes) ask Optuna as workers free up (:mod:`sweeper.strategies.adaptive`)."""

from __future__ import annotations

from sweeper.errors import ConfigError, SpaceError, closest
from sweeper.schema import DIRECTIONS, SEARCH_METHODS, SearchConf
from sweeper.strategies._base import Design, Strategy
from sweeper.strategies.grid import GridStrategy
from sweeper.strategies.qmc import QmcStrategy
from sweeper.strategies.random import RandomStrategy

__all__ = ["Design", "GridStrategy", "QmcStrategy", "RandomStrategy", "Strategy", "check_search",
           "make_strategy"]


def make_strategy(search: SearchConf) -> Strategy:
    """The strategy that ``search.method`` names, with its settings checked.

    >>> make_strategy(SearchConf(method="random", n_trials=20)).n_trials
    20
    """
    check_search(search)
    if search.method == "random":
        return RandomStrategy(search.n_trials or 0, search.seed)
    if search.method == "qmc":
        return QmcStrategy(search.n_trials or 0, search.seed)
    if search.max_grid_size is not None:
        return GridStrategy(search.max_grid_size, search.n_trials, search.allow_truncate,
                            "search.max_grid_size")
    return GridStrategy(search.max_trials, search.n_trials, search.allow_truncate)


def check_search(search: SearchConf) -> None:
    """Refuse bad ``search.*`` settings before anything is listed or drawn."""
    if search.method not in SEARCH_METHODS:
        raise SpaceError(
            f"unknown search.method {search.method!r}{closest(str(search.method), SEARCH_METHODS)}; "
            f"options: {', '.join(SEARCH_METHODS)}"
        )
    for direction in search.directions:
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"unknown search.direction {direction!r}"
                f"{closest(direction, DIRECTIONS)}; options: {', '.join(DIRECTIONS)}"
            )
    for name in ("max_trials", "max_grid_size"):
        limit = getattr(search, name)
        if limit is not None and limit < 1:
            raise ConfigError(f"search.{name} must be at least 1, got {limit}; e.g. "
                              f"search.{name}=100000")
    if search.method in ("random", "qmc") and search.seed < 0:
        # numpy's generators (which both draw from) refuse negative seeds with a traceback
        raise ConfigError(f"search.seed must be at least 0 for search.method={search.method}, "
                          f"got {search.seed}; e.g. search.seed=0")
    _check_n_trials(search)


def _check_n_trials(search: SearchConf) -> None:
    n = search.n_trials
    if n is not None and n <= 0:
        raise SpaceError(f"search.n_trials must be a positive integer, got {n}; "
                         "e.g. search.n_trials=20")
    # Before anything is drawn: n_trials=10**9 once grew to 24 GB before it was killed.
    if n is not None and n > search.max_trials:
        raise SpaceError(
            f"search.n_trials={n:,} is over search.max_trials={search.max_trials:,} (a typo "
            f"can ask for billions of trials); lower n_trials, or raise search.max_trials={n}"
        )
    if search.method != "grid" and n is None:
        example = 16 if search.method == "qmc" else 20  # Sobol points balance at powers of two
        raise SpaceError(f"search.method={search.method} needs search.n_trials, e.g. "
                         f"search.n_trials={example}")
