"""End to end on this machine: real processes, real torch training, real Parquet."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, TESTS, read_results, result_rows, run_cli

pytestmark = pytest.mark.slow

BEHAVE = ["cluster=local", "task.fn=sweeper_test_tasks:behave", "search.space={}"]


def background_sweep(*args: str) -> subprocess.Popen[str]:
    """``python -m sweeper ARGS`` started in the background, with the test tasks importable."""
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    return subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_coarse_lstm_sweep_then_merge(cli, tmp_path: Path) -> None:
    """36 trials of the tiny LSTM, two at a time; every merged row is checked."""
    sweep_dir = tmp_path / "coarse"
    r = cli("+search=coarse", "scenario=tiny", "cluster=local", "cluster.max_parallel=2",
            f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "finished: 36 completed" in r.stderr
    assert sorted(p.name for p in (sweep_dir / "logs").iterdir()) == [
        "local-slot-00.log", "local-slot-01.log"]  # one log per slot, not per trial
    m = cli("merge", str(sweep_dir))
    assert m.returncode == 0, m.stderr
    assert "top 5 by val_loss (minimize)" in m.stdout
    rows = read_results(sweep_dir)
    trials = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert [r["trial_id"] for r in rows] == list(range(36))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    for row, trial in zip(rows, trials):
        assert row["status"] == "completed", row["error"]
        for key in ("optimizer.lr", "training.batch_size", "model.hidden_size", "overrides",
                    "config_hash", "seed"):
            assert row[key] == trial[key]
        cfg = yaml.safe_load(row["config_yaml"])
        assert float(cfg["optimizer"]["lr"]) == pytest.approx(row["optimizer.lr"])
        assert cfg["training"]["batch_size"] == row["training.batch_size"]
        assert cfg["model"]["hidden_size"] == row["model.hidden_size"]
        assert cfg["training"]["epochs"] == 3  # the tiny scenario, not base's 50
        assert math.isfinite(row["val_loss"]) and row["val_loss"] > 0
        assert row["train_time_s"] > 0 and row["epochs_run"] == 3
        assert 0 <= row["best_epoch"] < 3
        assert [p["epoch"] for p in row["curve"]] == [0, 1, 2]
        assert min(p["val_loss"] for p in row["curve"]) == pytest.approx(row["val_loss"])
        assert row["attempt"] == 1 and row["duration_s"] > 0
        assert row["finished_at"] >= row["started_at"]
        assert row["hostname"] and row["python_version"] and row["torch_version"].startswith("2.")
        assert row["device"] == "cpu" and row["git_commit"] == commit
        assert row["error"] is None and row["traceback"] is None
    assert len({r["config_hash"] for r in rows}) == 36
    curves = pq.read_table(sweep_dir / "curves.parquet").to_pylist()
    assert len(curves) == 36 * 3 and {"trial_id", "epoch", "train_loss", "val_loss", "lr"} <= set(curves[0])
    losses = [r["val_loss"] for r in rows]
    assert max(losses) > 2 * min(losses)  # the hyperparameters matter


def test_failures_are_rows_and_resume_reruns_exactly_them(cli, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "raise-2").touch()
    (markers / "kill-4").touch()
    sweep_dir = tmp_path / "s"
    args = [*BEHAVE, "+x=range(0,8)", f"+markers={markers}", f"hydra.sweep.dir={sweep_dir}"]
    r = cli(*args)
    assert r.returncode == 1, r.stderr  # some trials failed
    rows = result_rows(sweep_dir)
    assert sorted(rows) == list(range(8))
    assert rows[2]["status"] == "failed" and "planned failure of x=2" in rows[2]["error"]
    assert "RuntimeError" in rows[2]["traceback"] and "sweeper_test_tasks.py" in rows[2]["traceback"]
    assert rows[4]["status"] == "failed" and "SIGKILL" in rows[4]["error"]
    assert all(rows[i]["status"] == "completed" for i in (0, 1, 3, 5, 6, 7))
    untouched = {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns
                 for i in (0, 1, 3, 5, 6, 7)}

    # Plain resume keeps failed trials; --retry-failed reruns exactly those two.
    again = cli("resume", str(sweep_dir))
    assert again.returncode == 0 and "nothing left to run" in again.stderr
    (markers / "raise-2").unlink()
    (markers / "kill-4").unlink()
    for ran in markers.glob("ran-*"):
        ran.unlink()
    r = cli("resume", str(sweep_dir), "--retry-failed")
    assert r.returncode == 0, r.stderr
    assert sorted(int(p.name.split("-")[1]) for p in markers.glob("ran-*")) == [2, 4]
    rows = result_rows(sweep_dir)
    assert all(row["status"] == "completed" for row in rows.values())
    assert rows[2]["attempt"] == 2 and rows[4]["attempt"] == 2
    for i, mtime in untouched.items():
        assert (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns == mtime


def test_same_command_again_skips_completed_trials(cli, tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    args = [*BEHAVE, "+x=range(0,4)", f"+markers={markers}", f"hydra.sweep.dir={tmp_path / 's'}"]
    assert cli(*args).returncode == 0
    first = {p.name for p in markers.iterdir()}
    r = cli(*args)
    assert r.returncode == 0 and "4 completed" in r.stderr and "nothing left to run" in r.stderr
    assert {p.name for p in markers.iterdir()} == first  # no trial ran again


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    proc = background_sweep(*BEHAVE, "+x=range(0,10)", "+sleep_s=1.5", "cluster.max_parallel=2",
                            f"hydra.sweep.dir={sweep_dir}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((sweep_dir / "results").glob("*.parquet"))
                                              if (sweep_dir / "results").is_dir() else []) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "sweeper resume" in err
    rows = result_rows(sweep_dir)
    statuses = {row["status"] for row in rows.values()}
    assert statuses <= {"completed", "cancelled"} and "cancelled" in statuses
    completed_before = {i for i, row in rows.items() if row["status"] == "completed"}
    assert len(completed_before) < 10
    mtimes = {i: (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns for i in completed_before}
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 0, r.stderr
    rows = result_rows(sweep_dir)
    assert sorted(rows) == list(range(10)) and all(row["status"] == "completed" for row in rows.values())
    for i, mtime in mtimes.items():
        assert (sweep_dir / f"results/trial-{i:06d}.parquet").stat().st_mtime_ns == mtime


def test_same_trial_twice_gives_the_same_metrics(cli, tmp_path: Path) -> None:
    metrics = []
    for name in ("a", "b"):
        d = tmp_path / name
        r = cli("optimizer.lr=0.003,0.01", "scenario=tiny", "cluster=local", f"hydra.sweep.dir={d}")
        assert r.returncode == 0, r.stderr
        metrics.append({i: (row["val_loss"], [p["train_loss"] for p in row["curve"]])
                        for i, row in result_rows(d).items()})
    assert metrics[0] == metrics[1] and len(metrics[0]) == 2


def test_merge_reports_corrupt_files_fills_missing_and_skips_torch(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    assert cli(*BEHAVE, "+x=range(0,5)", f"hydra.sweep.dir={sweep_dir}").returncode == 0
    (sweep_dir / "results/trial-000001.parquet").write_bytes(b"garbage, half a file")
    (sweep_dir / "results/trial-000003.parquet").unlink()
    code = ("import sys; from sweeper.cli import main; rc = main(['merge', sys.argv[1]]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(sweep_dir)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "NO_TORCH" in r.stdout
    assert "skipped" in r.stderr and "trial-000001.parquet" in r.stderr
    rows = {row["trial_id"]: row for row in read_results(sweep_dir)}
    assert sorted(rows) == list(range(5))
    assert rows[1]["status"] == "missing" and rows[3]["status"] == "missing"
    assert rows[0]["status"] == "completed" and rows[1]["x"] == 1


def test_cluster_overrides_apply_under_slurm_but_cli_and_search_win(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = cli("plan", "cluster=local", "training.batch_size=16,32", "scenario=mackey_glass",
            "model.hidden_size=8", f"hydra.sweep.dir={sweep_dir}", env={"SLURM_JOB_ID": "123"})
    assert r.returncode == 0, r.stderr
    sweep = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert sweep["cluster_overrides_applied"] is True
    cfg = sweep["variants"][0]["config"]
    assert cfg["training"]["epochs"] == 200  # from cluster_overrides
    assert cfg["model"]["hidden_size"] == 8  # the command line beats cluster_overrides
    rows = pq.read_table(sweep_dir / "trials.parquet").column("training.batch_size").to_pylist()
    assert rows == [16, 32]  # searched values beat cluster_overrides' 128
    local = cli("plan", "cluster=local", "training.batch_size=16,32",
                f"hydra.sweep.dir={tmp_path / 'l'}")
    cfg = yaml.safe_load((tmp_path / "l" / "sweep.yaml").read_text())["variants"][0]["config"]
    assert local.returncode == 0 and cfg["training"]["epochs"] == 50


def test_group_sweep_composes_each_variant_once(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = cli("plan", "cluster=local", "scenario=tiny,lorenz", "optimizer.lr=0.1,0.01",
            f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    sweep = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert [v["choices"] for v in sweep["variants"]] == [["scenario=tiny"], ["scenario=lorenz"]]
    table = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert [(t["scenario"], t["variant"]) for t in table] == [
        ("tiny", 0), ("tiny", 0), ("lorenz", 1), ("lorenz", 1)]
    assert sweep["variants"][1]["config"]["data"]["name"] == "lorenz"
    assert sweep["variants"][0]["config"]["training"]["epochs"] == 3


def test_hydra_tasks_can_read_hydra_config(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = cli("cluster=local", "task.fn=sweeper_test_tasks:hydra_aware", "+x=range(0,3)",
            f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert {i: row["val_loss"] for i, row in result_rows(sweep_dir).items()} == {0: 0.0, 1: 1.0, 2: 2.0}
    # runtime.output_dir is the trial's own dir, made when asked for; override_dirname its own
    note = (sweep_dir / "checkpoints" / "trial-000002" / "note.txt").read_text()
    assert note.startswith("+x=2,") and "cluster=local" in note


def test_each_slot_gets_its_own_gpu(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = cli("cluster=local", "task.fn=sweeper_test_tasks:gpu_slot", "+x=range(0,6)",
            f"hydra.sweep.dir={sweep_dir}", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert r.returncode == 0, r.stderr
    assert "GPUs 0,1" in r.stderr and "2 at once" in r.stderr
    seen = [row["val_loss"] for row in result_rows(sweep_dir).values()]
    assert sorted(set(seen)) == [0.0, 1.0]


def test_single_training_without_a_search(cli) -> None:
    r = cli("scenario=tiny", "cluster=local", "hydra.run.dir=/tmp/sweeper-single-run")
    assert r.returncode == 0, r.stderr
    assert "val_loss=" in r.stderr and "epochs_run=3" in r.stderr


def test_weird_sweep_dir(cli, weird_path: Path) -> None:
    """Spaces, quotes, a semicolon and a newline in the sweep dir and in a searched value."""
    from sweeper.space import quote

    sweep_dir = weird_path / "sweep"
    r = cli(*BEHAVE, "+x=range(0,3)", f"+markers={quote(str(weird_path))}",
            f"hydra.sweep.dir={quote(str(sweep_dir))}")
    assert r.returncode == 0, r.stderr
    rows = result_rows(sweep_dir)
    assert len(rows) == 3 and all(row["status"] == "completed" for row in rows.values())
    assert len(list(weird_path.glob("ran-*"))) == 3  # the task got the path intact
    m = cli("merge", str(sweep_dir))
    assert m.returncode == 0, m.stderr
    assert (sweep_dir / "results.parquet").is_file()


def test_live_progress_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the rich bar shows done, running, failed and the ETA."""
    import pty

    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{ROOT}")
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.chdir(ROOT)
    out = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 4096)
        out.extend(data)
        return data

    status = pty.spawn([sys.executable, "-m", "sweeper", *BEHAVE, "+x=range(0,4)", "+sleep_s=0.5",
                        f"hydra.sweep.dir={tmp_path / 's'}"], read)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "4/4" in text and "running" in text and "failed 0" in text and "ETA" in text


