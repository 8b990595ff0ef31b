"""On the real single-node SLURM cluster that slurm/local_cluster.sh starts (never a mock).

The test command starts it; without root or apt-get these tests skip with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TESTS, result_rows, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = ROOT / "slurm" / "local_cluster.sh"
SLURM = ["cluster=slurm", "cluster.mem_gb=0.5", "cluster.timeout_min=10"]
BEHAVE = [*SLURM, "task.fn=sweeper_test_tasks:behave", "search.space={}"]


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    up = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True)
    if up.returncode == 0:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the local SLURM cluster needs root and apt-get to start, and is not running")
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, timeout=900)


def release_requeued() -> None:
    """SLURM holds a requeued job for 2 minutes (Reason=BeginTime); as root, release it now.

    Only the wait is shortened: the requeue itself, the restart count and the checkpoint
    are SLURM's and sweeper's own."""
    r = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        job, _, reason = line.partition("|")
        if reason.strip() == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"],
                           capture_output=True)


def wait_done(sweep_dir: Path, timeout_s: float = 300) -> dict[int, str]:
    """Poll sweeper's own state until no trial is queued; returns the states."""
    from sweeper.paths import SweepPaths
    from sweeper.status import SweepWatcher

    watcher = SweepWatcher(SweepPaths(sweep_dir), grace_s=5)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        state = watcher.poll()
        if not state.active:
            return state.states
        release_requeued()
        time.sleep(2)
    raise AssertionError(f"{sweep_dir} still has queued trials after {timeout_s}s: {state.counts()}")


def job_ids(sweep_dir: Path) -> list[str]:
    from sweeper.executors.slurm.records import read_launches
    from sweeper.paths import SweepPaths

    return [a.job_id for launch in read_launches(SweepPaths(sweep_dir)) for a in launch.arrays]


def sacct(ids: list[str], expect: int = 1, duplicates: bool = False) -> list[dict[str, str]]:
    """sacct rows of the array tasks, once ``expect`` of them have ended (accounting lags the
    queue by a few seconds)."""
    fields = ["JobID", "State", "Start", "End", "ExitCode"]
    for _ in range(60):
        r = subprocess.run(["sacct", "-X", "-n", "-P", *(["-D"] if duplicates else []),
                            "-o", ",".join(fields), "-j", ",".join(ids)],
                           capture_output=True, text=True, check=True)
        rows = [dict(zip(fields, line.split("|"))) for line in r.stdout.splitlines() if line]
        if len(rows) >= expect and all(row["End"] not in ("Unknown", "") for row in rows):
            return rows
        time.sleep(1)
    return rows


def max_concurrent(rows: list[dict[str, str]]) -> int:
    from datetime import datetime

    events = []
    for row in rows:
        if row["Start"] in ("Unknown", "None", ""):
            continue
        events.append((datetime.fromisoformat(row["Start"]), 1))
        events.append((datetime.fromisoformat(row["End"]), -1))
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        running += delta
        peak = max(peak, running)
    return peak


def ran(markers: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in markers.glob("ran-*"))


def test_coarse_grid_is_throttled_to_four(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "coarse"
    r = run_cli("+search=coarse", "scenario=tiny", *SLURM, "cluster.array_parallelism=4",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "submitted 36 trials as 1 array(s)" in r.stderr and "sweeper status" in r.stderr
    states = wait_done(sweep_dir, timeout_s=600)
    assert list(states.values()) == ["completed"] * 36, states
    rows = sacct(job_ids(sweep_dir), expect=36)
    assert len(rows) == 36 and {row["State"] for row in rows} == {"COMPLETED"}
    assert 2 <= max_concurrent(rows) <= 4
    assert len(list((sweep_dir / "logs").glob("slurm-*.log"))) == 36  # one per array task
    m = run_cli("merge", str(sweep_dir))
    assert m.returncode == 0 and "36 completed" in m.stdout
    merged = pq.read_table(sweep_dir / "results.parquet").to_pylist()
    assert all(row["slurm_job_id"] == job_ids(sweep_dir)[0] for row in merged)
    assert sorted(row["slurm_array_task_id"] for row in merged) == list(range(36))
    assert all(row["training.batch_size"] in (32, 64, 128) for row in merged)


@pytest.fixture
def max_array_size_11():
    env = {**os.environ, "MAX_ARRAY_SIZE": "11"}
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, env=env, capture_output=True)
    yield
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, capture_output=True)


