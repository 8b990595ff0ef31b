"""Adaptive search and pruning on real processes and real Optuna studies (journal file and
PostgreSQL): nothing here mocks Optuna."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TESTS, result_rows, run_cli
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord

BOWL = ["task.fn=sweeper_test_tasks:bowl", "scenario=tiny", "cluster=local",
        "cluster.max_parallel=2", "training.epochs=6"]
SPACE = ["search.space={}", "optimizer.lr=tag(log,interval(1e-4,1))",
         "model.hidden_size=range(16,129,16)"]


def study_of(sweep_dir: Path) -> optuna.Study:
    from sweeper.study import open_study

    paths = SweepPaths(sweep_dir)
    return open_study(paths, SweepRecord.load(paths))


def trial_table(sweep_dir: Path) -> list[dict]:
    from sweeper.trials import read_trials

    return read_trials(SweepPaths(sweep_dir)).to_pylist()


def check_consistent(sweep_dir: Path, n_trials: int) -> optuna.Study:
    """Exactly n_trials asked, ids unique and dense, one row each, the study agrees."""
    table = trial_table(sweep_dir)
    ids = [r["trial_id"] for r in table]
    assert ids == list(range(n_trials)), ids
    numbers = [r["optuna_trial"] for r in table]
    assert len(set(numbers)) == n_trials
    rows = result_rows(sweep_dir)
    assert sorted(rows) == ids
    study = study_of(sweep_dir)
    by_number = {t.number: t for t in study.trials}
    for r in table:
        t = by_number[r["optuna_trial"]]
        assert t.user_attrs["trial_id"] == r["trial_id"]
        assert t.params["optimizer.lr"] == pytest.approx(r["optimizer.lr"])
    return study


@pytest.fixture(scope="module")
def tpe_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("tpe") / "sweep"
    r = run_cli("+search=tpe", *BOWL, *SPACE, "search.n_trials=10", "+epoch_s=0.1",
                "search.sampler.n_startup_trials=4", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    return sweep_dir


def test_tpe_on_two_local_workers_asks_exactly_n_trials(tpe_sweep: Path) -> None:
    study = check_consistent(tpe_sweep, 10)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 10
    assert all(r["status"] == "completed" for r in result_rows(tpe_sweep).values())
    spans = [(r["started_at"], r["finished_at"]) for r in result_rows(tpe_sweep).values()]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])
    # (two ran at once: the free slot asked while the other trial ran)


def test_tpe_settings_reach_optuna_and_are_shown(tpe_sweep: Path) -> None:
    record = SweepRecord.load(SweepPaths(tpe_sweep))
    assert record.search.sampler == {"n_startup_trials": 4, "multivariate": True,
                                     "constant_liar": True}
    from sweeper.study import make_sampler

    sampler = make_sampler(record.search)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 4 and sampler._constant_liar and sampler._multivariate


def test_resume_n_trials_extends_the_study_and_runs_only_the_new_ones(tpe_sweep: Path,
                                                                      tmp_path: Path) -> None:
    import shutil

    sweep_dir = tmp_path / "grown"
    shutil.copytree(tpe_sweep, sweep_dir)
    (sweep_dir / "sweep.yaml").write_text(
        (sweep_dir / "sweep.yaml").read_text().replace(str(tpe_sweep), str(sweep_dir)))
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes())
              for f in (sweep_dir / "results").glob("trial-*.parquet")}
    r = run_cli("resume", str(sweep_dir), "--n-trials", "14")
    assert r.returncode == 0, r.stderr
    assert "goes on from 10 to 14 trials" in r.stderr
    study = check_consistent(sweep_dir, 14)
    assert len(study.trials) == 14
    after = {f.name: (f.stat().st_mtime_ns, f.read_bytes())
             for f in (sweep_dir / "results").glob("trial-*.parquet")}
    assert {k: after[k] for k in before} == before  # the old trials are untouched
    r = run_cli("resume", str(sweep_dir))
    assert r.returncode == 0 and "nothing left to ask" in r.stderr, r.stderr


def epochs_and_rows(sweep_dir: Path) -> tuple[int, dict[int, dict]]:
    rows = result_rows(sweep_dir)
    return sum(int(r["epochs_run"]) for r in rows.values()), rows


@pytest.mark.parametrize("pruner", [
    ["search.pruner.type=median", "+search.pruner.n_startup_trials=3"],
    ["search.pruner.type=successive_halving", "+search.pruner.min_resource=1",
     "+search.pruner.reduction_factor=3"],
], ids=["median", "asha"])
def test_pruning_stops_bad_trials_and_saves_epochs(pruner: list[str], tmp_path: Path) -> None:
    common = ["+search=random", *BOWL, *SPACE, "search.n_trials=12", "search.seed=3",
              "cluster.max_parallel=1"]
    r = run_cli(*common, f"hydra.sweep.dir={tmp_path / 'full'}")
    assert r.returncode == 0, r.stderr
    r = run_cli(*common, *pruner, f"hydra.sweep.dir={tmp_path / 'pruned'}")
    assert r.returncode == 0, r.stderr  # pruned trials are finished, not failed
    full, _ = epochs_and_rows(tmp_path / "full")
    saved, rows = epochs_and_rows(tmp_path / "pruned")
    pruned = [r for r in rows.values() if r["status"] == "pruned"]
    assert pruned and len(pruned) < len(rows)
    assert saved < full == 12 * 6
    for row in pruned:
        curve = row["curve"]
        assert 0 < row["epochs_run"] == len(curve) < 6
        assert [p["epoch"] for p in curve] == list(range(len(curve)))
        assert row["val_loss"] == pytest.approx(curve[-1]["val_loss"])
    # The study holds the intermediate values; the trial table stays the plan.
    study = study_of(tmp_path / "pruned")
    assert sorted(t.state.name for t in study.trials).count("PRUNED") == len(pruned)
    assert len(trial_table(tmp_path / "pruned")) == 12
    # Never rerun: resume has nothing to do, and status exits 0.
    r = run_cli("resume", str(tmp_path / "pruned"))
    assert r.returncode == 0 and "nothing left to run" in r.stderr, r.stderr
    assert run_cli("status", str(tmp_path / "pruned")).returncode == 0


def test_a_killed_trial_is_told_failed_and_its_parameters_run_again(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "kill-once").touch()
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *BOWL, *SPACE, "search.n_trials=6", f"+markers={markers}",
                "+epoch_s=0.2", f"hydra.sweep.dir={sweep_dir}")
    assert not (markers / "kill-once").exists()  # one trial did kill itself
    rows = result_rows(sweep_dir)
    lost = [r for r in rows.values() if r["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["traceback"] is None, rows
    done = [r for r in rows.values() if r["status"] == "completed"]
    assert len(done) == 6 and len(rows) == 7
    again = [r for r in done if r["optimizer.lr"] == lost[0]["optimizer.lr"]
             and r["model.hidden_size"] == lost[0]["model.hidden_size"]]
    assert len(again) == 1 and again[0]["trial_id"] > lost[0]["trial_id"]
    study = study_of(sweep_dir)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE"] * 6 + ["FAIL"]
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    assert failed.user_attrs["sweeper_lost"] is True
    assert "stopped mid-trial" in r.stderr
    assert r.returncode == 1  # the lost attempt's row is a failure, as it was


def test_resume_retry_failed_asks_a_failed_trials_parameters_again(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "raise-once").touch()
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *BOWL, *SPACE, "search.n_trials=4", f"+markers={markers}",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 1, r.stderr
    failed = [r for r in result_rows(sweep_dir).values() if r["status"] == "failed"]
    assert len(failed) == 1 and "one-off failure" in failed[0]["traceback"]
    assert "nothing left to ask" in run_cli("resume", str(sweep_dir)).stderr  # kept, as failed
    r = run_cli("resume", str(sweep_dir), "--retry-failed")
    assert r.returncode == 0 and "1 failed trial(s) are asked again" in r.stderr, r.stderr
    rows = result_rows(sweep_dir)
    again = [x for x in rows.values() if x["trial_id"] == 4]
    assert again[0]["status"] == "completed"
    assert again[0]["optimizer.lr"] == failed[0]["optimizer.lr"]
    study = study_of(sweep_dir)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4


def test_a_killed_driver_leaves_trials_that_resume_recovers(tmp_path: Path) -> None:
    import signal
    import time

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "+search=tpe", *BOWL, *SPACE, "search.n_trials=5",
         "+epoch_s=0.5", f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((sweep_dir / "attempts").glob("*.json")
                                                       if (sweep_dir / "attempts").is_dir()
                                                       else [])) < 2:
            time.sleep(0.2)
        time.sleep(0.8)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    time.sleep(12)  # the trial processes notice their driver is gone, and end
    study = study_of(sweep_dir)
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert running, [t.state for t in study.trials]
    r = run_cli("resume", str(sweep_dir))
    assert "stopped mid-trial" in r.stderr, r.stderr
    study = study_of(sweep_dir)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 5
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert len(retried) == len(running)
    for t in retried:
        first = next(x for x in study.trials if x.user_attrs.get("trial_id") == t.user_attrs["retry_of"])
        assert first.params == t.params and first.user_attrs["sweeper_lost"]


def _worker(sweep_dir: str, k: int) -> int:
    """One of many worker processes: ask -> run -> tell until the budget is spent."""
    from sweeper.asking import Asker
    from sweeper.runner import run_rows

    paths = SweepPaths(Path(sweep_dir))
    record = SweepRecord.load(paths)
    asker = Asker(paths, record, stream=k)
    ran = 0
    while (rows := asker.ask()) is not None:
        run_rows(paths, record, rows)
        ran += 1
    return ran


def test_sixteen_workers_on_the_journal_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    r = run_cli("plan", "+search=tpe", *BOWL, *SPACE, "training.epochs=2",
                "search.n_trials=48", "search.sampler.n_startup_trials=8",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(TESTS))
    ctx = mp.get_context("spawn")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    with ctx.Pool(16) as pool:
        ran = pool.starmap(_worker, [(str(sweep_dir), k) for k in range(16)])
    assert sum(ran) == 48
    study = check_consistent(sweep_dir, 48)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 48
    assert sum(1 for n in ran if n) > 1  # the work was shared


def test_bad_study_settings_are_one_line_and_run_nothing(tmp_path: Path) -> None:
    cases = [
        (["+search.sampler.n_startup_trails=3"], "n_startup_trials"),
        (["search.pruner.type=medain"], "median"),
        (["search.pruner.type=median", "+search.pruner.n_warmup=2"], "n_warmup_steps"),
        (["search.pruner.type=percentile"], "percentile"),
        (["search.pruner.type=percentile", "+search.pruner.percentile=150"], "PercentilePruner"),
        (["search.pruner.type=patient"], "patience"),
        (["+search.sampler.type=CmaEsSampler"], "disagrees"),
        (["+search.sampler.seed=abc"], "whole number"),
        (["search.storage=not-a-url"], "database URL"),
        (["search.max_retries=-1"], "max_retries"),
        (["search.direction=[minimize,maximize]"], "one per metric"),
        (["search.method=cmaes", "search.metric=[val_loss,train_time_s]",
          "search.direction=[minimize,minimize]"], "optimises one metric"),
        (["search.cross_validation.enabled=true", "search.cross_validation.n_folds=100000000"],
         "over search.max_trials=100,000"),
    ]
    for i, (overrides, hint) in enumerate(cases):
        sweep_dir = tmp_path / f"s{i}"
        r = run_cli("+search=tpe", *BOWL, *SPACE, *overrides, f"hydra.sweep.dir={sweep_dir}")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (overrides, r.stderr)
        assert len(lines) == 1 and hint in lines[0], (overrides, r.stderr)
        assert not sweep_dir.exists(), overrides
    # For static methods too: grid with a sampler, or a pruner that does not exist.
    r = run_cli("+search=coarse", *BOWL, "+search.sampler.n_startup_trials=3",
                f"hydra.sweep.dir={tmp_path / 'g'}")
    assert r.returncode == 2 and "adaptive methods" in r.stderr
    r = run_cli("+search=coarse", *BOWL, "search.metric=[val_loss,train_time_s]",
                "search.direction=[minimize,minimize]", "search.pruner.type=median",
                f"hydra.sweep.dir={tmp_path / 'm'}")
    assert r.returncode == 2 and "one metric" in r.stderr


def test_multi_objective_tpe(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *BOWL, *SPACE, "search.n_trials=6",
                "search.metric=[val_loss,train_time_s]", "search.direction=[minimize,minimize]",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    study = check_consistent(sweep_dir, 6)
    assert len(study.directions) == 2
    assert all(len(t.values) == 2 for t in study.trials)
    assert study.best_trials  # the Pareto front


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("SWEEPER_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server of the tests' own (scripts/test_postgres.sh starts one)")
    return url


def test_postgresql_storage_end_to_end(tmp_path: Path, postgres_url: str) -> None:
    from sweeper.study import study_name

    names = set()
    for run in ("a", "b"):  # the same sweep twice, in one database: two studies
        sweep_dir = tmp_path / run
        r = run_cli("+search=tpe", *BOWL, *SPACE, "search.n_trials=6",
                    "search.pruner.type=median", f"search.storage={postgres_url}",
                    f"hydra.sweep.dir={sweep_dir}")
        assert r.returncode == 0, r.stderr
        assert not (sweep_dir / "study.journal").exists()
        check_consistent(sweep_dir, 6)
        # Read back straight from the database, as optuna-dashboard or a colleague would.
        names.add(study_name(SweepRecord.load(SweepPaths(sweep_dir))))
        study = optuna.load_study(study_name=study_name(SweepRecord.load(SweepPaths(sweep_dir))),
                                  storage=postgres_url)
        assert sorted({t.user_attrs["trial_id"] for t in study.trials}) == list(range(6))
        assert all(t.intermediate_values for t in study.trials)
    assert len(names) == 2


def test_sqlite_with_several_workers_is_warned_about(tmp_path: Path) -> None:
    r = run_cli("plan", "+search=tpe", *BOWL, *SPACE,
                f"search.storage=sqlite:///{tmp_path}/s.db", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr
    assert "SQLite" in r.stderr and "row locks" in r.stderr
    assert pq.read_table(tmp_path / "s" / "trials.parquet").num_rows == 0
