"""Run what a sweep dir still needs: the one path shared by a fresh run and ``resume``.

The sweep dir's lock is held only while deciding what to run and claiming it (the local
driver record, or the SLURM launch record); waiting for the trials happens outside it, so
``status``, ``cancel`` and a second ``resume`` are never blocked by a running sweep.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sweeper.console import err as console
from sweeper.console import shell_path
from sweeper.errors import SweeperError
from sweeper.executors import Executor, LaunchResult
from sweeper.executors._base import OnDone
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.state import TrialState

__all__ = ["finish", "merge_and_show", "pending_trials", "print_cv", "print_top", "run_pending"]


def pending_trials(paths: SweepPaths, table: pa.Table, retry_failed: bool
                   ) -> tuple[pa.Table, dict[TrialState, int]]:
    """Rows still to run, and the counts of the trials' current states.

    Settled trials (completed, pruned) never run again, nor do trials still queued or
    running. Failed ones run again only with ``retry_failed``; cancelled, timed-out, lost and
    never-run trials always do.
    """
    from sweeper.status import sweep_state

    state = sweep_state(paths, use_sacct=True)
    if not state.queue_ok:
        raise SweeperError(
            "cannot read the SLURM queue (squeue failed, or is not on PATH), so trials that may "
            "still run cannot be told apart from lost ones; nothing was submitted. Run "
            f"`sweeper resume {shell_path(paths.root)}` again on a login node where squeue works"
        )
    keep = [tid for tid, s in state.states.items() if not s.needs_run(retry_failed)]
    mask = pc.invert(pc.is_in(table.column("trial_id"), pa.array(keep, pa.int64())))
    counts: dict[TrialState, int] = {s: n for s, n in state.counts().items()
                                     if s is not TrialState.NOT_SUBMITTED}
    return table.filter(mask), counts


def run_pending(paths: SweepPaths, record: SweepRecord, table: pa.Table, executor: Executor,
                retry_failed: bool, wait: bool = False, on_done: OnDone | None = None
                ) -> LaunchResult:
    """Launch every trial that still needs to run (see :func:`pending_trials`).

    Under the sweep dir's lock, from deciding what to run until it is claimed, so two
    commands never run the same trials; then, without the lock, wait when the trials run
    here or when ``wait`` asks for it.
    """
    from sweeper.driver import claim_driver, refuse_if_live
    from sweeper.locks import dir_lock

    if record.search.adaptive:
        return run_adaptive(paths, record, executor, wait, on_done, retry_failed)
    with dir_lock(paths.lock, "the sweep dir", timeout_s=60):
        refuse_if_live(paths)
        todo, before = pending_trials(paths, table, retry_failed)
        _say_before(before, retry_failed)
        if todo.num_rows == 0:
            console.print("[sweeper] nothing left to run")
            return _wait_for_active(paths, record, executor, on_done) if wait else LaunchResult()
        console.print(f"[sweeper] running {todo.num_rows} of {table.num_rows} trials")
        if executor.runs_here:
            claim_driver(paths)
        submission = executor.submit(paths, record, todo)
    return _follow(paths, record, executor, submission, wait, on_done)


def run_adaptive(paths: SweepPaths, record: SweepRecord, executor: Executor, wait: bool = False,
                 on_done: OnDone | None = None, retry_failed: bool = False) -> LaunchResult:
    """Start workers that ask the study for trials until it has ``search.n_trials``: this
    process's slots (local), or a worker array (SLURM). Trials whose worker died are told as
    failed and asked again first (see :mod:`sweeper.asking`)."""
    from sweeper.asking import Asker
    from sweeper.driver import claim_driver, refuse_if_live
    from sweeper.locks import dir_lock

    with dir_lock(paths.lock, "the sweep dir", timeout_s=60):
        refuse_if_live(paths)
        asker = Asker(paths, record)
        asker.recover(none_starting=executor.runs_here)
        if retry_failed and (n_failed := asker.retry_failed()):
            console.print(f"[sweeper] the parameters of {n_failed} failed trial(s) are asked again")
        left = asker.left()
        n = record.search.n_trials or 0
        console.print(f"[sweeper] study: {n - left} of {n} trials asked so far"
                      f" ({_study_where(paths, record)})")
        if asker.to_ask() == 0:
            console.print("[sweeper] nothing left to ask")
            return _wait_for_active(paths, record, executor, on_done) if wait else LaunchResult()
        if executor.runs_here:
            claim_driver(paths)
        submission = executor.launch_workers(paths, record, asker)
    return _follow(paths, record, executor, submission, wait, on_done)


def _follow(paths: SweepPaths, record: SweepRecord, executor: Executor, submission: Any,
            wait: bool, on_done: OnDone | None) -> LaunchResult:
    """After the claim, outside the lock: wait when the trials run here or ``wait`` asks for
    it, else return the jobs; the local driver record goes when this process stops driving."""
    from sweeper.driver import release_driver

    try:
        if executor.runs_here or wait:
            return executor.wait(paths, record, submission, on_done)
        return LaunchResult(job_ids=submission.job_ids)
    finally:
        if executor.runs_here:
            release_driver(paths)


def _study_where(paths: SweepPaths, record: SweepRecord) -> str:
    from sweeper.study import storage_url

    url = storage_url(paths, record.search)
    return "journal " + url if "://" not in url else url.split("@")[-1].split("?")[0]


def _wait_for_active(paths: SweepPaths, record: SweepRecord, executor: Executor,
                     on_done: OnDone | None) -> LaunchResult:
    """``--wait`` with nothing to submit: wait for the trials still queued or running."""
    from sweeper.executors._base import Submission
    from sweeper.status import sweep_state

    active = sorted(t for t, s in sweep_state(paths).states.items() if s.is_active())
    if not active or executor.runs_here:
        return LaunchResult()
    console.print(f"[sweeper] waiting for the {len(active)} trial(s) still queued or running")
    return executor.wait(paths, record, Submission(tuple(active)), on_done)


def _say_before(before: dict[TrialState, int], retry_failed: bool) -> None:
    if not before:
        return
    kept = ", ".join(f"{n} {s.value}" for s, n in sorted(before.items(), key=lambda x: x[0].value))
    console.print(f"[sweeper] trials so far: {kept}")
    active = sum(n for s, n in before.items() if s.is_active())
    if active:
        console.print(f"[sweeper] {active} trial(s) still queued or running are left to run "
                      "where they are, not started again")
    if before.get(TrialState.FAILED) and not retry_failed:
        console.print("[sweeper] failed trials are kept; rerun them with --retry-failed")


def merge_and_show(paths: SweepPaths, metric: str | None = None, direction: str | None = None,
                   top: int = 5) -> None:
    """Merge the sweep dir's results and print the counts and the best trials."""
    from sweeper.console import out
    from sweeper.merge import merge

    record = SweepRecord.load(paths)
    result = merge(paths)
    for path, why in result.skipped:
        console.print(f"[sweeper] skipped {path}: {why}")
    counts = result.results.group_by("status").aggregate([("trial_id", "count")]).to_pylist()
    summary = ", ".join(f"{c['trial_id_count']} {c['status']}" for c in counts)
    out.print(f"[sweeper] {result.results.num_rows} trials ({summary}) -> {paths.merged}; "
              f"{result.curves.num_rows} curve points -> {paths.curves}")
    if not any(c["status"] == TrialState.COMPLETED.value for c in counts):
        return  # no table of the best: nothing completed yet
    if record.search.cross_validation.enabled:
        print_cv(result.results.to_pandas(), record, metric, direction, top)
        return
    print_top(result.results, metric or record.search.metrics[0],
              direction or record.search.directions[0], record.param_keys, top)


