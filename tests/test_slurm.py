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
from datetime import datetime
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


def wait_done(sweep_dir: Path, timeout_s: float = 300, grace_s: float = 5) -> dict[int, str]:
    """Poll sweeper's own state until no trial is queued; returns the states."""
    from sweeper.paths import SweepPaths
    from sweeper.status import SweepWatcher

    watcher = SweepWatcher(SweepPaths(sweep_dir), grace_s=grace_s)
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


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m sweeper ARGS`` in the background (run_cli's environment)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str], sweep_dir: Path) -> None:
    """After a test: end its background command and its arrays, whatever happened."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    ids = job_ids(sweep_dir) if (sweep_dir / "launches").is_dir() else []
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def until(predicate, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def fake_tools(bin_dir: Path, **scripts: str) -> Path:
    """A dir of stand-ins for SLURM commands (name -> shell body), to put first on PATH."""
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_coarse_grid_is_throttled_to_four(tmp_path: Path) -> None:
    # The coarse grid's first 16 points (allow_truncate): enough to see the throttle hold
    # through four waves, in less than half the time of all 36.
    sweep_dir = tmp_path / "coarse"
    r = run_cli("+search=coarse", "scenario=tiny", *SLURM, "cluster.array_parallelism=4",
                "search.n_trials=16", "search.allow_truncate=true", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "submitted 16 trials as 1 array(s)" in r.stderr and "sweeper status" in r.stderr
    states = wait_done(sweep_dir, timeout_s=600)
    assert list(states.values()) == ["completed"] * 16, states
    rows = sacct(job_ids(sweep_dir), expect=16)
    assert len(rows) == 16 and {row["State"] for row in rows} == {"COMPLETED"}
    assert max_concurrent(rows) == 4  # the first four start together; never a fifth
    assert len(list((sweep_dir / "logs").glob("slurm-*.log"))) == 16  # one per array task
    m = run_cli("merge", str(sweep_dir))
    assert m.returncode == 0 and "16 completed" in m.stdout
    merged = pq.read_table(sweep_dir / "results.parquet").to_pylist()
    assert all(row["slurm_job_id"] == job_ids(sweep_dir)[0] for row in merged)
    assert sorted(row["slurm_array_task_id"] for row in merged) == list(range(16))
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
    # The task died with its trial: no row, only the attempt's marker, so the trial is lost
    # (failed is a row the trial wrote; `resume` reruns lost trials without --retry-failed).
    assert states == {0: "completed", 1: "lost", 2: "completed"}, states
    assert 1 not in result_rows(sweep_dir) and (sweep_dir / "attempts" / "trial-000001.json").is_file()
    status = run_cli("status", str(sweep_dir), "--grace-s", "0")
    assert re.search(r"lost\s*│\s*1\s*│", status.stdout) and not re.search(r"failed\s*│", status.stdout)
    assert re.search(r"lost \(ended without a result\): 1 \(\d+_1: FAILED", status.stderr), status.stderr
    before = {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in (0, 2)}
    # Within 30 s (resume's grace) of the task's end its row may still be on its way over a
    # shared file system: resume waits for it rather than run the trial twice (D8) ...
    job = job_ids(sweep_dir)[0]
    ended = next(row["End"] for row in sacct([job], expect=3) if row["JobID"] == f"{job}_1")
    r = run_cli("resume", str(sweep_dir))
    assert r.returncode == 0 and "1 pending" in r.stderr and "nothing left to run" in r.stderr
    # ... and runs it once the grace, counted from that end (not the submission), has passed.
    time.sleep(max(0.0, datetime.fromisoformat(ended).timestamp() + 31 - time.time()))
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
    assert "SIGUSR2" in log and "requeueing" in log and "(restart 1 of at most 1)" in log
    assert "not requeued: its 1 restarts used all of cluster.max_retries=1" in log
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


def test_cancel_stops_the_arrays_and_says_when_scancel_fails(tmp_path: Path) -> None:
    """A failing scancel (first on PATH) or none at all: cancel says so, exits 1 and the
    arrays run on; the real one cancels them. Then polls ask sacct once (D18)."""
    from sweeper.paths import SweepPaths
    from sweeper.status import SweepWatcher

    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,6)", "+sleep_s=30", "cluster.array_parallelism=2",
                   f"hydra.sweep.dir={sweep_dir}").returncode == 0
    job = job_ids(sweep_dir)[0]
    failing = fake_tools(tmp_path / "bin", scancel="echo 'scancel: error: Kill job error on job "
                         "id 1: Access/permission denied' >&2; exit 1")
    r = run_cli("cancel", str(sweep_dir), env={"PATH": f"{failing}:{os.environ['PATH']}"})
    assert r.returncode == 1, r.stderr
    assert "scancel failed: scancel: error: Kill job error on job id 1: Access/permission denied; " \
           "nothing on SLURM was cancelled" in r.stderr
    r = run_cli("cancel", str(sweep_dir), env={"PATH": str(fake_tools(tmp_path / "empty"))})
    assert r.returncode == 1 and "scancel is not on PATH" in r.stderr, r.stderr
    queued = subprocess.run(["squeue", "-h", "-r", "-j", job], capture_output=True, text=True)
    assert len(queued.stdout.splitlines()) == 6  # untouched
    r = run_cli("cancel", str(sweep_dir))
    assert r.returncode == 0 and "cancelled 1 SLURM array" in r.stdout
    assert wait_done(sweep_dir) == dict.fromkeys(range(6), "cancelled")
    watcher = SweepWatcher(SweepPaths(sweep_dir), grace_s=5)
    for _ in range(5):
        assert watcher.poll().states == dict.fromkeys(range(6), "cancelled")
    assert watcher.sacct_calls == 1  # for the elements that left without a row, once


def test_bad_cluster_settings_fail_before_submission(tmp_path: Path) -> None:
    before = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
    r = run_cli(*BEHAVE, "+x=range(0,2)", "cluster.partition=nope", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 2 and "invalid partition specified: nope" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "s" / "trials.parquet").exists()
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout == before


def test_status_without_sacct_does_not_hang(tmp_path: Path) -> None:
    """Accounting down (an sacct that fails, first on PATH): status still counts from the queue
    and the result files, says so, and returns promptly. sacct is asked only of elements that
    left the queue without a row: here one cancelled before it started."""
    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,2)", "+sleep_s=3", "cluster.array_parallelism=1",
                   f"hydra.sweep.dir={sweep_dir}").returncode == 0
    subprocess.run(["scancel", f"{job_ids(sweep_dir)[0]}_1"], check=True)
    # A long grace: under load, accounting may learn of the array later than 5 s, and until
    # then an unstarted element out of the queue is only pending, not yet cancelled.
    assert wait_done(sweep_dir, grace_s=60) == {0: "completed", 1: "cancelled"}
    failing = fake_tools(tmp_path / "bin", sacct="echo 'sacct: error: slurmdbd: connection "
                         "refused' >&2; exit 1")
    start = time.monotonic()
    r = run_cli("status", str(sweep_dir), "--grace-s", "0",
                env={"PATH": f"{failing}:{os.environ['PATH']}"})
    assert r.returncode == 0 and time.monotonic() - start < 30
    assert re.search(r"completed\s*│\s*1\s*│", r.stdout), r.stdout
    assert re.search(r"lost\s*│\s*1\s*│", r.stdout), r.stdout  # without sacct: no row, so lost
    assert "sacct is unavailable" in r.stderr


def test_retry_failed_runs_as_running_is_waited_for_and_never_submitted_twice(tmp_path: Path) -> None:
    """D1: the failed row of attempt 1 never stands for attempt 2 while attempt 2 runs."""
    markers = tmp_path / "m"
    markers.mkdir()
    (markers / "raise-1").touch()
    sweep_dir = tmp_path / "s"
    assert run_cli(*BEHAVE, "+x=range(0,2)", f"+markers={markers}", "+sleep_s=20",
                   f"hydra.sweep.dir={sweep_dir}").returncode == 0
    assert wait_done(sweep_dir) == {0: "completed", 1: "failed"}
    (markers / "raise-1").unlink()
    waiting = start_cli("resume", str(sweep_dir), "--retry-failed", "--wait")
    try:
        until(lambda: list(markers.glob("ran-1-*")), 120, "the rerun of trial 1 to start")
        status = run_cli("status", str(sweep_dir))
        assert re.search(r"running\s*│\s*1\s*│", status.stdout), status.stdout
        assert not re.search(r"failed\s*│", status.stdout) and "running: trials 1" in status.stderr
        again = run_cli("resume", str(sweep_dir), "--retry-failed")
        assert again.returncode == 0 and "nothing left to run" in again.stderr, again.stderr
        assert waiting.poll() is None, "--wait returned while the rerun still ran"
        _, err = waiting.communicate(timeout=120)
    finally:
        stop(waiting, sweep_dir)
    assert waiting.returncode == 0 and "finished: 1 completed" in err, err
    row = result_rows(sweep_dir)[1]
    assert row["status"] == "completed" and row["attempt"] == 2
    assert len(job_ids(sweep_dir)) == 2  # the first launch and the retry; no third


def test_a_timed_out_trial_without_checkpoint_is_requeued_and_shows_so(tmp_path: Path) -> None:
    """The built-in requeue of a trial that does not checkpoint: from its `timeout` row until
    its second attempt runs, it is pending or running, never timeout (the row is attempt 1's).
    The trial sleeps (a blocking call): the warning's watchdog still stops it before SLURM's
    own time-limit kill, which would leave no time to requeue."""
    from sweeper.attempts import read_marker
    from sweeper.paths import SweepPaths
    from sweeper.state import TrialState
    from sweeper.status import SweepWatcher

    sweep_dir = tmp_path / "s"
    r = run_cli("cluster=slurm", "cluster.mem_gb=0.5", "task.fn=sweeper_test_tasks:behave",
                "search.space={}", "+x=range(0,1)", "+sleep_s=600", "cluster.timeout_min=1",
                "cluster.signal_delay_s=15", "cluster.max_retries=1", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    paths = SweepPaths(sweep_dir)
    watcher = SweepWatcher(paths, grace_s=5)
    seen: list[str] = []
    running_again = 0
    end = time.monotonic() + 300
    try:
        while running_again < 3 and time.monotonic() < end:
            state = watcher.poll().states[0]
            if seen or result_rows(sweep_dir).get(0, {}).get("status") == "timeout":
                seen.append(state.value)
            marker = read_marker(paths, 0)
            running_again += marker is not None and marker.attempt == 2 and state is TrialState.RUNNING
            release_requeued()
            time.sleep(0.5)
        log = next((sweep_dir / "logs").glob("slurm-*.log")).read_text()
        first, requeued, _ = log.partition("requeueing")
        assert requeued and "DUE TO TIME LIMIT" not in first, log
        assert running_again == 3, seen
        assert set(seen) <= {"pending", "requeued", "running"} and "pending" in seen, seen
        status = run_cli("status", str(sweep_dir))
        assert re.search(r"running\s*│\s*1\s*│", status.stdout), status.stdout
    finally:
        subprocess.run(["scancel", *job_ids(sweep_dir)], check=True)
    assert wait_done(sweep_dir) == {0: "cancelled"}
    assert result_rows(sweep_dir)[0]["attempt"] == 2


def test_wait_holds_no_lock(tmp_path: Path) -> None:
    """D4: while `resume --wait` waits, status, plan and resume on the dir return at once
    (a held sweep-dir lock would make them wait up to its 60 s timeout)."""
    sweep_dir = tmp_path / "s"
    overrides = [*BEHAVE, "+x=range(0,2)", "+sleep_s=60", f"hydra.sweep.dir={sweep_dir}"]
    assert run_cli("plan", *overrides).returncode == 0
    waiting = start_cli("resume", str(sweep_dir), "--wait")
    try:
        until(lambda: len(list((sweep_dir / "attempts").glob("trial-*.json"))) == 2
              if (sweep_dir / "attempts").is_dir() else False, 120, "both trials to run")
        for args in (["status", str(sweep_dir)], ["plan", *overrides], ["resume", str(sweep_dir)]):
            start = time.monotonic()
            r = run_cli(*args, timeout=120)
            took = time.monotonic() - start
            assert r.returncode == 0 and took < 15, (args, f"{took:.1f}s", r.stderr)
        assert "nothing left to run" in r.stderr, r.stderr
        assert waiting.poll() is None, "--wait returned while the trials still ran"
        assert run_cli("cancel", str(sweep_dir)).returncode == 0
        _, err = waiting.communicate(timeout=120)
    finally:
        stop(waiting, sweep_dir)
    assert waiting.returncode == 1 and "finished: 2 cancelled" in err, err


def test_split_arrays_keep_the_throttle(tmp_path: Path) -> None:
    """2-task arrays under a throttle of 4: five arrays on four chains (afterany), four tasks
    at once across them, never more."""
    sweep_dir = tmp_path / "s"
    r = run_cli(*BEHAVE, "+x=range(0,10)", "+sleep_s=8", "cluster.max_array_size=2",
                "cluster.array_parallelism=4", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "as 5 array(s)" in r.stderr and "at most 4 at once" in r.stderr
    assert list(wait_done(sweep_dir).values()) == ["completed"] * 10
    rows = sacct(job_ids(sweep_dir), expect=10)
    assert len(rows) == 10 and {row["State"] for row in rows} == {"COMPLETED"}
    assert max_concurrent(rows) == 4