def test_arrays_are_split_to_max_array_size(tmp_path: Path, max_array_size_11: None) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,25)", f"+markers={markers}", "cluster.array_parallelism=4",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "as 3 array(s)" in r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 25
    assert ran(markers) == list(range(25))  # each trial ran exactly once
    ids = job_ids(sweep_dir)
    rows = sacct(ids, expect=25)
    sizes = sorted(sum(row["JobID"].startswith(f"{j}_") for row in rows) for j in ids)
    assert sizes == [3, 11, 11]
    assert max_concurrent(rows) <= 4  # one throttle across the three arrays


def test_trials_per_task_packs_trials(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,12)", f"+markers={markers}", "cluster.trials_per_task=5",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 12
    assert ran(markers) == list(range(12))
    by_pid: dict[str, list[int]] = {}
    for p in markers.glob("ran-*"):
        by_pid.setdefault(p.name.split("-")[2], []).append(int(p.name.split("-")[1]))
    assert sorted(sorted(v) for v in by_pid.values()) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert len(list((sweep_dir / "logs").glob("slurm-*.log"))) == 3
    assert sorted(p.name for p in (sweep_dir / "results").iterdir()) == [
        ".write.lock", *(f"trial-{i:06d}.parquet" for i in range(12))]  # one lock file per sweep


def test_a_failed_trial_is_failed_in_sacct_and_in_merge(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    (markers / "raise-1").touch()
    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,3)", f"+markers={markers}",
                   f"hydra.sweep.dir={sweep_dir}").returncode == 0
    states = wait_done(sweep_dir)
    assert states == {0: "completed", 1: "failed", 2: "completed"}
    job = job_ids(sweep_dir)[0]
    by_task = {row["JobID"]: row for row in sacct([job], expect=3)}
    assert by_task[f"{job}_1"]["State"] == "FAILED" and by_task[f"{job}_1"]["ExitCode"] == "1:0"
    assert by_task[f"{job}_0"]["State"] == "COMPLETED"
    run_cli("merge", str(sweep_dir))
    merged = {row["trial_id"]: row for row in pq.read_table(sweep_dir / "results.parquet").to_pylist()}
    assert merged[1]["status"] == "failed" and "planned failure" in merged[1]["error"]


def test_scancel_one_element_then_resume_reruns_only_it(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,4)", f"+markers={markers}", "+sleep_s=3",
                "cluster.array_parallelism=1", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    job = job_ids(sweep_dir)[0]
    subprocess.run(["scancel", f"{job}_2"], check=True)
    states = wait_done(sweep_dir)
    assert states == {0: "completed", 1: "completed", 2: "cancelled", 3: "completed"}, states
    status = run_cli("status", str(sweep_dir))
    assert "cancelled" in status.stdout
    assert ran(markers) == [0, 1, 3]
    before = {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in (0, 1, 3)}
    r = run_cli("resume", str(sweep_dir))
    assert r.returncode == 0 and "running 1 of 4 trials" in r.stderr, r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 4
    assert ran(markers) == [0, 1, 2, 3]
    assert {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in before} == before


def test_kill_9_of_a_running_trial_is_lost_then_resumed(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,3)", f"+markers={markers}", "+sleep_s=6",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    for _ in range(300):
        victims = list(markers.glob("ran-1-*"))
        if victims:
            break
        time.sleep(0.2)
    os.kill(int(victims[0].name.split("-")[2]), signal.SIGKILL)
    states = wait_done(sweep_dir)
    assert states[1] in ("lost", "failed") and states[0] == states[2] == "completed", states
    status = run_cli("status", str(sweep_dir), "--grace-s", "0")
    assert "lost" in status.stdout or "failed" in status.stdout
    before = {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in (0, 2)}
    r = run_cli("resume", str(sweep_dir))
    assert r.returncode == 0 and "running 1 of 3 trials" in r.stderr, r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 3
    assert {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in before} == before


