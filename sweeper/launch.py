"""Run what a sweep dir still needs: the one path shared by a fresh run and ``resume``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import DictConfig

from sweeper.console import err as console
from sweeper.console import shell_path
from sweeper.errors import SweepDirError, SweeperError
from sweeper.executors import Executor, LaunchResult
from sweeper.paths import SweepPaths
from sweeper.results import Status

__all__ = ["pending_trials", "run_pending"]



def pending_trials(paths: SweepPaths, table: pa.Table, retry_failed: bool,
                   n_trials: int | None = None) -> tuple[pa.Table, dict[str, int]]:
    """Rows still to run, and the counts of the trials' current states.

    Completed trials never run again, nor do trials still queued on SLURM. Failed ones run
    again only with ``retry_failed``; cancelled, timed-out, lost and never-run trials always do.
    """
    from sweeper.status import IN_QUEUE, sweep_state

    state = sweep_state(paths, n_trials if n_trials is not None else table.num_rows, use_sacct=True)
    if not state.queue_ok:
        raise SweeperError(
            "cannot read the SLURM queue (squeue failed), so trials that may still run cannot be "
            f"told apart from lost ones; nothing was submitted. Try again: sweeper resume {shell_path(paths.root)}"
        )
    skip = {Status.COMPLETED.value, *IN_QUEUE} | ({Status.FAILED.value} if not retry_failed else set())
    done_ids = [tid for tid, s in state.states.items() if s in skip]
    mask = pc.invert(pc.is_in(table.column("trial_id"), pa.array(done_ids, pa.int64())))
    counts = {s: n for s, n in state.counts().items() if s != "not run yet"}
    return table.filter(mask), counts


def run_pending(paths: SweepPaths, sweep: DictConfig, table: pa.Table, executor: Executor,
                retry_failed: bool) -> LaunchResult:
    """Launch every trial that has no completed result (see :func:`pending_trials`).

    Under the sweep dir's lock, from deciding what to run until it is claimed (a local driver
    file, or a submitted launch record), so two commands never run the same trials.
    """
    from filelock import FileLock

    from sweeper.executors.local import claim_driver, live_driver, release_driver

    with FileLock(str(paths.lock)):
        other = live_driver(paths)
        if other is not None:
            raise SweepDirError(
                f"a sweep is already running in {paths.root} (pid {other.get('pid')} on "
                f"{other.get('host')}); wait for it, or stop it with "
                f"`sweeper cancel {shell_path(paths.root)}`"
            )
        todo, before = pending_trials(paths, table, retry_failed)
        if before:
            kept = ", ".join(f"{n} {s}" for s, n in sorted(before.items()))
            console.print(f"[sweeper] trials in {paths.root} so far: {kept}")
            if before.get(Status.FAILED.value) and not retry_failed:
                console.print("[sweeper] failed trials are kept; rerun them with --retry-failed")
        if todo.num_rows == 0:
            console.print("[sweeper] nothing left to run")
            return LaunchResult()
        console.print(f"[sweeper] running {todo.num_rows} of {table.num_rows} trials")
        if not executor.blocking:
            return executor.launch(paths, sweep, todo)
        claim_driver(paths)
    try:
        return executor.launch(paths, sweep, todo)
    finally:
        release_driver(paths)
