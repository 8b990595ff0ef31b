"""The study's pieces without running trials: distributions, samplers and pruners are real
Optuna objects built from ``search.*``."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from conftest import run_cli
from sweeper.errors import ConfigError
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.schema import SearchConf
from sweeper.study import distributions, make_pruner, make_sampler


def test_distributions_map_log_scales_int_steps_and_groups_exactly(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = run_cli("plan", "+search=tpe", "cluster=local", "search.space={}",
                "optimizer.lr=tag(log,interval(1e-4,1e-1))", "model.hidden_size=range(16,129,16)",
                "model.dropout=interval(0.0,0.5)", "scheduler.name=none,cosine",
                "scenario=tiny,lorenz", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    record = SweepRecord.load(SweepPaths(sweep_dir))
    d = distributions(record)
    assert d["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["model.hidden_size"] == optuna.distributions.IntDistribution(16, 128, step=16)
    assert d["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert d["scheduler.name"] == optuna.distributions.CategoricalDistribution(["none", "cosine"])
    assert d["scenario"] == optuna.distributions.CategoricalDistribution(["tiny", "lorenz"])
    assert len(record.variants) == 2  # each group option composed once, at plan time


@pytest.mark.parametrize("settings, cls", [
    ({"type": "none"}, optuna.pruners.NopPruner),
    ({"type": "median", "n_startup_trials": 5, "n_warmup_steps": 5}, optuna.pruners.MedianPruner),
    ({"type": "MedianPruner"}, optuna.pruners.MedianPruner),  # seed 001's spelling
    ({"type": "percentile", "percentile": 25.0}, optuna.pruners.PercentilePruner),
    ({"type": "successive_halving", "min_resource": 2, "reduction_factor": 3},
     optuna.pruners.SuccessiveHalvingPruner),
    ({"type": "asha"}, optuna.pruners.SuccessiveHalvingPruner),
    ({"type": "hyperband", "min_resource": 1, "max_resource": 30}, optuna.pruners.HyperbandPruner),
    ({"type": "wilcoxon", "p_threshold": 0.1}, optuna.pruners.WilcoxonPruner),
    ({"type": "threshold", "upper": 10.0}, optuna.pruners.ThresholdPruner),
    ({"type": "patient", "patience": 3, "wrapped": {"type": "median"}}, optuna.pruners.PatientPruner),
])
def test_every_pruner_is_optunas_own(settings: dict, cls: type) -> None:
    pruner = make_pruner(SearchConf(method="grid", pruner=settings))
    assert type(pruner) is cls
    if cls is optuna.pruners.MedianPruner and "n_warmup_steps" in settings:
        assert pruner._n_warmup_steps == 5 and pruner._n_startup_trials == 5
    if cls is optuna.pruners.PatientPruner:
        assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)


@pytest.mark.parametrize("method, cls", [("tpe", optuna.samplers.TPESampler),
                                         ("gp", optuna.samplers.GPSampler),
                                         ("cmaes", optuna.samplers.CmaEsSampler)])
def test_every_adaptive_method_is_an_optuna_sampler(method: str, cls: type) -> None:
    assert type(make_sampler(SearchConf(method=method, n_trials=5))) is cls
    named = SearchConf(method=method, n_trials=5, sampler={"type": cls.__name__})
    assert type(make_sampler(named)) is cls  # seed 001's spelling


def test_workers_draw_from_different_streams() -> None:
    search = SearchConf(method="tpe", n_trials=5, sampler={"n_startup_trials": 5})
    draws = []
    for stream in (0, 1):
        study = optuna.create_study(sampler=make_sampler(search, stream))
        draws.append([study.ask().suggest_float("x", 0, 1) for _ in range(3)])
    assert draws[0] != draws[1]  # with one seed, parallel workers would ask for the same points
    again = optuna.create_study(sampler=make_sampler(search, 0))
    assert [again.ask().suggest_float("x", 0, 1) for _ in range(3)] == draws[0]


def test_a_bad_keyword_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as ex:
        make_pruner(SearchConf(pruner={"type": "median", "n_warmup": 3}))
    assert "did you mean 'n_warmup_steps'" in str(ex.value) and "interval_steps" in str(ex.value)
    with pytest.raises(ConfigError, match=r"options: .*successive_halving"):
        make_pruner(SearchConf(pruner={"type": "early"}))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gp", "cmaes"])
def test_gp_and_cmaes_run_a_small_sweep(method: str, tmp_path: Path) -> None:
    from test_adaptive import BOWL, SPACE, check_consistent

    sweep_dir = tmp_path / "s"
    r = run_cli(f"+search={method}", *BOWL, *SPACE, "search.n_trials=5", "training.epochs=2",
                "search.sampler.n_startup_trials=2",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    study = check_consistent(sweep_dir, 5)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