def print_cv(results: Any, record: SweepRecord, metric: str | None, direction: str | None,
              top: int) -> None:
    """The best configs by their folds' aggregate, with the spread (cross-validated sweeps)."""
    from sweeper.console import out
    from sweeper.crossval import cv_keys, cv_table

    cv = record.search.cross_validation
    table = cv_table(results, cv_keys(record), metric or record.search.metrics[0],
                     direction or record.search.directions[0], cv.aggregation)
    out.print(f"top {min(top, len(table))} configs by the {cv.aggregation} over "
              f"{cv.n_folds} folds:\n{table.head(top).to_string(index=False)}")


def print_top(results: pa.Table, metric: str, direction: str, keys: list[str], k: int = 5) -> None:
    from rich.table import Table

    from sweeper.console import fmt, out
    from sweeper.merge import top_trials

    top = top_trials(results, metric, direction, k)
    table = Table(title=f"top {top.num_rows} by {metric} ({direction})")
    for name in ["trial_id", metric, *keys]:
        table.add_column(name)
    for row in top.to_pylist():
        table.add_row(*(fmt(row.get(n)) for n in ["trial_id", metric, *keys]))
    out.print(table)


def finish(paths: SweepPaths, result: LaunchResult) -> None:
    """After a launch: say how to continue, or merge, show the best trials and what next."""
    where = shell_path(paths.root)
    if result.job_ids and not result.waited:
        console.print(f"[sweeper] watch it: sweeper status {where} --watch   "
                      f"(then: sweeper merge {where})")
        return
    if result.interrupted:
        console.print(f"[sweeper] stopped. Continue with `sweeper resume {where}`")
        return
    done = ", ".join(f"{n} {s.value}" for s, n in sorted(result.states.items(),
                                                          key=lambda x: x[0].value))
    console.print(f"[sweeper] finished: {done or 'nothing run'}")
    merge_and_show(paths)
    console.print(f"[sweeper] next: `sweeper report {where}` (plots, best config), "
                  f"`sweeper next {where}` (a finer search around the best)")
