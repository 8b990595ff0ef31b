"""One trial state for every command, the executor's completion hook, and pruned trials."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import result_rows
from sweeper.state import TrialState, exit_code_for

BEHAVE = ["cluster=local", "task.fn=sweeper_test_tasks:behave", "search.space={}"]


@pytest.mark.parametrize(("state", "active", "finished", "settled", "rerun", "rerun_failed"), [
    ("not submitted", False, False, False, True, True),
    ("pending", True, False, False, False, False),
    ("running", True, False, False, False, False),
    ("requeued", True, False, False, False, False),
    ("completed", False, True, True, False, False),
    ("pruned", False, True, True, False, False),
    ("failed", False, True, False, False, True),
    ("timeout", False, True, False, True, True),
    ("cancelled", False, True, False, True, True),
    ("lost", False, True, False, True, True),
    ("unknown", False, False, False, False, False),
])
def test_every_state_answers_every_question(state: str, active: bool, finished: bool,
                                            settled: bool, rerun: bool, rerun_failed: bool) -> None:
    s = TrialState(state)
    assert (s.is_active(), s.is_finished(), s.is_settled()) == (active, finished, settled)
    assert (s.needs_run(retry_failed=False), s.needs_run(retry_failed=True)) == (rerun, rerun_failed)


def test_exit_codes() -> None:
    assert exit_code_for([TrialState.COMPLETED, TrialState.PRUNED]) == 0  # pruned is no failure
    assert exit_code_for([TrialState.COMPLETED, TrialState.FAILED]) == 1
    assert exit_code_for([TrialState.LOST]) == 1
    assert exit_code_for([TrialState.COMPLETED], interrupted=True) == 130


def test_no_status_literals_outside_the_state_module() -> None:
    """Every command asks TrialState; a string such as "completed" in code would drift."""
    import re

    root = Path(__file__).resolve().parents[1] / "sweeper"
    pattern = re.compile(r"""["'](completed|failed|pruned|timeout|cancelled|requeued|lost|pending|running)["']""")
    offenders = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") if p.name != "state.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def _plan(cli, sweep_dir: Path, *extra: str) -> None:
    r = cli("plan", *BEHAVE, "+x=0,1,2,3", f"hydra.sweep.dir={sweep_dir}", *extra)
    assert r.returncode == 0, r.stderr


def _row(paths, trial_id: int, state: TrialState) -> None:
    from sweeper.results import TrialOutcome, write_result
    from sweeper.trials import read_trials

    now = dt.datetime.now(dt.timezone.utc)
    write_result(paths, read_trials(paths, [trial_id]), TrialOutcome(state, now, now))


def test_a_pruned_trial_is_finished_and_never_rerun(cli, tmp_path: Path) -> None:
    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord
    from sweeper.sweep import pending_trials
    from sweeper.trials import read_trials

    sweep_dir = tmp_path / "s"
    _plan(cli, sweep_dir)
    paths = SweepPaths(sweep_dir)
    _row(paths, 1, TrialState.PRUNED)
    _row(paths, 2, TrialState.FAILED)
    todo, before = pending_trials(paths, read_trials(paths), retry_failed=True)
    assert todo.column("trial_id").to_pylist() == [0, 2, 3]
    assert before[TrialState.PRUNED] == 1
    assert SweepRecord.load(paths).executor == "local"
    r = cli("resume", str(sweep_dir))
    assert r.returncode == 0, r.stderr  # it ran 0 and 3; failed 2 is kept, pruned 1 is settled
    assert "running 2 of 4 trials" in r.stderr
    rows = result_rows(sweep_dir)
    assert {t: rows[t]["status"] for t in rows} == {
        0: "completed", 1: "pruned", 2: "failed", 3: "completed"}
    status = cli("status", str(sweep_dir))
    assert "pruned" in status.stdout


def test_the_completion_hook_is_called_once_per_trial(cli, tmp_path: Path) -> None:
    from sweeper.executors import make_executor
    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord
    from sweeper.sweep import run_pending
    from sweeper.trials import read_trials

    sweep_dir = tmp_path / "s"
    _plan(cli, sweep_dir, f"+markers={tmp_path}")
    (tmp_path / "raise-2").touch()
    paths = SweepPaths(sweep_dir)
    record = SweepRecord.load(paths)
    seen: list[tuple[int, TrialState]] = []
    executor = make_executor(record.cluster, record.executor)
    result = run_pending(paths, record, read_trials(paths), executor, retry_failed=False,
                         on_done=lambda tid, s: seen.append((tid, s)))
    assert sorted(seen) == [(0, TrialState.COMPLETED), (1, TrialState.COMPLETED),
                            (2, TrialState.FAILED), (3, TrialState.COMPLETED)]
    assert result.states == Counter({TrialState.COMPLETED: 3, TrialState.FAILED: 1})
    assert result.exit_code == 1


def test_config_hash_depends_on_key_names() -> None:
    """{a: [1, 2]} and {b: [1, 2]} are different trials, so their hashes differ."""
    from sweeper.overrides import build_request
    from sweeper.strategies import GridStrategy
    from sweeper.trials import build_table

    def hashes(key: str) -> list[str]:
        request = build_request({key: [1, 2]}, [], lambda k: False, None, 0)
        design = GridStrategy().propose(request.space.params)
        ids = pa.array([0, 0]).to_numpy()
        table, _ = build_table(request, design, ids, ["v"], [0])
        return table.column("config_hash").to_pylist()

    assert set(hashes("a")).isdisjoint(hashes("b"))
