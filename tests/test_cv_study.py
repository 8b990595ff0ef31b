"""Cross-validation in the study, on real processes and real journal studies: a config is one
Optuna trial whose steps are its folds; the Wilcoxon pruner stops a clearly worse config after
a few folds; adaptive methods ask a config once and run its folds as rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_adaptive import SPACE, study_of

from conftest import result_rows, run_cli
from sweeper.paths import SweepPaths

FOLDED = ["task.fn=sweeper_test_tasks:folded_bowl", "scenario=tiny", "cluster=local",
          "training.epochs=3", "search.cross_validation.enabled=true"]


def rows_of(sweep_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(list(result_rows(sweep_dir).values())).sort_values("trial_id")


def test_wilcoxon_stops_a_clearly_worse_config_after_a_few_folds(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    # One worker, so the folds run in order: the good config's 5 folds make the best trial,
    # then the bad one (worse on every fold) is cut once 4 folds make p = 1/16 < 0.1.
    r = run_cli(*FOLDED, "optimizer.lr=0.01,1.0", "model.hidden_size=64",
                "search.cross_validation.n_folds=5", "cluster.max_parallel=1",
                "search.pruner.type=wilcoxon", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    rows = rows_of(sweep_dir)
    good, bad = rows[rows["optimizer.lr"] == 0.01], rows[rows["optimizer.lr"] == 1.0]
    assert good["status"].tolist() == ["completed"] * 5
    assert bad["status"].tolist() == ["completed"] * 4 + ["pruned"]
    cut = bad.iloc[-1]
    assert cut["data.fold"] == 4 and cut["epochs_run"] == 0 and "before it started" in cut["error"]
    study = study_of(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    best, worse = study.trials
    assert best.value == pytest.approx(good["val_loss"].mean())
    assert best.user_attrs["val_loss_std"] == pytest.approx(good["val_loss"].std())
    assert best.intermediate_values == pytest.approx(dict(enumerate(good["val_loss"])))
    assert sorted(worse.intermediate_values) == [0, 1, 2, 3]
    assert best.user_attrs["sweeper_trials"] == good["trial_id"].tolist()
    # The CV table ranks the pruned config last and says it was cut.
    from sweeper.analysis.data import load
    from sweeper.crossval import cv_keys, cv_table

    data = load(SweepPaths(sweep_dir))
    table = cv_table(data.results, cv_keys(data.sweep), "val_loss", "minimize")
    assert table["optimizer.lr"].tolist() == [0.01, 1.0]
    assert table["folds_cut"].tolist() == [0, 1] and table["folds"].tolist() == [5, 4]


def test_tpe_asks_configs_and_runs_their_folds_as_rows(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = run_cli("+search=tpe", *FOLDED, *SPACE, "search.n_trials=4",
                "search.sampler.n_startup_trials=2", "search.cross_validation.n_folds=3",
                "cluster.max_parallel=2", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    rows = rows_of(sweep_dir)
    assert rows["trial_id"].tolist() == list(range(12))  # 4 configs x 3 folds
    assert set(rows["status"]) == {"completed"}
    study = study_of(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for t in study.trials:
        mine = rows[rows["optuna_trial"] == t.number]
        assert mine["data.fold"].tolist() == [0, 1, 2]
        assert mine["trial_id"].tolist() == t.user_attrs["sweeper_trials"]
        assert mine["optimizer.lr"].tolist() == pytest.approx([t.params["optimizer.lr"]] * 3)
        assert set(mine["model.hidden_size"]) == {t.params["model.hidden_size"]}
        assert "data.fold" not in t.params
        assert t.value == pytest.approx(mine["val_loss"].mean())
        assert t.user_attrs["val_loss_std"] == pytest.approx(mine["val_loss"].std())
        assert np.ptp(mine["val_loss"]) > 0  # the folds differ
    assert "configs by the mean over 3 folds" in r.stdout


def test_a_killed_fold_loses_its_config_which_runs_again(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "kill-once").touch()
    sweep_dir = tmp_path / "s"
    r = run_cli("+search=tpe", *FOLDED, *SPACE, "search.n_trials=3",
                "search.cross_validation.n_folds=2", "cluster.max_parallel=2",
                f"+markers={markers}", "+epoch_s=0.2", f"hydra.sweep.dir={sweep_dir}")
    assert not (markers / "kill-once").exists()
    rows = rows_of(sweep_dir)
    lost = rows[(rows["status"] == "failed")]
    assert len(lost) == 1 and lost["traceback"].isna().all(), rows
    study = study_of(sweep_dir)
    states = [t.state.name for t in study.trials]
    assert sorted(states) == ["COMPLETE"] * 3 + ["FAIL"], states
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    assert failed.user_attrs["sweeper_lost"] is True
    again = next(t for t in study.trials if t.user_attrs.get("retry_of") is not None)
    assert again.params == failed.params and again.state.name == "COMPLETE"
    assert len(rows) == 8  # 3 configs x 2 folds, and the lost config's first 2 rows
    assert r.returncode == 1, r.stderr  # the lost attempt's row is a failure, as it was
