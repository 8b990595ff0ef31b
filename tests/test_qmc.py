"""search.method=qmc: a seeded Sobol design planned up front, mapped like random search."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import qmc

from sweeper.errors import ConfigError, SpaceError
from sweeper.schema import SearchConf
from sweeper.space import Param, param_from_yaml
from sweeper.strategies import QmcStrategy, RandomStrategy, make_strategy

MIXED = (
    param_from_yaml("lr", {"type": "loguniform", "low": 1e-5, "high": 1e-1}),
    param_from_yaml("h", {"type": "int", "low": 16, "high": 128, "step": 16}),
    param_from_yaml("d", {"type": "uniform", "low": 0.0, "high": 0.5}),
    param_from_yaml("w", {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.25}),
    param_from_yaml("layers", {"type": "int", "low": 1, "high": 8, "log": True}),
    Param.categorical("opt", ["adam", "sgd", "rmsprop", "adamw"]),
)


def _columns(design) -> dict[str, np.ndarray]:
    return {p.key: data for p, data in design.columns}


def _rows(design) -> list[tuple]:
    return list(zip(*(c.tolist() for _, c in design.columns)))


# -- the design ------------------------------------------------------------------------------

def test_values_honour_bounds_log_scale_steps_and_categoricals() -> None:
    design = QmcStrategy(256, seed=3).propose(MIXED)
    cols = _columns(design)
    assert design.n_trials == 256 and all(len(c) == 256 for c in cols.values())
    lr = cols["lr"]
    assert lr.dtype == np.float64 and lr.min() >= 1e-5 and lr.max() <= 1e-1
    # 256 balanced points: exactly a quarter in each of the four decades (log scale)
    assert np.histogram(np.log10(lr), bins=[-5, -4, -3, -2, -1])[0].tolist() == [64] * 4
    h = cols["h"]
    assert h.dtype == np.int64 and set(h.tolist()) == set(range(16, 129, 16))
    assert np.bincount(h // 16 - 1).tolist() == [32] * 8  # one slice of the cube per value
    assert 0.0 <= cols["d"].min() and cols["d"].max() < 0.5
    assert set(cols["w"].tolist()) == {0.0, 0.25, 0.5, 0.75, 1.0}
    layers = cols["layers"]
    assert layers.dtype == np.int64 and set(layers.tolist()) == set(range(1, 9))
    # int log scale: small values are more likely than large ones, as in random search
    assert (layers <= 2).sum() > (layers >= 7).sum()
    opt = cols["opt"]  # categoricals hold indices into the choices
    assert opt.dtype == np.int64 and np.bincount(opt).tolist() == [64] * 4


def test_each_of_n_slices_holds_one_point_at_a_power_of_two() -> None:
    x = param_from_yaml("x", {"type": "uniform", "low": -2.0, "high": 6.0})
    for seed in range(5):
        values = QmcStrategy(32, seed=seed).propose((x,)).columns[0][1]
        assert sorted(np.floor((values + 2.0) / 8.0 * 32).astype(int).tolist()) == list(range(32))


def test_seeded_and_deterministic() -> None:
    a = QmcStrategy(64, seed=7).propose(MIXED)
    b = QmcStrategy(64, seed=7).propose(MIXED)
    c = QmcStrategy(64, seed=8).propose(MIXED)
    assert all(np.array_equal(x, y) and x.dtype == y.dtype
               for (_, x), (_, y) in zip(a.columns, b.columns))
    assert not np.array_equal(a.columns[0][1], c.columns[0][1])


def test_table_is_identical_in_two_fresh_processes() -> None:
    code = (
        "from sweeper.space import param_from_yaml as p;"
        "from sweeper.strategies import QmcStrategy as Q;"
        "d=Q(50, seed=7).propose((p('lr',{'type':'loguniform','low':1e-4,'high':1e-2}),"
        "p('b',[1,2,3]), p('h',{'type':'int','low':1,'high':9})));"
        "print([c.tolist() for _, c in d.columns])"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100


def test_covers_the_space_more_evenly_than_random() -> None:
    params = (param_from_yaml("x", {"type": "uniform", "low": -2.0, "high": 3.0}),
              param_from_yaml("y", {"type": "uniform", "low": 10.0, "high": 20.0}))

    def discrepancy(design) -> float:
        x, y = (data for _, data in design.columns)
        return float(qmc.discrepancy(np.stack([(x + 2.0) / 5.0, (y - 10.0) / 10.0], axis=1)))

    for n in (16, 20, 64):
        sobol = [discrepancy(QmcStrategy(n, seed=s).propose(params)) for s in range(10)]
        draws = [discrepancy(RandomStrategy(n, seed=s).propose(params)) for s in range(10)]
        assert max(sobol) < np.median(draws) / 2, (n, sobol, draws)


def test_a_count_that_is_no_power_of_two_warns_nobody() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        design = QmcStrategy(20, seed=0).propose(MIXED)
    assert design.n_trials == 20


# -- prefix-stable: a larger n_trials keeps the first points -------------------------------

SPACES = {
    "mixed": MIXED,
    "finite lattice": (Param.categorical("a", [1, 2, 3]),
                       param_from_yaml("b", {"type": "int", "low": 0, "high": 40}),
                       param_from_yaml("c", {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.25})),
    "finite with a log int": (Param.categorical("a", ["x", "y"]),
                              param_from_yaml("b", {"type": "int", "low": 1, "high": 64, "log": True})),
    "one categorical": (Param.categorical("a", list("abcdefg")),),
}


@settings(max_examples=40, deadline=None)
@given(space=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 2**32 - 1),
       small=st.integers(1, 60), extra=st.integers(0, 2000))
def test_draws_are_prefix_stable(space: str, seed: int, small: int, extra: int) -> None:
    params = SPACES[space]
    total = math.prod(p.size for p in params) if all(p.size for p in params) else None
    small = small if total is None else min(small, total)
    large = small + extra if total is None else min(small + extra, total)
    first = _rows(QmcStrategy(n_trials=small, seed=seed).propose(params))
    more = _rows(QmcStrategy(n_trials=large, seed=seed).propose(params))
    assert more[:small] == first
    assert len(set(more)) == len(more)  # never a repeated point


@pytest.mark.parametrize("space", sorted(SPACES))
def test_forty_start_with_the_sixteen(space: str) -> None:
    sixteen = QmcStrategy(n_trials=7 if space == "one categorical" else 16, seed=5)
    forty = QmcStrategy(n_trials=7 if space == "one categorical" else 40, seed=5)
    a_design, b_design = sixteen.propose(SPACES[space]), forty.propose(SPACES[space])
    for (_, a), (_, b) in zip(a_design.columns, b_design.columns):
        assert np.array_equal(b[:len(a)], a) and a.dtype == b.dtype


# -- finite spaces: as random search, never a point twice ---------------------------------

def test_exhausts_a_finite_space_without_repeats() -> None:
    params = (Param.categorical("a", [1, 2, 3]), param_from_yaml("b", {"type": "int", "low": 0, "high": 99}))
    cols = [c.tolist() for _, c in QmcStrategy(300, seed=2).propose(params).columns]
    assert sorted(zip(*cols)) == sorted(itertools.product(range(3), range(100)))


def test_never_repeats_a_point_of_a_small_finite_space() -> None:
    params = (Param.categorical("a", [1, 2, 3]), param_from_yaml("b", {"type": "int", "low": 0, "high": 3}))
    assert len(set(_rows(QmcStrategy(10, seed=0).propose(params)))) == 10


def test_asking_for_more_than_the_space_holds_is_an_error() -> None:
    with pytest.raises(SpaceError, match=r"search\.n_trials=7 exceeds the 6 distinct points"):
        QmcStrategy(7).propose((Param.categorical("a", [1, 2]), Param.categorical("b", [1, 2, 3])))


# -- settings --------------------------------------------------------------------------------

def test_make_strategy_builds_qmc_with_its_settings() -> None:
    strategy = make_strategy(SearchConf(method="qmc", n_trials=16, seed=4))
    assert isinstance(strategy, QmcStrategy)
    assert (strategy.n_trials, strategy.seed) == (16, 4)


@pytest.mark.parametrize(("conf", "fragment"), [
    (SearchConf(method="qmc"), "search.method=qmc needs search.n_trials, e.g. search.n_trials=16"),
    (SearchConf(method="qmc", n_trials=0), "must be a positive integer, got 0"),
    (SearchConf(method="qmc", n_trials=10**9), "search.n_trials=1,000,000,000 is over search.max_trials=100,000"),
    (SearchConf(method="qmc", n_trials=64, max_trials=50), "search.n_trials=64 is over search.max_trials=50"),
    (SearchConf(method="qmc", n_trials=16, seed=-1), "search.seed must be at least 0"),
])
def test_bad_qmc_settings_are_one_line_errors(conf: SearchConf, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_strategy(conf)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_without_scipy_it_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `import` now raises ImportError
    with pytest.raises(ConfigError, match=r"needs scipy .*pip install 'scipy>=1\.15'"):
        QmcStrategy(4).propose(MIXED)


# -- through the CLI -------------------------------------------------------------------------

def _trials(sweep_dir: Path) -> list[dict]:
    from sweeper.paths import SweepPaths
    from sweeper.trials import read_trials

    return read_trials(SweepPaths(sweep_dir)).to_pylist()


def test_plan_writes_the_design_and_a_larger_budget_appends_to_it(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "q"
    args = ["plan", "+search=qmc", "scenario=tiny", "cluster=local", f"hydra.sweep.dir={sweep_dir}"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "planned 16 trials (qmc over" in r.stderr
    rows = _trials(sweep_dir)
    assert [t["trial_id"] for t in rows] == list(range(16))
    lr = np.array([t["optimizer.lr"] for t in rows])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-2
    # 16 balanced points: 8 in each decade of the log range
    assert np.histogram(np.log10(lr), bins=[-4, -3, -2])[0].tolist() == [8, 8]
    assert {t["model.hidden_size"] for t in rows} == set(range(16, 129, 16))  # 2 points each
    assert {t["model.num_layers"] for t in rows} <= {1, 2, 3}
    assert all(0.0 <= t["model.dropout"] <= 0.4 for t in rows)
    assert {t["training.batch_size"] for t in rows} == {32, 64, 128}
    assert {t["scheduler.name"] for t in rows} == {"none", "step", "exponential", "cosine"}
    assert len({t["config_hash"] for t in rows}) == 16
    assert all(f"optimizer.lr={t['optimizer.lr']!r}" in t["overrides"] for t in rows)

    r = cli(*args, "search.n_trials=40")
    assert r.returncode == 0, r.stderr[-2000:]
    grown = _trials(sweep_dir)
    assert [t["trial_id"] for t in grown] == list(range(40))
    assert grown[:16] == rows  # the same Sobol sequence goes on: earlier trials unchanged


def test_resume_n_trials_grows_a_qmc_sweep(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "g"
    r = cli("cluster=local", "task.fn=sweeper_test_tasks:behave", "search.space={}",
            "search.method=qmc", "search.n_trials=4", "+x=range(0,40)", "+y=interval(0,1)",
            f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    first = [(t["x"], t["y"]) for t in _trials(sweep_dir)]
    r = cli("resume", str(sweep_dir), "--n-trials", "8")
    assert r.returncode == 0, r.stderr[-2000:]
    grown = [(t["x"], t["y"]) for t in _trials(sweep_dir)]
    assert grown[:4] == first and len(set(grown)) == 8


def test_qmc_without_n_trials_is_one_line_and_exit_2(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "bad"
    r = cli("plan", "+search=qmc", "scenario=tiny", "cluster=local", "search.n_trials=null",
            f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["sweeper: error: search.method=qmc needs search.n_trials, e.g. "
                     "search.n_trials=16"], r.stderr[-2000:]
    assert not sweep_dir.exists()
