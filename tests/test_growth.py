"""A trial table that grows: `sweeper resume DIR --n-trials N`, and readers that iterate the
ids present, not a count."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import result_rows

RANDOM = ["cluster=local", "task.fn=sweeper_test_tasks:behave", "search.space={}",
          "search.method=random", "search.n_trials=6", "+x=range(0,40)", "+y=interval(0,1)"]


def _table(sweep_dir: Path) -> list[dict]:
    from sweeper.paths import SweepPaths
    from sweeper.trials import read_trials

    return read_trials(SweepPaths(sweep_dir)).select(["trial_id", "x", "y"]).to_pylist()


def test_resume_n_trials_extends_a_random_sweep(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "r"
    assert cli(*RANDOM, f"hydra.sweep.dir={sweep_dir}").returncode == 0
    first = _table(sweep_dir)
    before = {p.name: p.stat().st_mtime_ns for p in (sweep_dir / "results").glob("trial-*")}
    r = cli("resume", str(sweep_dir), "--n-trials", "10")
    assert r.returncode == 0, r.stderr
    assert "grew" in r.stderr and "from 6 to 10 trials" in r.stderr
    grown = _table(sweep_dir)
    assert grown[:6] == first  # the same seeded stream goes on: earlier trials unchanged
    assert [t["trial_id"] for t in grown] == list(range(10))
    assert len({(t["x"], t["y"]) for t in grown}) == 10  # no point twice
    after = {p.name: p.stat().st_mtime_ns for p in (sweep_dir / "results").glob("trial-*")}
    assert {k: after[k] for k in before} == before  # only the new trials ran
    rows = result_rows(sweep_dir)
    assert sorted(rows) == list(range(10))
    assert all(row["status"] == "completed" for row in rows.values())
    assert pq.read_table(sweep_dir / "trials.parquet").num_rows == 6  # the plan is never rewritten
    status = cli("status", str(sweep_dir))
    assert "10 trials" in status.stdout and "completed" in status.stdout


def test_a_grid_cannot_grow(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "g"
    grid = ["cluster=local", "task.fn=sweeper_test_tasks:behave", "search.space={}",
            "+x=1,2,3", f"hydra.sweep.dir={sweep_dir}"]
    assert cli(*grid).returncode == 0
    r = cli("resume", str(sweep_dir), "--n-trials", "5")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "sweeper: error: --n-trials grows random, qmc and adaptive sweeps, and this one is grid: "
        "a grid is fixed by its space; plan a wider space into a new dir with "
        "hydra.sweep.dir=<new path>"]


def test_growing_to_fewer_trials_is_refused(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "r"
    assert cli("plan", *RANDOM, f"hydra.sweep.dir={sweep_dir}").returncode == 0
    r = cli("resume", str(sweep_dir), "--n-trials", "4")
    assert r.returncode == 2
    assert "does not grow the sweep: it holds 6 trials already" in r.stderr


def test_rerunning_the_command_with_a_larger_budget_grows_the_same_sweep(cli, tmp_path: Path) -> None:
    """The fingerprint leaves the budget out: the same command with n_trials=9 is the same sweep."""
    sweep_dir = tmp_path / "r"
    assert cli("plan", *RANDOM, f"hydra.sweep.dir={sweep_dir}").returncode == 0
    first = _table(sweep_dir)
    r = cli("plan", *RANDOM, "search.n_trials=9", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    assert "3 added" in r.stderr
    assert _table(sweep_dir)[:6] == first and len(_table(sweep_dir)) == 9


@pytest.mark.parametrize("n_parts", [1, 3])
def test_appended_ids_continue_from_the_highest(tmp_path: Path, n_parts: int) -> None:
    import pyarrow as pa

    from sweeper.paths import SweepPaths
    from sweeper.trials import append_trials, next_trial_id, read_trials, trial_ids, write_trials

    paths = SweepPaths(tmp_path)
    write_trials(pa.table({"trial_id": [0, 1, 2], "v": [0.1, 0.2, 0.3]}), paths, "f")
    for i in range(n_parts):
        added = append_trials(paths, pa.table({"trial_id": [0, 0], "v": [1.0 + i, 2.0 + i]}))
        assert added.column("trial_id").to_pylist() == [3 + 2 * i, 4 + 2 * i]
    assert trial_ids(paths) == list(range(3 + 2 * n_parts))
    assert next_trial_id(paths) == 3 + 2 * n_parts
    assert read_trials(paths, [1, 4]).column("v").to_pylist() == [0.2, 2.0]