def _checkpointing_trial(tmp_path: Path, extra: list[str]) -> tuple[Path, Path]:
    markers = tmp_path / "m"
    markers.mkdir()
    sweep_dir = tmp_path / "s"
    r = run_cli("cluster=slurm", "cluster.mem_gb=0.5", "task.fn=sweeper_test_tasks:slow_epochs",
                "search.space={}", "+x=range(0,1)", f"+markers={markers}", "+epoch_s=1", *extra,
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    return sweep_dir, markers


def _assert_continued(sweep_dir: Path, markers: Path, total: int) -> None:
    row = result_rows(sweep_dir)[0]
    assert row["status"] == "completed", row["error"]
    assert row["epochs_run"] == total and row["resumed_from"] > 0  # the last run started mid-way
    assert [p["epoch"] for p in row["curve"]] == list(range(total))  # the curve continued
    assert row["attempt"] >= 2
    starts = sorted(int(p.name.split("-")[3]) for p in markers.glob("run-*"))
    assert starts[0] == 0 and len(starts) >= 2 and all(s > 0 for s in starts[1:])


def test_time_limit_signals_checkpoints_requeues_and_finishes(tmp_path: Path) -> None:
    """90 one-second epochs under a 1-minute limit. SLURM sends the warning up to a minute early,
    so each run does at most ~45 epochs: with max_retries=1 the job is requeued once, then stops
    as `timeout` (retries used up, checkpoint kept), and `resume` finishes it from there."""
    sweep_dir, markers = _checkpointing_trial(
        tmp_path, ["+epochs_total=90", "cluster.timeout_min=1", "cluster.signal_delay_s=15",
                   "cluster.max_retries=1"])
    assert list(wait_done(sweep_dir, timeout_s=400).values()) == ["timeout"]
    log = next((sweep_dir / "logs").glob("slurm-*.log")).read_text()
    assert "SIGUSR2" in log and "requeueing" in log and "restarts of at most 1" in log
    runs = sacct(job_ids(sweep_dir), expect=2, duplicates=True)
    assert runs[0]["State"] == "REQUEUED"
    assert result_rows(sweep_dir)[0]["status"] == "requeued"  # checkpointed, no retries left
    for _ in range(4):  # each resumed job gets the same limit and its own retry
        r = run_cli("resume", str(sweep_dir))
        assert r.returncode == 0 and "running 1 of 1 trials" in r.stderr, r.stderr
        if wait_done(sweep_dir, timeout_s=400) == {0: "completed"}:
            break
    _assert_continued(sweep_dir, markers, 90)


def test_preemption_checkpoints_and_the_trial_continues(tmp_path: Path) -> None:
    sweep_dir, markers = _checkpointing_trial(tmp_path, ["+epochs_total=25", "cluster.signal_delay_s=30"])
    for _ in range(300):
        if list(markers.glob("run-*")):
            break
        time.sleep(0.2)
    time.sleep(5)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "8", "--mem=1G",
                             "-o", "/dev/null", "--wrap", "sleep 4"],
                            check=True, capture_output=True, text=True).stdout.strip()
    assert list(wait_done(sweep_dir, timeout_s=300).values()) == ["completed"]
    _assert_continued(sweep_dir, markers, 25)
    assert sacct([urgent])[0]["State"] == "COMPLETED"


def _without_cluster(config_yaml: str) -> dict:
    """The trial's config without the `cluster` node: where it ran, not what it computed."""
    import yaml

    cfg = yaml.safe_load(config_yaml)
    cfg.pop("cluster")
    return cfg