def test_cancel_stops_a_running_local_sweep(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    proc = background_sweep(*BEHAVE, "+x=range(0,8)", "+sleep_s=2", "cluster.max_parallel=2",
                            f"hydra.sweep.dir={sweep_dir}")
    for _ in range(300):
        logs = sweep_dir / "logs"
        if (logs / "local-driver.json").is_file() and list(logs.glob("local-slot-*.log")):
            break
        time.sleep(0.1)
    r = run_cli("cancel", str(sweep_dir))
    assert r.returncode == 0 and "asked 1 local sweep process(es) to stop" in r.stdout, r.stdout
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    statuses = {row["status"] for row in result_rows(sweep_dir).values()}
    assert "cancelled" in statuses and statuses <= {"completed", "cancelled"}
    assert not (sweep_dir / "logs" / "local-driver.json").exists()


def test_same_dir_twice_at_once_is_refused(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    args = [*BEHAVE, "+x=range(0,4)", "+sleep_s=2", f"hydra.sweep.dir={sweep_dir}"]
    first = background_sweep(*args)
    for _ in range(300):
        if (sweep_dir / "logs" / "local-driver.json").is_file():
            break
        time.sleep(0.1)
    second = run_cli(*args)
    assert second.returncode == 2 and "a sweep is already running in" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert all(row["attempt"] == 1 for row in result_rows(sweep_dir).values())


def test_a_retried_trial_killed_again_gets_a_new_row(cli, tmp_path: Path) -> None:
    markers = tmp_path / "m"
    markers.mkdir()
    (markers / "kill-0").touch()
    (markers / "exit-1").touch()
    sweep_dir = tmp_path / "s"
    args = [*BEHAVE, "+x=range(0,2)", f"+markers={markers}", f"hydra.sweep.dir={sweep_dir}"]
    assert cli(*args).returncode == 1
    rows = result_rows(sweep_dir)
    assert rows[1]["status"] == "failed" and "sys.exit(3)" in rows[1]["error"]
    assert cli("resume", str(sweep_dir), "--retry-failed").returncode == 1
    row = result_rows(sweep_dir)[0]
    assert row["status"] == "failed" and row["attempt"] == 2 and "SIGKILL" in row["error"]
