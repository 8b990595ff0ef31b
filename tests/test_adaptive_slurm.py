"""Adaptive search on the real single-node SLURM cluster: array tasks are workers that ask the
study for trials (no mock of SLURM or Optuna)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_adaptive import SPACE, check_consistent, study_of
from test_slurm import cluster, job_ids, max_concurrent, sacct, wait_done  # noqa: F401

from conftest import ROOT, TESTS, result_rows, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_BOWL = ["task.fn=sweeper_test_tasks:bowl", "scenario=tiny", "cluster=slurm",
              "cluster.mem_gb=0.5", "cluster.timeout_min=10", "training.epochs=4"]


def wait_workers(sweep_dir: Path, timeout_s: float = 300) -> dict[int, object]:
    """Until the worker arrays have left the queue, then until no trial is active."""
    import subprocess

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        r = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids(sweep_dir))],
                           capture_output=True, text=True, check=True)
        if not r.stdout.strip():
            return wait_done(sweep_dir, timeout_s=60)
        time.sleep(2)
    raise AssertionError(f"the workers of {sweep_dir} still run after {timeout_s}s")


def test_tpe_workers_on_a_throttled_array(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    start = time.monotonic()
    r = run_cli("+search=tpe", *SLURM_BOWL, *SPACE, "search.n_trials=10",
                "search.sampler.n_startup_trials=4", "cluster.workers=4",
                "cluster.array_parallelism=2", "+epoch_s=0.3", "search.pruner.type=median",
                "+search.pruner.n_startup_trials=2", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 30  # it returns at once; the workers run on
    assert "submitted 4 worker(s)" in r.stderr
    states = wait_workers(sweep_dir)
    assert sorted(states) == list(range(10)), states
    assert {s.value for s in states.values()} == {"completed", "pruned"}, states
    study = check_consistent(sweep_dir, 10)
    assert sorted(t.state.name for t in study.trials) == sorted(
        "COMPLETE" if s.value == "completed" else "PRUNED" for s in states.values())
    rows = result_rows(sweep_dir)
    elements = {f"{r['slurm_job_id']}_{r['slurm_array_task_id']}" for r in rows.values()}
    assert len(elements) >= 2  # shared among workers
    runs = sacct(job_ids(sweep_dir), expect=4)
    # A pruned trial is finished, not failed: every worker ends COMPLETED in sacct.
    assert len(runs) == 4 and all(run["State"] == "COMPLETED" for run in runs), runs
    assert max_concurrent(runs) <= 2


def test_a_worker_killed_mid_trial_leaves_its_trial_to_another(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "kill-once").touch()
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *SLURM_BOWL, *SPACE, "search.n_trials=5", "cluster.workers=2",
                "cluster.array_parallelism=2", "+epoch_s=0.3", f"+markers={markers}",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    wait_workers(sweep_dir)  # the surviving worker waits out the grace, then reruns it
    assert not (markers / "kill-once").exists()
    study = study_of(sweep_dir)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 5 + ["FAIL"]
    lost = next(t for t in study.trials if t.state.name == "FAIL")
    again = next(t for t in study.trials if t.user_attrs.get("retry_of") is not None)
    assert again.params == lost.params and again.state.name == "COMPLETE"
    runs = {run["JobID"]: run["State"] for run in sacct(job_ids(sweep_dir), expect=2)}
    assert sorted(runs.values()) == ["COMPLETED", "FAILED"], runs


def test_a_worker_starts_no_trial_it_cannot_finish_before_its_time_limit(tmp_path: Path) -> None:
    """Trials of ~48 s in a 2-minute task warned 1 s before its end: after the first trial the
    worker judges a second one (48 s, plus the 30 s margin) would not end before the warning,
    and stops asking; resume sends a new worker for the rest. (SLURM may warn up to ~30 s
    early, so the first trial is sized to end before that window too.)"""
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *SLURM_BOWL, *SPACE, "search.n_trials=3", "cluster.workers=1",
                "cluster.timeout_min=2", "cluster.signal_delay_s=1", "+epoch_s=12",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    states = wait_workers(sweep_dir, timeout_s=180)
    assert list(states.values()) == ["completed"], states  # not 2, not a timed-out one
    log = next((sweep_dir / "logs").glob("slurm-*.log")).read_text()
    assert "would not" in log or "too long" in log, log
    runs = sacct(job_ids(sweep_dir), expect=1)
    assert [run["State"] for run in runs] == ["COMPLETED"]


def test_the_plain_sbatch_path_runs_adaptive_workers(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "search" / "tpe_small.yaml").write_text(
        "# @package _global_\ndefaults:\n  - tpe\nsearch:\n  n_trials: 5\n  space:\n"
        "    optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0}\n"
        "    model.hidden_size: {type: int, low: 16, high: 128, step: 16}\n")
    env = {**os.environ, "SWEEPER_CONFIG_DIR": str(conf), "SWEEPER_PYTHON": sys.executable,
           "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "SWEEP_DIR": str(tmp_path / "sweep")}
    script = str(ROOT / "slurm" / "submit_hyperparameter_search.sh")
    subprocess.run(["sbatch", "--parsable", "--array=0-2%2", "--mem=1G",
                    "-o", str(tmp_path / "array-%a.log"), script, "tpe_small",
                    "task.fn=sweeper_test_tasks:bowl", "scenario=tiny", "training.epochs=3"],
                   cwd=ROOT, check=True, capture_output=True, env=env)
    sweep_dir = tmp_path / "sweep"
    for _ in range(120):
        if (sweep_dir / "launches").is_dir() and job_ids(sweep_dir):
            break
        time.sleep(1)
    states = wait_workers(sweep_dir)
    assert list(states.values()) == ["completed"] * 5, states
    check_consistent(sweep_dir, 5)


def test_tpe_cross_validated_on_slurm_workers(tmp_path: Path) -> None:
    """Each worker asks a config and runs its folds in turn; the study gets each config's mean."""
    sweep_dir = tmp_path / "sweep"
    r = run_cli("+search=tpe", *SLURM_BOWL, "task.fn=sweeper_test_tasks:folded_bowl", *SPACE,
                "search.n_trials=4", "search.cross_validation.enabled=true",
                "search.cross_validation.n_folds=2", "cluster.workers=2",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    states = wait_workers(sweep_dir)
    assert sorted(states) == list(range(8)) and {s.value for s in states.values()} == \
        {"completed"}, states
    rows = result_rows(sweep_dir)
    study = study_of(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for t in study.trials:
        mine = [rows[tid] for tid in t.user_attrs["sweeper_trials"]]
        assert [m["data.fold"] for m in mine] == [0, 1]
        # one worker ran the config's folds, one after the other
        assert len({(m["slurm_job_id"], m["slurm_array_task_id"]) for m in mine}) == 1
        assert mine[0]["finished_at"] <= mine[1]["started_at"]
        assert t.value == pytest.approx(sum(m["val_loss"] for m in mine) / 2)
    runs = sacct(job_ids(sweep_dir), expect=2)
    assert all(run["State"] == "COMPLETED" for run in runs), runs
