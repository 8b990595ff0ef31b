"""Merge: incremental, parallel, heterogeneous rows, read-only sweep dirs, and the cheap
state rows that ``status`` polls."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sweeper.merge as merge_mod
from sweeper.merge import current_rows, merge, read_counter
from sweeper.overrides import build_request
from sweeper.paths import SweepPaths
from sweeper.results import TrialOutcome, write_result
from sweeper.state import TrialState
from sweeper.strategies import RandomStrategy
from sweeper.trials import build_table, read_trials, write_trials

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


def _plan(root: Path, n: int) -> SweepPaths:
    space = {"optimizer.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
             "training.batch_size": [16, 32, 64]}
    request = build_request(space, ["+search=random"], lambda k: k == "search")
    design = RandomStrategy(n, seed=0).propose(request.space.params)
    table, _ = build_table(request, design, np.zeros(n, np.int64), ["v"], [0])
    paths = SweepPaths(root)
    write_trials(table, paths, "test")
    return paths


def _write(paths: SweepPaths, tid: int, state: TrialState = TrialState.COMPLETED,
           metrics: dict[str, Any] | None = None, curve: list[dict[str, Any]] | None = None) -> None:
    outcome = TrialOutcome(state, NOW, NOW, metrics=metrics or {}, curve=curve or [])
    assert write_result(paths, read_trials(paths, [tid]), outcome)


def _mixed(paths: SweepPaths, n: int) -> None:
    """Rows as real sweeps leave them: int and float metrics, curves with different keys,
    no curve, a failure without metrics."""
    for tid in range(n):
        if tid % 5 == 4:
            _write(paths, tid, TrialState.FAILED)
        elif tid % 5 == 3:
            _write(paths, tid, metrics={"val_loss": 1 + tid})  # an int
        else:
            keys = ["loss", "acc"] if tid % 2 else ["loss"]
            curve = [{"epoch": e, **{k: 0.1 * e for k in keys}} for e in range(tid % 3)]
            _write(paths, tid, metrics={"val_loss": 0.5 + tid}, curve=curve)


@pytest.fixture
def sweep(tmp_path: Path) -> SweepPaths:
    return _plan(tmp_path / "sweep", 12)


def test_merge_reads_only_new_and_changed_files(sweep: SweepPaths) -> None:
    for tid in range(6):
        _write(sweep, tid, TrialState.FAILED if tid == 2 else TrialState.COMPLETED,
               metrics={"val_loss": 0.1 * tid})
    assert merge(sweep).files_read == 6
    assert merge(sweep).files_read == 0
    _write(sweep, 7, metrics={"val_loss": 0.7})
    _write(sweep, 2, metrics={"val_loss": 0.2})  # a failed trial, run again
    again = merge(sweep)
    assert again.files_read == 2 and again.written
    status = dict(zip(again.results.column("trial_id").to_pylist(),
                      again.results.column("status").to_pylist()))
    assert status[2] == "completed" and status[7] == "completed" and status[6] == "missing"
    sweep.merged.unlink()
    assert merge(sweep, write=False).results.equals(again.results)


def test_rows_with_different_schemas_merge(sweep: SweepPaths) -> None:
    _mixed(sweep, 10)
    result = merge(sweep)
    results = result.results
    assert results.schema.field("val_loss").type == pa.float64()
    curve = results.schema.field("curve").type.value_type
    assert {f.name for f in curve} == {"epoch", "loss", "acc"}
    rows = {r["trial_id"]: r for r in results.to_pylist()}
    assert rows[3]["val_loss"] == 4.0 and rows[4]["status"] == "failed"
    assert rows[4]["val_loss"] is None and rows[4]["curve"] is None
    assert rows[11]["status"] == "missing" and rows[11]["optimizer.lr"] is not None
    assert rows[2]["curve"] == [{"epoch": 0, "loss": 0.0, "acc": None},
                                {"epoch": 1, "loss": 0.1, "acc": None}]
    assert set(result.curves.column_names) == {"trial_id", "epoch", "loss", "acc"}
    # The plan's own columns are the trial table's, as each row file holds them.
    for tid in range(10):
        file_row = pq.read_table(sweep.result(tid)).to_pylist()[0]
        assert {k: rows[tid][k] for k in ("optimizer.lr", "overrides", "seed", "config_hash")} \
            == {k: file_row[k] for k in ("optimizer.lr", "overrides", "seed", "config_hash")}


def test_parallel_read_is_the_single_process_read(tmp_path: Path) -> None:
    paths = _plan(tmp_path / "sweep", 45)
    _mixed(paths, 40)
    paths.result(41).write_bytes(b"not parquet")  # a damaged file is skipped either way
    one = merge(paths, write=False, workers=1)
    two = merge(paths, write=False, workers=2)
    assert two.results.equals(one.results) and two.curves.equals(one.curves)
    assert two.results.schema == one.results.schema
    assert one.skipped == two.skipped and [p.name for p, _ in one.skipped] == ["trial-000041.parquet"]
    assert one.files_read == two.files_read == 41


def test_foreign_rows_are_left_out(sweep: SweepPaths) -> None:
    _write(sweep, 0, metrics={"val_loss": 1.0})
    table = pq.read_table(sweep.result(0))  # trial 0's row, filed as trial 1
    pq.write_table(table.set_column(0, "trial_id", pa.array([1], pa.int64())), sweep.result(1))
    result = merge(sweep)
    assert [p.name for p, _ in result.skipped] == ["trial-000001.parquet"]
    statuses = result.results.column("status").to_pylist()
    assert statuses[:2] == ["completed", "missing"]


def test_merge_into_another_dir(sweep: SweepPaths, tmp_path: Path) -> None:
    for tid in range(4):
        _write(sweep, tid, metrics={"val_loss": 0.1})
    assert merge(sweep).files_read == 4
    mine = tmp_path / "mine" / "copy"
    result = merge(sweep, out=mine)
    # The sweep dir's own results.parquet is reused; the tables go to the other dir.
    assert result.files_read == 0 and result.written
    assert result.results_path == mine / "results.parquet" and result.curves_path.is_file()
    assert pq.read_table(mine / "results.parquet").num_rows == 12
    _write(sweep, 5, metrics={"val_loss": 0.1})
    assert merge(sweep, out=mine).files_read == 1  # now from mine/results.parquet


def test_merge_where_it_cannot_write_returns_the_tables(sweep: SweepPaths, tmp_path: Path) -> None:
    _write(sweep, 0, metrics={"val_loss": 0.1})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = merge(sweep, out=blocker / "out")
    assert not result.written and result.results.num_rows == 12
    assert result.write_error is not None and str(blocker / "out") in result.write_error
    assert result.results_path == blocker / "out" / "results.parquet"
    unwritten = merge(sweep, write=False)
    assert not unwritten.written and unwritten.write_error is None and not sweep.merged.exists()


def _without_root_powers() -> list[str]:
    """A command prefix under which chmod 0555 stops writes, as it does for a colleague."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root writes through 0555 and setpriv (util-linux) is not here to stop it")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def test_a_read_only_sweep_dir_is_merged_without_writing(sweep: SweepPaths) -> None:
    for tid in range(3):
        _write(sweep, tid, metrics={"val_loss": 0.1})
    merge(sweep)
    _write(sweep, 3, metrics={"val_loss": 0.1})
    code = ("import sys; from pathlib import Path; from sweeper.merge import merge;"
            "from sweeper.paths import SweepPaths; r = merge(SweepPaths(Path(sys.argv[1])));"
            "print(r.written, r.files_read, r.results.num_rows, r.write_error)")
    prefix = _without_root_powers()
    before = sorted(p.name for p in sweep.root.iterdir())
    for d in (sweep.results_dir, sweep.root):
        d.chmod(0o555)
    try:
        run = subprocess.run([*prefix, sys.executable, "-c", code, str(sweep.root)],
                             capture_output=True, text=True, timeout=120)
    finally:
        for d in (sweep.root, sweep.results_dir):
            d.chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("False 1 12 ") and "Permission denied" in run.stdout
    assert sorted(p.name for p in sweep.root.iterdir()) == before


