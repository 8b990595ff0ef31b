"""Grid and random strategies: exact products, Hydra's order, seeded draws."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper.errors import ConfigError, SpaceError
from sweeper.schema import SearchConf
from sweeper.space import Param, param_from_yaml
from sweeper.strategies import GridStrategy, RandomStrategy, make_strategy


def _points(design) -> list[tuple]:
    cols = []
    for p, data in design.columns:
        cols.append([p.choices[i] if p.kind == "categorical" else v
                     for i, v in zip(data.tolist(), data.tolist())])
    return list(zip(*cols))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-50, 50), min_size=1, max_size=5, unique=True),
                min_size=1, max_size=4))
def test_grid_is_the_exact_product(value_lists: list[list[int]]) -> None:
    params = tuple(Param.categorical(f"k{i}", v) for i, v in enumerate(value_lists))
    design = GridStrategy().propose(params)
    points = _points(design)
    assert design.n_trials == math.prod(len(v) for v in value_lists)
    assert len(set(points)) == len(points)
    assert points == list(itertools.product(*value_lists))  # last key varies fastest


def test_grid_refuses_over_the_limit_with_the_count() -> None:
    params = tuple(Param.categorical(f"k{i}", list(range(10))) for i in range(4))
    with pytest.raises(SpaceError, match=r"10,000 points \(10 x 10 x 10 x 10\)"):
        GridStrategy(max_size=9_999).propose(params)


def test_grid_n_trials_cap_is_an_error_unless_allowed() -> None:
    params = (Param.categorical("a", [1, 2, 3]),)
    with pytest.raises(SpaceError, match="would cut the 3-point grid"):
        GridStrategy(n_trials=2).propose(params)
    assert GridStrategy(n_trials=2, allow_truncate=True).propose(params).n_trials == 2


def test_random_is_seeded_and_honours_log_and_steps() -> None:
    params = (
        param_from_yaml("lr", {"type": "loguniform", "low": 1e-5, "high": 1e-1}),
        param_from_yaml("h", {"type": "int", "low": 16, "high": 128, "step": 16}),
        param_from_yaml("d", {"type": "uniform", "low": 0.0, "high": 0.5}),
    )
    a = RandomStrategy(500, seed=3).propose(params)
    b = RandomStrategy(500, seed=3).propose(params)
    c = RandomStrategy(500, seed=4).propose(params)
    lr, h, d = (data for _, data in a.columns)
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a.columns, b.columns))
    assert not np.array_equal(a.columns[0][1], c.columns[0][1])
    assert lr.min() >= 1e-5 and lr.max() <= 1e-1
    # log-uniform: about a quarter of the draws in each of the four decades
    per_decade = np.histogram(np.log10(lr), bins=[-5, -4, -3, -2, -1])[0]
    assert per_decade.min() > 80
    assert set(h.tolist()) <= set(range(16, 129, 16)) and h.dtype == np.int64
    assert 0.0 <= d.min() and d.max() <= 0.5


def test_random_never_repeats_a_point_of_a_finite_space() -> None:
    params = (Param.categorical("a", [1, 2, 3]), param_from_yaml("b", {"type": "int", "low": 0, "high": 3}))
    design = RandomStrategy(12, seed=0).propose(params)
    points = _points(design)
    assert len(set(points)) == 12


def test_random_int_log_space_without_repeats() -> None:
    params = (param_from_yaml("b", {"type": "int", "low": 1, "high": 8, "log": True}),)
    design = RandomStrategy(8, seed=1).propose(params)
    assert sorted(design.columns[0][1].tolist()) == list(range(1, 9))


def test_random_asking_for_more_than_the_space_holds_is_an_error() -> None:
    with pytest.raises(SpaceError, match="exceeds the 6 distinct points"):
        RandomStrategy(7).propose((Param.categorical("a", [1, 2]), Param.categorical("b", [1, 2, 3])))


@pytest.mark.parametrize(("conf", "fragment"), [
    (SearchConf(method="bayes"), "unknown search.method 'bayes'"),
    (SearchConf(method="random"), "needs search.n_trials"),
    (SearchConf(method="random", n_trials=0), "must be a positive integer, got 0"),
    (SearchConf(method="grid", n_trials=-3), "must be a positive integer, got -3"),
])
def test_bad_search_settings(conf: SearchConf, fragment: str) -> None:
    with pytest.raises(SpaceError, match=fragment):
        make_strategy(conf)


def test_random_table_is_identical_in_two_fresh_processes() -> None:
    code = (
        "from sweeper.space import param_from_yaml as p;"
        "from sweeper.strategies import RandomStrategy as R;"
        "d=R(50, seed=7).propose((p('lr',{'type':'loguniform','low':1e-4,'high':1e-2}),"
        "p('b',[1,2,3]), p('h',{'type':'int','low':1,'high':9})));"
        "print([c.tolist() for _, c in d.columns])"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100


# -- prefix-stable random draws --------------------------------------------------------------

SPACES = {
    "finite lattice": (Param.categorical("a", [1, 2, 3]),
                       param_from_yaml("b", {"type": "int", "low": 0, "high": 40}),
                       param_from_yaml("c", {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.25})),
    "finite with a log int": (Param.categorical("a", ["x", "y"]),
                              param_from_yaml("b", {"type": "int", "low": 1, "high": 64, "log": True})),
    "continuous": (param_from_yaml("lr", {"type": "loguniform", "low": 1e-5, "high": 1e-1}),
                   param_from_yaml("d", {"type": "uniform", "low": 0.0, "high": 0.5}),
                   Param.categorical("opt", ["adam", "sgd"])),
    "huge lattice": (param_from_yaml("h", {"type": "int", "low": 1, "high": 10**12}),
                     Param.categorical("a", [1, 2])),
}


def _rows(design) -> list[tuple]:
    return list(zip(*(c.tolist() for _, c in design.columns)))


@settings(max_examples=40, deadline=None)
@given(space=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 2**32 - 1),
       small=st.integers(1, 60), extra=st.integers(0, 2000))
def test_random_draws_are_prefix_stable(space: str, seed: int, small: int, extra: int) -> None:
    params = SPACES[space]
    total = math.prod(p.size for p in params) if all(p.size for p in params) else None
    large = small + extra if total is None else min(small + extra, total)
    first = _rows(RandomStrategy(n_trials=small, seed=seed).propose(params))
    more = _rows(RandomStrategy(n_trials=large, seed=seed).propose(params))
    assert more[:small] == first
    assert len(set(more)) == len(more)  # never a repeated point


@pytest.mark.parametrize("space", sorted(SPACES))
def test_fifty_draws_start_with_the_twenty(space: str) -> None:
    twenty = RandomStrategy(n_trials=20, seed=5).propose(SPACES[space])
    fifty = RandomStrategy(n_trials=50, seed=5).propose(SPACES[space])
    for (_, a), (_, b) in zip(twenty.columns, fifty.columns):
        assert np.array_equal(b[:20], a) and a.dtype == b.dtype


def test_random_exhausts_a_finite_space_without_repeats() -> None:
    params = (Param.categorical("a", [1, 2, 3]), param_from_yaml("b", {"type": "int", "low": 0, "high": 99}))
    points = _points(RandomStrategy(300, seed=2).propose(params))
    assert sorted(points) == sorted(itertools.product([1, 2, 3], range(100)))


def test_random_is_uniform_over_a_lattice() -> None:
    params = (param_from_yaml("b", {"type": "int", "low": 0, "high": 9}),)
    firsts = [RandomStrategy(1, seed=s).propose(params).columns[0][1][0] for s in range(2000)]
    counts = np.bincount(firsts, minlength=10)
    assert counts.min() > 140 and counts.max() < 260  # 200 expected each


# -- search settings, checked before anything is drawn ---------------------------------------

@pytest.mark.parametrize(("conf", "fragment"), [
    (SearchConf(direction="sideways"), "unknown search.direction 'sideways'; options: minimize, maximize"),
    (SearchConf(direction="maximise"), "did you mean 'maximize'?"),
    (SearchConf(method="random", n_trials=10**9), "search.n_trials=1,000,000,000 is over search.max_trials=100,000"),
    (SearchConf(method="grid", n_trials=200_000), "is over search.max_trials=100,000"),
    (SearchConf(max_trials=0), "search.max_trials must be at least 1, got 0"),
    (SearchConf(max_grid_size=-1), "search.max_grid_size must be at least 1, got -1"),
])
def test_bad_search_settings_are_config_errors(conf: SearchConf, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_strategy(conf)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_grid_limit_is_max_trials_unless_max_grid_size_is_set() -> None:
    params = (Param.categorical("a", list(range(10))), Param.categorical("b", list(range(10))))
    with pytest.raises(SpaceError, match=r"100 points \(10 x 10\), over search.max_trials=99;"):
        make_strategy(SearchConf(max_trials=99)).propose(params)
    with pytest.raises(SpaceError, match=r"over search.max_grid_size=50;.*raise search.max_grid_size"):
        make_strategy(SearchConf(max_grid_size=50)).propose(params)
    assert make_strategy(SearchConf(max_trials=10, max_grid_size=100)).propose(params).n_trials == 100


def test_a_huge_grid_is_counted_not_listed() -> None:
    """Refused from the ranges' sizes: listing them first once took gigabytes."""
    # Sizes a listing grid can survive (it would fail on memory, not die); the CLI test in
    # test_bad_input.py runs the 10**8 case under a memory cap.
    params = (param_from_yaml("h", {"type": "int", "low": 1, "high": 100_000}),
              param_from_yaml("d", {"type": "uniform", "low": 0.0, "high": 1.0, "num": 100_000}),
              param_from_yaml("n", {"type": "int", "low": 1, "high": 10**7, "log": True, "num": 100_000}))
    tracemalloc.start()
    try:
        with pytest.raises(SpaceError, match=r"\(100,000 x 100,000 x 100,000\)"):
            GridStrategy().propose(params)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
