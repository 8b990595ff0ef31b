"""Commands that follow and steer a sweep's trials: status, resume, cancel."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from rich.table import Table

from sweeper.commands._common import sweep_paths as _paths
from sweeper.console import err, out, shell_path
from sweeper.paths import SweepPaths

__all__ = ["add_cancel", "add_resume", "add_status"]


def _state_table(paths: SweepPaths, state: Any) -> Table:
    from sweeper.state import ORDER

    counts = state.counts()
    table = Table(title=f"{paths.root}: {sum(counts.values())} trials")
    table.add_column("state")
    table.add_column("trials", justify="right")
    for name in sorted(counts, key=ORDER.index):
        table.add_row(name.value, str(counts[name]))
    return table


def _status(args: argparse.Namespace) -> int:
    from sweeper.record import SweepRecord
    from sweeper.status import SweepWatcher

    paths = _paths(args)
    record = SweepRecord.load(paths)  # a damaged sweep.yaml is named as such, not a state
    watcher = SweepWatcher(paths, grace_s=args.grace_s)
    while True:
        state = watcher.poll()
        out.print(_state_table(paths, state))
        _status_notes(paths, state)
        workers = _adaptive_notes(paths, record, state) if record.search.adaptive else False
        if not args.watch or (state.queue_ok and not state.active and not workers):
            return 0
        try:
            time.sleep(args.poll_interval_s)
        except KeyboardInterrupt:
            return 0


def _status_notes(paths: SweepPaths, state: Any) -> None:
    from sweeper.state import TrialState

    if not state.queue_ok:
        err.print("[sweeper] squeue failed: queued trials show as unknown")
    if state.accounting_ok is False:
        err.print("[sweeper] sacct is unavailable: states come from the queue and result files")
    running = state.running_here()
    if running:
        err.print(f"[sweeper] running: trials {_id_list(running)}")
    lost = [f"{tid} ({why})" if why else str(tid) for tid, why in
            ((t, state.details.get(t, "")) for t, s in state.states.items()
             if s is TrialState.LOST)]
    if lost:
        err.print(f"[sweeper] lost (ended without a result): {', '.join(lost[:10])}"
                  f"{' ...' if len(lost) > 10 else ''}; `sweeper resume {shell_path(paths.root)}` reruns them")


def _adaptive_notes(paths: SweepPaths, record: Any, state: Any) -> bool:
    """How far the study is, and whether SLURM workers are still queued (they ask for more)."""
    from sweeper.executors.slurm.queue import queue_states
    from sweeper.executors.slurm.records import read_launches

    n = int(record.search.n_trials or 0)
    asked = len(state.states)
    jobs = [a.job_id for launch in read_launches(paths) if launch.workers
            for a in launch.arrays]
    queued = queue_states(jobs) if jobs else {}
    workers = queued is None or bool(queued)
    what = f"; {len(queued)} worker(s) queued or running" if queued else ""
    err.print(f"[sweeper] {record.search.method} study: {asked} of {n} trials asked{what}")
    if asked < n and not workers and not state.active:
        err.print(f"[sweeper] `sweeper resume {shell_path(paths.root)}` asks for the rest")
    return workers


def _id_list(ids: list[int], limit: int = 20) -> str:
    return ", ".join(map(str, ids[:limit])) + (" ..." if len(ids) > limit else "")


def add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="refresh until no trial is queued")
    p.add_argument("--poll-interval-s", type=float, default=10.0, help="with --watch (10)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="an array task that left the queue this long ago without a result is "
                        "lost: counted from sacct's end time, else from when a poll saw it "
                        "leave, else from its attempt's start or its launch (30)")
    p.set_defaults(func=_status)


def _resume(args: argparse.Namespace) -> int:
    from sweeper.executors import make_executor
    from sweeper.record import SweepRecord
    from sweeper.sweep import finish, run_pending
    from sweeper.trials import read_trials

    paths = _paths(args)
    record = SweepRecord.load(paths)
    cluster = record.cluster
    if args.max_parallel is not None:
        cluster = dataclasses.replace(cluster, max_parallel=args.max_parallel)
    if args.n_trials is not None:
        record = _grow(paths, record, args.n_trials)
    # Where it was planned: resuming on another machine never switches local <-> SLURM.
    executor = make_executor(cluster, record.executor)
    table = read_trials(paths)
    err.print(f"[sweeper] resuming {paths.root} on: {executor.describe()}")
    result = run_pending(paths, record, table, executor, args.retry_failed, wait=args.wait)
    finish(paths, result)
    return result.exit_code


def _grow(paths: SweepPaths, record: Any, n_trials: int) -> Any:
    """Extend the sweep's budget to ``n_trials`` (random: the same seeded stream goes on)."""
    from sweeper.growth import grow

    return grow(paths, record, n_trials)


def add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    p.add_argument("--max-parallel", type=int, help="local: trials at once (default: as planned)")
    p.add_argument("--wait", action="store_true", help="slurm: block until the trials end")
    p.add_argument("--n-trials", type=int, metavar="N",
                   help="grow the sweep to N trials first (random: the same seeded draws go "
                        "on, so the first trials are unchanged; a grid cannot grow)")
    p.set_defaults(func=_resume)


def _cancel(args: argparse.Namespace) -> int:
    from sweeper.driver import cancel_local
    from sweeper.executors.slurm import cancel_arrays

    paths = _paths(args)
    local, note = cancel_local(paths)
    if note:
        err.print(f"[sweeper] {note}")
    arrays, failure = cancel_arrays(paths)
    if failure:
        err.print(f"[sweeper] {failure}; nothing on SLURM was cancelled")
    out.print(f"[sweeper] asked {local} local sweep process(es) to stop and cancelled {arrays} "
              f"SLURM array(s); continue later with `sweeper resume {shell_path(paths.root)}`")
    return 1 if failure else 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_cancel)