def test_current_rows_reads_only_what_changed_and_never_writes(sweep: SweepPaths,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(merge_mod, "_recent", {})
    for tid in range(5):
        _write(sweep, tid, TrialState.FAILED if tid == 1 else TrialState.COMPLETED)
    merge(sweep)
    stamp = sweep.merged.stat().st_mtime_ns
    before = read_counter.files
    rows = current_rows(sweep)
    assert read_counter.files == before  # all five from results.parquet
    assert rows.column_names == list(merge_mod.STATE_COLUMNS)
    assert rows.column("trial_id").to_pylist() == [0, 1, 2, 3, 4]
    _write(sweep, 6)
    rows = current_rows(sweep)
    assert read_counter.files == before + 1 and rows.column("trial_id").to_pylist()[-1] == 6
    _write(sweep, 1, metrics={"val_loss": 0.3})  # the failed trial, run again
    rows = current_rows(sweep)
    assert read_counter.files == before + 2
    assert rows.column("status").to_pylist()[1] == "completed"
    assert current_rows(sweep) is not None and read_counter.files == before + 2
    monkeypatch.setattr(merge_mod, "_recent", {})  # as a fresh process would start
    current_rows(sweep)
    assert read_counter.files == before + 4  # trial 1 and trial 6 changed since the merge
    assert sweep.merged.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in sweep.root.iterdir()) == [
        "curves.parquet", "results", "results.parquet", "trials.parquet"]


def test_current_rows_of_mixed_rows(sweep: SweepPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge_mod, "_recent", {})
    _mixed(sweep, 6)
    row = pq.read_table(sweep.result(2)).drop_columns(["attempt", "slurm_job_id"])
    pq.write_table(row, sweep.result(2))  # an older writer's row, without these columns
    rows = current_rows(sweep, columns=["trial_id", "status", "attempt", "val_loss"]).to_pylist()
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed", "completed"]
    assert rows[2]["attempt"] is None and rows[0]["attempt"] == 1
    assert rows[3]["val_loss"] == 4.0 and rows[4]["val_loss"] is None
    assert not sweep.merged.exists()