def test_sbatch_script_three_ways_match_the_python_path(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "search" / "small.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN\nsearch:\n  method: grid\n  space:\n"
        "    optimizer.lr: [0.003, 0.01]\n    model.hidden_size: [8, 16]\n")
    env = {**os.environ, "SWEEPER_CONFIG_DIR": str(conf), "SWEEPER_PYTHON": sys.executable,
           "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    script = str(ROOT / "slurm" / "submit_hyperparameter_search.sh")
    extra = ["scenario=tiny", "cluster.mem_gb=0.5"]
    dirs = {name: tmp_path / name for name in ("python", "bash", "job", "array")}
    assert run_cli("+search=small", *SLURM, *extra, f"hydra.sweep.dir={dirs['python']}",
                   env={"SWEEPER_CONFIG_DIR": str(conf)}).returncode == 0
    subprocess.run(["bash", script, "small", "2", *extra], cwd=ROOT, check=True, capture_output=True,
                   env={**env, "SWEEP_DIR": str(dirs["bash"])})
    subprocess.run(["sbatch", "--parsable", "--mem=1G", "-o", str(tmp_path / "job.log"), script,
                    "small", "2", *extra], cwd=ROOT, check=True, capture_output=True,
                   env={**env, "SWEEP_DIR": str(dirs["job"])})
    subprocess.run(["sbatch", "--parsable", "--array=0-3%2", "--mem=1G",
                    "-o", str(tmp_path / "array-%a.log"), script, "small", *extra],
                   cwd=ROOT, check=True, capture_output=True, env={**env, "SWEEP_DIR": str(dirs["array"])})
    for _ in range(120):  # the job and the array tasks create their dirs once they run
        if all((d / "sweep.yaml").is_file() for d in dirs.values()):
            break
        time.sleep(1)
    results = {}
    for name, d in dirs.items():
        assert list(wait_done(d).values()) == ["completed"] * 4, name
        results[name] = {i: (row["config_hash"], row["val_loss"], _without_cluster(row["config_yaml"]))
                         for i, row in result_rows(d).items()}
    assert results["bash"] == results["python"]
    assert results["job"] == results["python"]
    assert results["array"] == results["python"]
    assert results["python"][0][2]["training"]["epochs"] == 3  # tiny, also under cluster_overrides


def test_weird_sweep_dir_on_slurm(tmp_path: Path, weird_path: Path) -> None:
    sweep_dir = weird_path / "sweep"
    r = run_cli(*BEHAVE, "+x=range(0,2)", "--sweep-dir", str(sweep_dir))
    assert r.returncode == 0, r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 2
    assert len(list((sweep_dir / "logs").glob("slurm-*.log"))) == 2


def test_wait_blocks_until_done_and_merges(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,3)", "--wait", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "finished: 3 completed" in r.stderr and (sweep_dir / "results.parquet").is_file()


def test_cancel_stops_the_arrays(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,6)", "+sleep_s=30", "cluster.array_parallelism=2",
                   f"hydra.sweep.dir={sweep_dir}").returncode == 0
    r = run_cli("cancel", str(sweep_dir))
    assert r.returncode == 0 and "cancelled 1 SLURM array" in r.stdout
    states = wait_done(sweep_dir)
    assert set(states.values()) <= {"cancelled"}, states


def test_bad_cluster_settings_fail_before_submission(tmp_path: Path) -> None:
    before = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
    r = run_cli(*BEHAVE, "+x=range(0,2)", "cluster.partition=nope", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 2 and "invalid partition specified: nope" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "s" / "trials.parquet").exists()
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout == before


def test_status_without_sacct_does_not_hang(tmp_path: Path) -> None:
    """Accounting down (an sacct that fails, first on PATH): status still counts from the queue
    and the result files, says so, and returns promptly."""
    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,2)", "--wait", f"hydra.sweep.dir={sweep_dir}").returncode == 0
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "sacct").write_text("#!/bin/sh\necho 'sacct: error: slurmdbd: connection refused' >&2\nexit 1\n")
    (fakebin / "sacct").chmod(0o755)
    start = time.monotonic()
    r = run_cli("status", str(sweep_dir), env={"PATH": f"{fakebin}:{os.environ['PATH']}"})
    assert r.returncode == 0 and time.monotonic() - start < 30
    assert re.search(r"completed\s*│\s*2\s*│", r.stdout), r.stdout
    assert "sacct is unavailable" in r.stderr

