"""A user's own ``@hydra.main`` app with sweeper as its sweeper (docs/own-hydra-app.md).

The app (tests/own_app/) is copied outside the package and run as its user would run it:
``python app.py ...`` from its own dir, with its own conf dir and task function.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, TESTS, run_cli

FIXTURE = TESTS / "own_app"


def run_app(app: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python app.py ARGS``, from the app's dir, as its user would (nothing on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SLURM_JOB_ID")}
    return subprocess.run([sys.executable, str(app / "app.py"), *args], cwd=cwd or app, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "my app", ignore=shutil.ignore_patterns(
        "__pycache__", "multirun", "outputs")))


def rows(sweep_dir: Path) -> list[dict]:
    return sorted(pq.read_table(sweep_dir / "results.parquet").to_pylist(),
                  key=lambda r: r["trial_id"])


def test_a_search_file_runs_locally_with_the_apps_own_task(app: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    r = run_app(app, "+search=fine", "cluster=local", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "runs on: local" in r.stderr
    got = rows(sweep_dir)  # the file's x (4 values) times config.yaml's y (2): merged
    assert [(g["x"], g["y"]) for g in got] == [(x, y) for x in (0.5, 1.0, 1.5, 2.0)
                                               for y in (-2.0, 0.0)]
    for g in got:
        assert g["status"] == "completed" and g["from_app"] == 1.0
        assert g["loss"] == pytest.approx((g["x"] - 1) ** 2 + (g["y"] + 2) ** 2)
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert {v["task_fn"] for v in record["variants"]} == {f"file:{app.resolve()}/app.py:train"}
    status = run_cli("status", str(sweep_dir))
    assert status.returncode == 0, status.stderr
    assert "8 trials" in status.stdout and "completed" in status.stdout


def test_the_report_trains_the_best_config_with_the_app(app: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # config.yaml's own space, with `-m`; search keys it does not set come from sweeper/search
    r = run_app(app, "-m", "cluster=local", "cluster.max_parallel=1", "search.method=random",
                "search.n_trials=4", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert [g["status"] for g in rows(sweep_dir)] == ["completed"] * 4
    rep = run_cli("report", str(sweep_dir))
    assert rep.returncode == 0, rep.stderr
    # best_config.yaml's header names the command that trains from it: the app's, not sweeper's
    command = (sweep_dir / "report" / "best_config.yaml").read_text().splitlines()[1][2:]
    assert command.startswith(f"python {shlex.quote(str(app.resolve() / 'app.py'))} --config-path")
    python = shlex.quote(str(Path(sys.executable).parent))
    again = subprocess.run(f"PATH={python}:$PATH {command} hydra.run.dir={tmp_path / 'once'}",
                           shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_failed_trials_exit_1_as_the_sweeper_command_does(app: Path, tmp_path: Path) -> None:
    failing = run_app(app, "+search=fine", "cluster=local", "+fail_above=1.2",
                      f"hydra.sweep.dir={tmp_path / 'failing'}")
    assert failing.returncode == 1, failing.stderr
    states = [g["status"] for g in rows(tmp_path / "failing")]
    assert states.count("failed") == 4 and states.count("completed") == 4


def test_a_bad_search_setting_is_one_line_and_exit_2(app: Path, tmp_path: Path) -> None:
    r = run_app(app, "+search=fine", "cluster=local", "search.method=grdi",
                f"hydra.sweep.dir={tmp_path / 'bad'}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("sweeper: error: ")
    assert "grdi" in r.stderr and "Traceback" not in r.stderr


def test_a_misspelt_cluster_key_added_with_plus_is_an_error(app: Path, tmp_path: Path) -> None:
    typo = run_app(app, "+search=fine", "cluster=local", "+cluster.mem_bg=8",
                   f"hydra.sweep.dir={tmp_path / 'typo'}")
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines()[-1] == (
        "sweeper: error: 'cluster.mem_bg' is not a known setting; did you mean 'mem_gb'? (known: "
        + ", ".join(_cluster_keys()) + ")")
    assert not (tmp_path / "typo").exists()


def _cluster_keys() -> list[str]:
    import dataclasses

    from sweeper.schema import ClusterConf

    return [f.name for f in dataclasses.fields(ClusterConf)]


def test_cluster_options_come_from_the_plugin(app: Path) -> None:
    r = run_app(app, "--cfg", "job", "cluster=slurm", "cluster.partition=gpu")
    assert r.returncode == 0, r.stderr
    cluster = yaml.safe_load(r.stdout)["cluster"]
    assert cluster["executor"] == "slurm" and cluster["partition"] == "gpu"
    assert cluster["mem_gb"] == 4.0  # ClusterConf's default: the one source of defaults
    wrong = run_app(app, "--cfg", "job", "cluster=locl")
    assert wrong.returncode == 1
    assert "Available options in 'cluster':\n\tauto\n\tlocal\n\tslurm" in wrong.stderr


# --- on the real SLURM cluster (slurm/local_cluster.sh), skipped where it is not running ---

def _slurm_up() -> None:
    up = subprocess.run(["bash", str(ROOT / "slurm" / "local_cluster.sh"), "status"],
                        capture_output=True, text=True)
    if up.returncode != 0 or shutil.which("sbatch") is None:
        pytest.skip("the local SLURM cluster is not running (scripts/test.sh starts it)")


SLURM = ["+search=fine", "cluster=slurm", "cluster.mem_gb=0.5", "cluster.timeout_min=10",
         "hydra.sweeper.wait=true"]


@pytest.mark.slurm
@pytest.mark.slow
def test_the_app_runs_on_slurm(app: Path, tmp_path: Path) -> None:
    _slurm_up()
    sweep_dir = tmp_path / "slurm"
    r = run_app(app, *SLURM, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr + r.stdout
    merged = run_cli("merge", str(sweep_dir))
    assert merged.returncode == 0, merged.stderr
    assert [g["status"] for g in rows(sweep_dir)] == ["completed"] * 8


@pytest.mark.slurm
@pytest.mark.slow
def test_the_app_runs_on_slurm_when_started_from_another_dir(app: Path, tmp_path: Path) -> None:
    _slurm_up()
    sweep_dir = tmp_path / "elsewhere"
    r = run_app(app, *SLURM, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    run_cli("merge", str(sweep_dir))
    got = rows(sweep_dir)
    assert [g["status"] for g in got] == ["completed"] * 8, {g["error"] for g in got}
    assert r.returncode == 0, r.stderr
